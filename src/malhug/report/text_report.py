"""Plain terminal report: one block per file that is not clean, then a summary line."""
from __future__ import annotations

from ..findings import Report, Verdict


def render_text(report: Report, verbose: bool = False, quiet: bool = False) -> str:
    lines: list[str] = []
    for file in report.files:
        if quiet:
            for finding in file.findings:
                lines.append(f"{finding.location.describe()}: {finding.severity} {finding.rule}: {finding.message}")
            for problem in file.problems:
                lines.append(f"{problem.location.describe()}: inconclusive: {problem.reason}")
            continue
        if file.verdict is Verdict.CLEAN and not verbose:
            continue
        lines.append(f"{file.path}: {str(file.verdict).upper()} ({file.format})")
        for finding in sorted(file.findings, key=lambda f: -f.severity):
            lines.append(f"  [{finding.severity}] {finding.category}: {finding.message}")
            lines.append(f"      at {finding.location.describe()}  ({finding.rule})")
            if finding.evidence:
                lines.append(f"      {finding.evidence}")
        for problem in file.problems:
            lines.append(f"  [inconclusive] {problem.reason}")
            lines.append(f"      at {problem.location.describe()}")
        if verbose:
            for member in file.members:
                note = f" - {member.note}" if member.note else ""
                lines.append(f"  member {member.name}: {member.verdict} ({member.format}){note}")
    for repository in report.repositories:
        lines.extend(_repository_lines(repository, report, verbose))
    summary = report.summary()
    counts = ", ".join(f"{n} {v}" for v, n in summary["verdicts"].items() if n)
    for error in report.errors:
        lines.append(f"error: {error}")
    lines.append(f"malhug {report.tool_version}: {summary['files']} file(s) scanned: {counts or 'none'}; "
                 f"verdict {summary['verdict'].upper()}")
    return "\n".join(lines) + "\n"


def _repository_lines(repository, report: Report, verbose: bool) -> list[str]:
    name = repository.id or repository.location
    revision = f"@{repository.revision[:12]}" if repository.revision else ""
    lines = [f"repository {name}{revision} ({repository.type}): {str(repository.verdict).upper()}"]
    for finding in repository.findings:
        lines.append(f"  [{finding.severity}] {finding.category}: {finding.message}")
        lines.append(f"      at {finding.location.describe()}  ({finding.rule})")
    for problem in repository.problems:
        lines.append(f"  [inconclusive] {problem.reason} ({problem.location.describe()})")
    roles = dict(repository.roles)
    by_path = {f.path: f for f in report.files}
    shown = [by_path[p] for p in repository.files if p in by_path]
    prefix = len(repository.location.rstrip("/")) + 1
    for file in shown:
        role = roles.get(file.path[prefix:], "")
        if file.verdict is Verdict.CLEAN and not verbose and not role:
            continue
        top = max(file.findings, key=lambda f: f.severity, default=None)
        detail = top.message if top else (file.problems[0].reason if file.problems else "")
        lines.append(f"  {str(file.verdict):<12} {file.format:<14} {role:<15} {file.path}  {detail[:80]}")
    for note in repository.notes:
        lines.append(f"  note: {note}")
    if repository.fetched_bytes is not None and repository.total_bytes:
        share = 100.0 * repository.fetched_bytes / repository.total_bytes
        lines.append(f"  fetched {repository.fetched_bytes} of {repository.total_bytes} bytes ({share:.2f}%)")
    return lines
