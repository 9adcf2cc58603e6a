"""Python sources and notebooks (scripts, remote code, TorchScript code/): parsed, never run,
and analysed by the code engine."""
from __future__ import annotations

import json
from typing import BinaryIO

from ..code.engine import Unit, analyse_unit
from ..findings import Finding, Severity
from .base import ScanContext

MAX_SOURCE = 16 * 1024 * 1024


def handle(stream: BinaryIO, ctx: ScanContext, member: str | None, depth: int) -> str:
    raw = stream.read(MAX_SOURCE + 1)
    if len(raw) > MAX_SOURCE:
        ctx.add_problem(member, f"Python source larger than {MAX_SOURCE} bytes")
        return "python"
    text = raw.decode("utf-8", "replace")
    if text.lstrip().startswith("{") and '"cells"' in text[:4096]:
        return _notebook(text, ctx, member, depth)
    if _is_torchscript_code(member):
        analyse_unit(Unit(text, "torchscript", member), ctx, depth)
        return "torchscript_code"
    analyse_unit(Unit(text, "python", member), ctx, depth)
    return "python"


def _is_torchscript_code(member: str | None) -> bool:
    """The `code/` of a TorchScript archive: `<archive>/code/__torch__...py`."""
    path = "/" + (member or "").rsplit(":", 1)[-1]
    return "/code/__torch__" in path


def _notebook(text: str, ctx: ScanContext, member: str | None, depth: int) -> str:
    try:
        cells = json.loads(text).get("cells", [])
    except (ValueError, AttributeError) as exc:
        ctx.add_problem(member, f"notebook is not valid JSON: {exc}")
        return "notebook"
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        lines = source.splitlines()
        for number, line in enumerate(lines, 1):
            if line.lstrip().startswith("!"):
                # A shell escape is a command the notebook runs when the cell runs.
                ctx.add_finding(Finding(
                    "python-shell-escape", Severity.MEDIUM, "command_exec",
                    f"runs a shell command from notebook cell {index}",
                    ctx.location(member, line=number), line.strip()[:200]))
        # Magics and shell escapes are not Python: blank them, keeping line numbers.
        cleaned = "\n".join("" if ln.lstrip().startswith(("!", "%")) else ln for ln in lines)
        analyse_unit(Unit(cleaned, "python", member, origin=f"notebook cell {index}"), ctx, depth)
    return "notebook"


HANDLERS = {"python": handle}
