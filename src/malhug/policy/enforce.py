"""Applying a Config to a Report: rule selection, suppressions, the baseline, new verdicts."""
from __future__ import annotations

import datetime
from dataclasses import replace
from typing import NamedTuple

from ..findings import FileResult, Finding, MemberResult, Report, RepositoryResult, worst
from ..judge import verdict_for
from .baseline import BASELINE_REASON, Baseline, load_baseline, policy_path
from .config import Config


class PolicyResult(NamedTuple):
    report: Report
    warnings: list  # str: expired suppressions ...


def visible(finding: Finding, config: Config) -> bool:
    """Whether reporters show this finding (min_severity); verdicts do not depend on it."""
    return config.min_severity is None or finding.severity >= config.min_severity


def apply(report: Report, config: Config, today: datetime.date | None = None,
          baseline: "Baseline | bool" = True) -> PolicyResult:
    """The report as the project's policy sees it.

    - findings of rules not selected (rules / exclude_rules) are dropped;
    - findings a live suppression matches are kept, marked suppressed with its reason;
      expired suppressions apply to nothing and are reported in the warnings;
    - findings in the baseline are marked suppressed with the reason "baseline"
      (baseline: True uses config.baseline, False none, or a loaded Baseline);
    - member, file and repository verdicts are judged again: suppressed findings count for
      nothing, problems (what could not be read) always count.
    """
    today = today or datetime.date.today()
    warnings = []
    live = []
    for suppression in config.suppressions:
        if suppression.expired(today):
            warnings.append(f"suppression of {suppression.rule} for {suppression.target} expired on "
                            f"{suppression.expires.isoformat()}: not applied (reason was: {suppression.reason})")
        else:
            live.append(suppression)
    if baseline is True:
        baseline = load_baseline(config.baseline) if config.baseline else None
    matcher = baseline.matcher() if baseline else None
    hashes = {file.path: file.sha256 for file in report.files if file.sha256}

    def judged(finding: Finding) -> Finding | None:
        if not config.selects(finding.rule):
            return None
        if finding.suppressed is not None:
            return finding
        sha256 = hashes.get(finding.location.file)
        path = policy_path(finding.location.file, config.root)
        for suppression in live:
            if suppression.matches(finding, path, sha256):
                return replace(finding, suppressed=suppression.reason)
        if matcher is not None and matcher.take(finding, sha256):
            return replace(finding, suppressed=BASELINE_REASON)
        return finding

    files = tuple(_file(file, judged) for file in report.files)
    by_path = {file.path: file for file in files}
    changed = {new.path for old, new in zip(report.files, files) if new is not old}
    repositories = tuple(_repository(repo, judged, by_path, changed) for repo in report.repositories)
    return PolicyResult(replace(report, files=files, repositories=repositories), warnings)


def _findings(findings, judged) -> tuple[tuple, list]:
    """The findings after the policy, and those it changed (dropped or suppressed)."""
    kept, changed = [], []
    for finding in findings:
        new = judged(finding)
        if new is not finding:
            changed.append(finding)
        if new is not None:
            kept.append(new)
    return tuple(kept), changed


def _file(file: FileResult, judged) -> FileResult:
    findings, changed = _findings(file.findings, judged)
    if not changed:
        return file
    members = tuple(_member(member, findings, file.problems, changed) for member in file.members)
    return replace(file, findings=findings, members=members,
                   verdict=verdict_for(list(findings), list(file.problems)))


def _member(member: MemberResult, findings, problems, changed) -> MemberResult:
    """Judged again (as ScanContext.record_member does) when a finding inside it changed."""
    key = "" if member.name == "(file)" else member.name

    def inside(location) -> bool:
        name = location.member or ""
        return not key or name == key or name.startswith(key + ":")

    if not any(inside(finding.location) for finding in changed):
        return member
    mine = [f for f in findings if inside(f.location)]
    issues = [p for p in problems if inside(p.location)]
    return replace(member, verdict=verdict_for(mine, issues))


def _repository(repo: RepositoryResult, judged, files: dict, changed_files: set) -> RepositoryResult:
    findings, changed = _findings(repo.findings, judged)
    if not changed and not changed_files.intersection(repo.files):
        return repo
    verdicts = [files[path].verdict for path in repo.files if path in files]
    verdicts.append(verdict_for(list(findings), list(repo.problems)))
    return replace(repo, findings=findings, verdict=worst(verdicts))
