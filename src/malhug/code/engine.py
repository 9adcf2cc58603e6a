"""The one analysis every lowered artefact goes through: Python source in, findings out.

Python files, notebook cells, TorchScript code and pickle programs (rendered by the
decompiler) are all parsed with `ast` (never run), interpreted abstractly with taint, and
classified into behaviours. Code strings handed to exec/eval/compile are analysed the same
way, recursively, and decoded bytes that are themselves payloads (pickles, archives) go back
through the format readers.
"""
from __future__ import annotations

import ast
import io
from dataclasses import dataclass, field

from ..findings import Finding, Severity
from .behaviours import Behaviour, classify
from .interpret import Analysis, Interpreter

MAX_CODE_DEPTH = 4
SHELL_CATEGORIES = ("reverse_shell", "download_exec", "crypto_mining", "persistence", "poc")


@dataclass
class Unit:
    """One piece of code to analyse and where its findings belong."""

    text: str
    kind: str  # python | pickle
    member: str | None
    lines: list = field(default_factory=list)  # for pickle programs: (line, stream offset)
    origin: str = ""  # for code found inside code: where it came from
    outer_line: int | None = None  # for such code: the line of the outer unit
    outer_kind: str | None = None  # for such code: the kind of the outer unit


def analyse_unit(unit: Unit, ctx, depth: int = 0) -> Analysis | None:
    """Analyse one unit into ctx; returns the analysis (None when the code does not parse)."""
    try:
        tree = ast.parse(unit.text)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        reason = f"{'code string' if unit.origin else 'Python source'} does not parse: {_short(exc)}"
        ctx.add_problem(unit.member, reason + (f" ({unit.origin})" if unit.origin else ""))
        _pattern_findings(unit, ctx)
        return None
    analysis = Interpreter(implicit_globals=unit.kind == "torchscript").run(tree)
    if unit.kind == "torchscript":
        _torchscript_imports(tree, unit, ctx)
    for problem in analysis.problems:
        ctx.add_problem(unit.member, problem)
    source_lines = unit.text.splitlines()
    decoded = "decoded" in unit.origin
    for behaviour in classify(analysis, unit.kind, shell_category, decoded=decoded):
        ctx.add_finding(_finding(behaviour, unit, ctx, source_lines))
    _pattern_findings(unit, ctx, analysis)
    if depth < MAX_CODE_DEPTH:
        for line, code, hidden in analysis.nested_code:
            outer_line = _outer(unit, line)
            nested = Unit(code, "python", unit.member, lines=unit.lines,
                          origin=f"code {'decoded ' if hidden else ''}from a string {_where(unit, outer_line)}",
                          outer_line=outer_line, outer_kind=unit.outer_kind or unit.kind)
            analyse_unit(nested, ctx, depth + 1)
        for line, blob in analysis.blobs:
            _nested_payload(blob, line, unit, ctx, depth)
    return analysis


def _torchscript_imports(tree, unit: Unit, ctx) -> None:
    """Code TorchScript generated never imports anything: an import was put there by hand."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = ", ".join(alias.name for alias in node.names)
            module = getattr(node, "module", None)
            what = f"{module}: {names}" if module else names
            ctx.add_finding(Finding(
                "torchscript-import", Severity.MEDIUM, "code_exec",
                f"TorchScript code imports {what} (compiled TorchScript never imports modules)",
                ctx.location(unit.member, line=node.lineno), ast.get_source_segment(unit.text, node) or ""))


def shell_category(command: str) -> str | None:
    """What a command line does, from the pattern rules (reverse shell, miner ...)."""
    matches = _scan_text(command)
    for category in SHELL_CATEGORIES:
        if any(m.category == category and m.severity in ("medium", "high", "critical") or
               m.category == category == "poc" for m in matches):
            return category
    return None


def _finding(behaviour: Behaviour, unit: Unit, ctx, source_lines: list[str]) -> Finding:
    line = _outer(unit, behaviour.line)
    message = behaviour.message
    if unit.origin:
        message += f" ({unit.origin})"
    if behaviour.hidden and "hidden" not in message:
        message += " [obfuscated]"
    evidence = ""
    if 0 < behaviour.line <= len(source_lines):
        evidence = source_lines[behaviour.line - 1].strip()[:300]
    rule = f"{unit.kind}-{behaviour.category.replace('_', '-')}"
    return Finding(rule, behaviour.severity, behaviour.category, message, _location(unit, ctx, line), evidence)


def _location(unit: Unit, ctx, line: int | None):
    if (unit.outer_kind or unit.kind) == "pickle":
        return ctx.location(unit.member, _offset(unit, line))
    return ctx.location(unit.member, line=line)


def _offset(unit: Unit, line: int | None) -> int | None:
    return next((off for ln, off in unit.lines if ln == line), None)


def _where(unit: Unit, line: int) -> str:
    if (unit.outer_kind or unit.kind) == "pickle":
        offset = _offset(unit, line)
        return f"at offset {offset}" if offset is not None else "in the pickle"
    return f"at line {line}"


def _outer(unit: Unit, line: int) -> int:
    return unit.outer_line if unit.outer_line is not None else line


def _pattern_findings(unit: Unit, ctx, analysis: Analysis | None = None) -> None:
    """Pattern matches inform; they never make a file suspicious on their own."""
    texts = [(None, unit.text)]
    if analysis is not None:
        texts += [(line, value) for line, value in analysis.strings]
    seen = {f.rule[len("pattern-"):] for f in ctx.findings
            if f.location.member == unit.member and f.rule.startswith("pattern-")}
    for line, text in texts:
        data = text if isinstance(text, str) else bytes(text).decode("utf-8", "replace")
        for match in _scan_text(data):
            if match.rule in seen:
                continue
            seen.add(match.rule)
            where = line if line is not None else data.count("\n", 0, match.offset) + 1
            ctx.add_finding(Finding(
                f"pattern-{match.rule}", Severity.INFO, match.category, match.description,
                _location(unit, ctx, _outer(unit, where)), match.matched))


def _scan_text(text: str) -> list:
    try:
        from .patterns import scan_text
    except ImportError:
        return []
    return scan_text(text)


def _nested_payload(blob: bytes, line: int, unit: Unit, ctx, depth: int) -> None:
    """Decoded bytes that are a pickle or an archive go back through the format readers."""
    from ..formats import analyse
    from ..formats.base import join_member
    from ..formats.sniff import sniff

    if sniff(blob[:65536]) in ("text", "empty", "unknown", "python"):
        return
    name = join_member(unit.member, f"<decoded at line {_outer(unit, line)}>")
    analyse(io.BytesIO(blob), ctx, name, depth=depth + 1)


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) < 160 else text[:160] + "…"
