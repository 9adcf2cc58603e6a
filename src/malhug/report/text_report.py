"""The terminal report: a block per file that is not clean (every finding with its evidence and
where it is, every problem), the repository tables, a summary table and a summary line.

`render_text` is plain and deterministic (pipes, files, NO_COLOR); `print_rich` shows the same
on a terminal with colour and tables. Text from scanned files never reaches the terminal as
markup or control characters."""
from __future__ import annotations

import re

from ..findings import FileResult, Finding, Report, Severity, Verdict

SUMMARY_ROWS = 200  # files listed in the summary table before the rest are only counted

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def safe(text) -> str:
    """Text a scanned file controls, with terminal control and bidi characters made visible."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else
                        f"\\u{ord(m.group()):04x}", str(text))


def problem_count(report: Report) -> int:
    return (sum(len(f.problems) for f in report.files) + sum(len(r.problems) for r in report.repositories)
            + len(report.errors))


def suppressed(finding: Finding) -> str | None:
    """Why a policy accepted this finding (None when it counts)."""
    return getattr(finding, "suppressed", None)


def counted(findings) -> list[Finding]:
    return [f for f in findings if suppressed(f) is None]


def summary_line(report: Report) -> str:
    summary = report.summary()
    counts = ", ".join(f"{n} {v}" for v, n in summary["verdicts"].items() if n)
    accepted = summary.get("suppressed", 0)
    return (f"malhug {report.tool_version}: {summary['files']} file(s) scanned: {counts or 'none'}; "
            f"{summary['findings']} finding(s), {problem_count(report)} problem(s)"
            f"{f', {accepted} suppressed' if accepted else ''}; "
            f"verdict {summary['verdict'].upper()}")


def top_finding(file: FileResult) -> str:
    top = max(counted(file.findings), key=lambda f: f.severity, default=None)
    if top is not None:
        return f"[{top.severity}] {top.message}"
    return f"[inconclusive] {file.problems[0].reason}" if file.problems else ""


def evidence_lines(finding: Finding) -> list[str]:
    """The evidence as shown: a source line with its number, or the decompiled call."""
    if not finding.evidence:
        return []
    lines = safe(finding.evidence).split("\n")
    if finding.location.line is not None:
        number = str(finding.location.line)
        pad = " " * len(number)
        return [f"{number} | {lines[0]}"] + [f"{pad} | {line}" for line in lines[1:]]
    return lines


def _sorted(findings, verbose: bool = False) -> list[Finding]:
    """Most severe first; findings a policy accepted only when everything is shown."""
    return sorted((f for f in findings if verbose or suppressed(f) is None), key=lambda f: -f.severity)


def _shown_files(report: Report, verbose: bool) -> list[FileResult]:
    return [f for f in report.files if verbose or f.verdict is not Verdict.CLEAN or f.problems]


def _quiet_lines(report: Report) -> list[str]:
    lines = []
    for owner in list(report.repositories) + list(report.files):
        for finding in _sorted(owner.findings):
            lines.append(safe(f"{finding.location.describe()}: {finding.severity} {finding.rule}: {finding.message}"))
        for problem in owner.problems:
            lines.append(safe(f"{problem.location.describe()}: inconclusive: {problem.reason}"))
    lines.extend(safe(f"error: {error}") for error in report.errors)
    return lines


def render_text(report: Report, verbose: bool = False, quiet: bool = False) -> str:
    if quiet:
        return "\n".join(_quiet_lines(report) + [summary_line(report)]) + "\n"
    lines: list[str] = []
    for file in _shown_files(report, verbose):
        lines.append(safe(f"{file.path}: {str(file.verdict).upper()} ({file.format})"))
        for finding in _sorted(file.findings, verbose):
            lines.extend(_finding_lines(finding))
        for problem in file.problems:
            lines.append(safe(f"  [inconclusive] {problem.reason}"))
            lines.append(safe(f"      at {problem.location.describe()}"))
        if verbose:
            for member in file.members:
                note = f" - {member.note}" if member.note else ""
                lines.append(safe(f"  member {member.name}: {member.verdict} ({member.format}){note}"))
    for repository in report.repositories:
        lines.extend(_repository_lines(repository, report, verbose))
    lines.extend(_summary_table(report, verbose))
    for error in report.errors:
        lines.append(safe(f"error: {error}"))
    lines.append(summary_line(report))
    return "\n".join(lines) + "\n"


def _finding_lines(finding: Finding, indent: str = "  ") -> list[str]:
    accepted = f" (suppressed: {suppressed(finding)})" if suppressed(finding) is not None else ""
    lines = [safe(f"{indent}[{finding.severity}] {finding.category}: {finding.message}{accepted}"),
             safe(f"{indent}    at {finding.location.describe()}  ({finding.rule})")]
    lines.extend(f"{indent}    {line}" for line in evidence_lines(finding))
    return lines


def _summary_rows(report: Report, verbose: bool) -> tuple[list[FileResult], int]:
    rows = sorted(_shown_files(report, verbose), key=lambda f: (-f.verdict.rank, f.path))
    hidden = len(report.files) - len(rows)
    return rows, hidden


def _summary_table(report: Report, verbose: bool) -> list[str]:
    rows, hidden = _summary_rows(report, verbose)
    if not rows:
        return []
    lines = ["", "summary:"]
    width = min(max(len(file.path) for file in rows[:SUMMARY_ROWS]), 60)
    for file in rows[:SUMMARY_ROWS]:
        lines.append(safe(f"  {str(file.verdict).upper():<12} {file.format:<16} {file.path:<{width}}  "
                          f"{top_finding(file)[:100]}"))
    if len(rows) > SUMMARY_ROWS:
        lines.append(f"  ... and {len(rows) - SUMMARY_ROWS} more file(s) not clean")
    if hidden:
        lines.append(f"  ({hidden} clean file(s) not listed; -v lists them)")
    return lines


def _repository_name(repository) -> str:
    revision = f"@{repository.revision[:12]}" if repository.revision else ""
    return f"{repository.id or repository.location}{revision}"


def _repository_files(repository, report: Report, verbose: bool) -> list[tuple[FileResult, str]]:
    roles = dict(repository.roles)
    by_path = {f.path: f for f in report.files}
    prefix = len(repository.location.rstrip("/")) + 1
    out = []
    for path in repository.files:
        file = by_path.get(path)
        if file is None:
            continue
        role = roles.get(file.path[prefix:], "")
        if file.verdict is Verdict.CLEAN and not verbose and not role:
            continue
        out.append((file, role))
    return out


def _repository_facts(repository) -> list[str]:
    facts = [f"note: {note}" for note in repository.notes]
    if repository.fetched_bytes is not None and repository.total_bytes:
        share = 100.0 * repository.fetched_bytes / repository.total_bytes
        facts.append(f"fetched {repository.fetched_bytes} of {repository.total_bytes} bytes ({share:.2f}%)")
    return facts


def _repository_lines(repository, report: Report, verbose: bool) -> list[str]:
    lines = [safe(f"repository {_repository_name(repository)} ({repository.type}): {str(repository.verdict).upper()}")]
    for finding in _sorted(repository.findings, verbose):
        lines.extend(_finding_lines(finding))
    for problem in repository.problems:
        lines.append(safe(f"  [inconclusive] {problem.reason} ({problem.location.describe()})"))
    for file, role in _repository_files(repository, report, verbose):
        detail = top_finding(file)
        lines.append(safe(f"  {str(file.verdict):<12} {file.format:<14} {role:<15} {file.path}  {detail[:80]}"))
    lines.extend(safe(f"  {fact}") for fact in _repository_facts(repository))
    return lines


# ---- the same on a terminal, with rich ----

SEVERITY_STYLE = {
    Severity.CRITICAL: "bold white on red",
    Severity.HIGH: "bold red",
    Severity.MEDIUM: "bold yellow",
    Severity.LOW: "cyan",
    Severity.INFO: "dim",
}
VERDICT_STYLE = {
    Verdict.MALICIOUS: "bold white on red",
    Verdict.SUSPICIOUS: "bold yellow",
    Verdict.INCONCLUSIVE: "bold magenta",
    Verdict.CLEAN: "bold green",
}


def print_rich(report: Report, console, verbose: bool = False, quiet: bool = False) -> None:
    """Print the report on a rich Console (colours and tables)."""
    from rich.text import Text

    if quiet:
        for line in _quiet_lines(report):
            console.print(Text(line))
        console.print(_summary_text(report))
        return
    for file in _shown_files(report, verbose):
        heading = Text(safe(file.path), style="bold")
        heading.append(" ")
        heading.append(f" {str(file.verdict).upper()} ", style=VERDICT_STYLE[file.verdict])
        heading.append(safe(f" ({file.format})"), style="dim")
        console.print(heading)
        for finding in _sorted(file.findings, verbose):
            _print_finding(console, finding)
        for problem in file.problems:
            _print_problem(console, problem)
        if verbose:
            for member in file.members:
                note = f" - {member.note}" if member.note else ""
                line = Text("  member ")
                line.append(safe(member.name), style="bold")
                line.append(": ")
                line.append(str(member.verdict), style=VERDICT_STYLE[member.verdict])
                line.append(safe(f" ({member.format}){note}"), style="dim")
                console.print(line)
        console.print()
    for repository in report.repositories:
        _print_repository(console, repository, report, verbose)
    _print_summary_table(console, report, verbose)
    for error in report.errors:
        console.print(Text(safe(f"error: {error}"), style="bold magenta"))
    console.print(_summary_text(report))


def _summary_text(report: Report):
    from rich.text import Text

    text = Text(summary_line(report).rsplit("verdict ", 1)[0] + "verdict ")
    text.append(f" {report.verdict.value.upper()} ", style=VERDICT_STYLE[report.verdict])
    return text


def _print_finding(console, finding: Finding) -> None:
    from rich.text import Text

    line = Text("  ")
    line.append(f"[{finding.severity}]", style=SEVERITY_STYLE[finding.severity])
    line.append(safe(f" {finding.category}: "), style="bold")
    line.append(safe(finding.message))
    if suppressed(finding) is not None:
        line.append(safe(f" (suppressed: {suppressed(finding)})"), style="dim")
    console.print(line)
    where = Text("      at ", style="dim")
    where.append(safe(finding.location.describe()), style="underline")
    where.append(safe(f"  ({finding.rule})"), style="dim")
    console.print(where)
    for text in evidence_lines(finding):
        number, bar, code = text.partition(" | ") if finding.location.line is not None else ("", "", text)
        evidence = Text("      ")
        if bar:
            evidence.append(number + " │ ", style="dim")
        evidence.append(code, style="green")
        console.print(evidence)


def _print_problem(console, problem) -> None:
    from rich.text import Text

    line = Text("  ")
    line.append("[inconclusive]", style="bold magenta")
    line.append(safe(f" {problem.reason}"))
    console.print(line)
    console.print(Text(safe(f"      at {problem.location.describe()}"), style="dim"))


def _print_repository(console, repository, report: Report, verbose: bool) -> None:
    from rich.table import Table
    from rich.text import Text

    heading = Text("repository ", style="bold")
    heading.append(safe(_repository_name(repository)), style="bold")
    heading.append(safe(f" ({repository.type}) "))
    heading.append(f" {str(repository.verdict).upper()} ", style=VERDICT_STYLE[repository.verdict])
    console.print(heading)
    for finding in _sorted(repository.findings, verbose):
        _print_finding(console, finding)
    for problem in repository.problems:
        _print_problem(console, problem)
    rows = _repository_files(repository, report, verbose)
    if rows:
        table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
        for column in ("verdict", "format", "role", "path", "top finding"):
            table.add_column(column, overflow="fold")
        for file, role in rows:
            table.add_row(Text(str(file.verdict), style=VERDICT_STYLE[file.verdict]), Text(file.format),
                          Text(role), Text(safe(file.path)), Text(safe(top_finding(file)[:80])))
        console.print(table)
    for fact in _repository_facts(repository):
        console.print(Text(safe(f"  {fact}"), style="dim"))
    console.print()


def _print_summary_table(console, report: Report, verbose: bool) -> None:
    from rich.table import Table
    from rich.text import Text

    rows, hidden = _summary_rows(report, verbose)
    if not rows:
        return
    table = Table(title="summary", title_justify="left", header_style="bold")
    for column in ("verdict", "format", "path", "top finding"):
        table.add_column(column, overflow="fold")
    for file in rows[:SUMMARY_ROWS]:
        table.add_row(Text(str(file.verdict).upper(), style=VERDICT_STYLE[file.verdict]), Text(file.format),
                      Text(safe(file.path)), Text(safe(top_finding(file)[:100])))
    console.print(table)
    if len(rows) > SUMMARY_ROWS:
        console.print(Text(f"... and {len(rows) - SUMMARY_ROWS} more file(s) not clean", style="dim"))
    if hidden:
        console.print(Text(f"({hidden} clean file(s) not listed; -v lists them)", style="dim"))
