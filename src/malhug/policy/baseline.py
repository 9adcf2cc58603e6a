"""Baselines: today's findings remembered, so that only new ones fail a gate.

A finding's fingerprint is its rule, archive member, message and a digest of its evidence,
with byte offsets and line numbers left out (they move when unrelated code moves); its file is
known by content (sha256) and by path relative to the baseline's folder, and either one
matching is enough. Nothing absolute is stored, so a baseline written on one machine holds on
another. Each fingerprint keeps a count: a second copy of a known finding in the same file is
new.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field

from .. import __version__
from ..findings import Finding, Report
from .config import ConfigError

BASELINE_VERSION = 1
BASELINE_REASON = "baseline"
_REVISION = re.compile(r"@[^/]+")
_POSITIONS = re.compile(r"(@\s*\d+|\b(?:line|offset|byte|column|col)\s+\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class Fingerprint:
    rule: str
    member: str
    message: str
    evidence: str  # sha256 prefix of the normalised evidence


@dataclass
class Baseline:
    path: str
    entries: list = field(default_factory=list)  # (Fingerprint, path, sha256, count)

    @property
    def root(self) -> str:
        return os.path.dirname(os.path.abspath(self.path))

    def matcher(self) -> "_Matcher":
        return _Matcher(self)


def policy_path(display: str, root: str) -> str:
    """A finding's file as policies see it: relative to `root` when it is a local path inside
    it, without the revision for hub paths (hf://org/name@abc123/x.pkl -> hf://org/name/x.pkl)."""
    if "://" in display:
        scheme, _, rest = display.partition("://")
        return f"{scheme}://{_REVISION.sub('', rest, count=1)}"
    if display.startswith("hf-cache:"):
        return display
    absolute = os.path.abspath(display)
    try:
        relative = os.path.relpath(absolute, root)
    except ValueError:  # another drive
        return absolute.replace(os.sep, "/")
    if relative == ".." or relative.startswith(".." + os.sep):
        return absolute.replace(os.sep, "/")
    return relative.replace(os.sep, "/")


def fingerprint(finding: Finding) -> Fingerprint:
    file = finding.location.file
    message = _normalise(finding.message.replace(file, ""))
    evidence = hashlib.sha256(_normalise(finding.evidence.replace(file, "")).encode()).hexdigest()[:16]
    return Fingerprint(finding.rule, finding.location.member or "", message, evidence)


def _normalise(text: str) -> str:
    return " ".join(_POSITIONS.sub("", text).split())


def write_baseline(report: Report, path: str | os.PathLike) -> int:
    """Store the fingerprints of the report's findings; returns how many were stored. Findings
    a suppression accepted are left out (an expiring suppression must not live on in the
    baseline); those the previous baseline accepted are kept."""
    path = os.fspath(path)
    root = os.path.dirname(os.path.abspath(path))
    hashes = _hashes(report)
    counts: Counter = Counter()
    for finding in report.findings(suppressed=True):
        if finding.suppressed not in (None, BASELINE_REASON):
            continue
        file = finding.location.file
        counts[(fingerprint(finding), policy_path(file, root), hashes.get(file))] += 1
    entries = [
        {"rule": fp.rule, "path": file, "sha256": sha256, "member": fp.member or None,
         "message": fp.message, "evidence": fp.evidence, "count": count}
        for (fp, file, sha256), count in sorted(counts.items(), key=lambda item: _order(item[0]))
    ]
    data = {"malhug_baseline": BASELINE_VERSION, "tool_version": __version__, "findings": entries}
    with open(path, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=2, sort_keys=False)
        out.write("\n")
    return sum(counts.values())


def _order(key) -> tuple:
    fp, file, sha256 = key
    return (file, fp.member, fp.rule, fp.message, fp.evidence, sha256 or "")


def load_baseline(path: str | os.PathLike) -> Baseline:
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as stream:
            data = json.load(stream)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such baseline (write one with --write-baseline)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the baseline: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: the baseline is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("malhug_baseline") != BASELINE_VERSION \
            or not isinstance(data.get("findings"), list):
        raise ConfigError(f"{path}: not a malhug baseline (version {BASELINE_VERSION})")
    baseline = Baseline(path)
    for index, entry in enumerate(data["findings"]):
        try:
            fp = Fingerprint(_text(entry["rule"]), _text(entry.get("member") or ""),
                             _text(entry["message"]), _text(entry["evidence"]))
            file, sha256, count = entry.get("path"), entry.get("sha256"), entry.get("count", 1)
            if (file is not None and not isinstance(file, str)) or \
                    (sha256 is not None and not isinstance(sha256, str)) or \
                    isinstance(count, bool) or not isinstance(count, int) or count < 1 or \
                    (file is None and sha256 is None):
                raise TypeError
        except (KeyError, TypeError, AttributeError):
            raise ConfigError(f"{path}: findings[{index}] is not a baseline entry") from None
        baseline.entries.append((fp, file, sha256, count))
    return baseline


def _text(value) -> str:
    if not isinstance(value, str):
        raise TypeError
    return value


def _hashes(report: Report) -> dict:
    return {file.path: file.sha256 for file in report.files if file.sha256}


class _Matcher:
    """Takes findings off the baseline, each fingerprint as many times as it was counted."""

    def __init__(self, baseline: Baseline):
        self.root = baseline.root
        self.slots: dict = {}
        for fp, file, sha256, count in baseline.entries:
            self.slots.setdefault(fp, []).append([file, sha256, count])

    def take(self, finding: Finding, sha256: str | None) -> bool:
        slots = self.slots.get(fingerprint(finding))
        if not slots:
            return False
        path = policy_path(finding.location.file, self.root)
        by_content = [s for s in slots if s[2] > 0 and sha256 and s[1] == sha256]
        by_path = [s for s in slots if s[2] > 0 and s[0] == path]
        for slot in by_content + by_path:
            slot[2] -= 1
            return True
        return False
