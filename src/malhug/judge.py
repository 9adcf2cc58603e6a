"""From findings and problems to verdicts."""
from __future__ import annotations

from .findings import Finding, Problem, Severity, Verdict


def verdict_for(findings: list[Finding], problems: list[Problem]) -> Verdict:
    """high or critical: malicious; medium: suspicious; low and info only inform.
    Anything not fully read is inconclusive, never clean. Suppressed findings (accepted by a
    policy) count for nothing; problems can never be suppressed."""
    worst = max((f.severity for f in findings if f.suppressed is None), default=None)
    if worst is not None and worst >= Severity.HIGH:
        return Verdict.MALICIOUS
    if worst is not None and worst >= Severity.MEDIUM:
        return Verdict.SUSPICIOUS
    if problems:
        return Verdict.INCONCLUSIVE
    return Verdict.CLEAN
