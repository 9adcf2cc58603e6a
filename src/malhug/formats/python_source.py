"""Python source (TorchScript code/, scripts, notebooks' code): parsed, never run.

This check resolves imported names in calls and flags the ones the knowledge base says run
commands, code or native code. Ordinary file and network use is left to the data-flow engine.
"""
from __future__ import annotations

import ast
import json
from typing import BinaryIO

from ..findings import Finding, Severity
from ..rules import knowledge_base
from .base import ScanContext

MAX_SOURCE = 16 * 1024 * 1024
FLAGGED_CATEGORIES = {"command_exec", "code_exec", "native_code", "code_object"}
BUILTIN_NAMES = {"eval", "exec", "compile", "__import__", "execfile"}


def handle(stream: BinaryIO, ctx: ScanContext, member: str | None, depth: int) -> str:
    raw = stream.read(MAX_SOURCE + 1)
    if len(raw) > MAX_SOURCE:
        ctx.add_problem(member, f"Python source larger than {MAX_SOURCE} bytes")
        return "python"
    text = raw.decode("utf-8", "replace")
    if text.lstrip().startswith("{") and '"cells"' in text[:4096]:
        return _notebook(text, ctx, member)
    _check_source(text, ctx, member, line_offset=0)
    return "python"


def _notebook(text: str, ctx: ScanContext, member: str | None) -> str:
    try:
        cells = json.loads(text).get("cells", [])
    except (ValueError, AttributeError) as exc:
        ctx.add_problem(member, f"notebook is not valid JSON: {exc}")
        return "notebook"
    for index, cell in enumerate(cells):
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            source = cell.get("source", "")
            source = "".join(source) if isinstance(source, list) else str(source)
            # Notebook magics and shell escapes are not Python; a shell escape is a command.
            lines = [ln for ln in source.splitlines()]
            for number, line in enumerate(lines, 1):
                if line.lstrip().startswith("!"):
                    ctx.add_finding(Finding(
                        "python-shell-escape", Severity.MEDIUM, "command_exec",
                        "runs a shell command from a notebook cell",
                        ctx.location(f"{member or ''}#cell{index}" if member else f"cell{index}", line=number),
                        line.strip()[:200]))
            cleaned = "\n".join("" if ln.lstrip().startswith(("!", "%")) else ln for ln in lines)
            _check_source(cleaned, ctx, member, line_offset=0, cell=index)
    return "notebook"


def _check_source(text: str, ctx: ScanContext, member: str | None, line_offset: int, cell: int | None = None) -> None:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        where = f" (cell {cell})" if cell is not None else ""
        ctx.add_problem(member, f"Python source does not parse{where}: {exc}")
        return
    lines = text.splitlines()
    aliases = _imports(tree)
    kb = knowledge_base()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if name is None:
            continue
        head, _, rest = name.partition(".")
        if head in aliases:
            name = aliases[head] + ("." + rest if rest else "")
        elif not rest and head in BUILTIN_NAMES:
            name = f"builtins.{head}"
        elif not rest:
            continue
        verdict = kb.classify(name)
        rule = verdict.rule
        if verdict.kind != "dangerous" or rule.category not in FLAGGED_CATEGORIES:
            continue
        if rule.severity < Severity.HIGH:
            continue
        line = getattr(node, "lineno", 0)
        evidence = lines[line - 1].strip()[:200] if 0 < line <= len(lines) else ""
        ctx.add_finding(Finding(
            "python-dangerous-call", rule.severity, rule.category,
            f"calls {name}: {rule.message}" + (f" (notebook cell {cell})" if cell is not None else ""),
            ctx.location(member, line=line + line_offset), evidence))


def _imports(tree: ast.AST) -> dict[str, str]:
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    aliases[top] = top
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


HANDLERS = {"python": handle}
