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
    summary = report.summary()
    counts = ", ".join(f"{n} {v}" for v, n in summary["verdicts"].items() if n)
    for error in report.errors:
        lines.append(f"error: {error}")
    lines.append(f"malhug {report.tool_version}: {summary['files']} file(s) scanned: {counts or 'none'}; "
                 f"verdict {summary['verdict'].upper()}")
    return "\n".join(lines) + "\n"
