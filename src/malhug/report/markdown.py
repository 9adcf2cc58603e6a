"""Markdown for pull-request comments: a summary, the files that are not clean, the findings."""
from __future__ import annotations

import re

from ..findings import Report, Verdict

MAX_ROWS = 200  # a comment stays readable; the rest is counted
MAX_CELL = 300

_ICONS = {"malicious": "🔴", "suspicious": "🟠", "inconclusive": "🟣", "clean": "🟢"}


def _text(value) -> str:
    """Plain text in a table cell: markup and HTML from scanned files stay inert."""
    text = " ".join(str(value).split())
    if len(text) > MAX_CELL:
        text = text[:MAX_CELL] + "…"
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"([\\`*_\[\]|~])", r"\\\1", text)


def _code(value) -> str:
    text = " ".join(str(value).split())
    if len(text) > MAX_CELL:
        text = text[:MAX_CELL] + "…"
    if not text:
        return ""
    text = text.replace("|", "\\|")
    run = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (run + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or run else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _counted(findings) -> list:
    return [f for f in findings if getattr(f, "suppressed", None) is None]


def render_markdown(report: Report) -> str:
    summary = report.summary()
    problems = sum(len(f.problems) for f in report.files) + sum(len(r.problems) for r in report.repositories)
    verdict = summary["verdict"]
    lines = [
        f"## {_ICONS.get(verdict, '')} malhug: {verdict.upper()}",
        "",
        f"{summary['files']} file(s) scanned: "
        + ", ".join(f"{n} {v}" for v, n in summary["verdicts"].items() if n) if summary["files"] else
        "no files scanned",
        "",
        f"{summary['findings']} finding(s) ("
        + ", ".join(f"{n} {s}" for s, n in reversed(list(summary["severities"].items())) if n)
        + f"), {problems} problem(s) (not fully scanned)"
        + (f", {summary['suppressed']} suppressed by policy" if summary.get("suppressed") else "")
        + f", malhug {report.tool_version}",
        "",
    ]
    for error in report.errors:
        lines.append(f"- **error**: {_text(error)}")
    if report.errors:
        lines.append("")
    for repository in report.repositories:
        name = repository.id or repository.location
        revision = f" @ {_code(repository.revision[:12])}" if repository.revision else ""
        lines.append(f"- repository {_text(name)}{revision} ({_text(repository.type)}): "
                     f"**{str(repository.verdict).upper()}**")
    if report.repositories:
        lines.append("")
    flagged = [f for f in report.files if f.verdict is not Verdict.CLEAN]
    if flagged:
        lines += ["### Files", "", "| verdict | file | format | top finding |", "|---|---|---|---|"]
        for file in sorted(flagged, key=lambda f: (-f.verdict.rank, f.path))[:MAX_ROWS]:
            top = max(_counted(file.findings), key=lambda f: f.severity, default=None)
            detail = top.message if top else (file.problems[0].reason if file.problems else "")
            lines.append(f"| {_ICONS[str(file.verdict)]} {file.verdict} | {_code(file.path)} | "
                         f"{_text(file.format)} | {_text(detail)} |")
        if len(flagged) > MAX_ROWS:
            lines.append(f"\n…and {len(flagged) - MAX_ROWS} more file(s).")
        lines.append("")
    rows = []
    for owner in list(report.repositories) + list(report.files):
        for finding in sorted(_counted(owner.findings), key=lambda f: -f.severity):
            rows.append(f"| {finding.severity} | {_text(finding.category)} | {_code(finding.rule)} | "
                        f"{_text(finding.message)} | {_code(finding.location.describe())} | {_code(finding.evidence)} |")
        for problem in owner.problems:
            rows.append(f"| inconclusive | | {_code('scan-incomplete')} | {_text(problem.reason)} | "
                        f"{_code(problem.location.describe())} | |")
    if rows:
        lines += ["### Findings", "", "| severity | category | rule | finding | where | evidence |",
                  "|---|---|---|---|---|---|"]
        lines += rows[:MAX_ROWS]
        if len(rows) > MAX_ROWS:
            lines.append(f"\n…and {len(rows) - MAX_ROWS} more; see the full report.")
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"
