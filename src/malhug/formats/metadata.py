"""Free text a model file carries beside its tensors (ONNX metadata_props, safetensors
`__metadata__`): nothing reads it as code, so code or an encoded payload in it is out of place.

Pattern matches only inform. A value that is a Python program, or base64 of one (or of a
pickle or an archive), is suspicious on its own and is analysed like any other code.
"""
from __future__ import annotations

import ast
import base64
import binascii
import io
import re

from ..findings import Finding, Severity
from .base import ScanContext, join_member

MAX_VALUE_CHARS = 1 << 20
MIN_ENCODED_CHARS = 24
EVIDENCE_CHARS = 200

_BASE64 = re.compile(r"[A-Za-z0-9+/_-]{%d,}={0,2}\Z" % MIN_ENCODED_CHARS)
_RUNNERS = {"exec", "eval", "compile", "__import__", "system", "popen", "Popen", "run", "call",
            "check_output", "check_call", "spawn", "getattr", "loads", "load", "open", "urlopen"}
_DEFINITIONS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


def check_text(ctx: ScanContext, member: str | None, where: str, text: str, depth: int,
               prose: bool = False) -> None:
    """Report what one metadata value holds; `where` names it ("metadata 'author'"). Prose
    (documentation, which may quote usage examples) only goes through the patterns."""
    text = text[:MAX_VALUE_CHARS]
    if prose:
        _patterns(ctx, member, where, text)
        return
    if looks_like_code(text):
        _code(ctx, member, where, text, f"{where} holds Python code")
        return
    decoded = _base64(text)
    if decoded is not None and _payload(ctx, member, where, decoded, depth):
        return
    _patterns(ctx, member, where, text)


def looks_like_code(text: str) -> bool:
    """A Python program, not a word or a number: it imports, defines, or calls a runner."""
    if "\n" not in text and ";" not in text and "(" not in text:
        return False
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, _DEFINITIONS):
            return True
        if isinstance(node, ast.Call) and _callee(node.func) in _RUNNERS:
            return True
    return False


def _callee(func) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _base64(text: str) -> bytes | None:
    compact = "".join(text.split())
    if not _BASE64.match(compact):
        return None
    try:
        if "-" in compact or "_" in compact:
            return base64.urlsafe_b64decode(compact + "=" * (-len(compact) % 4))
        return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _payload(ctx: ScanContext, member: str | None, where: str, data: bytes, depth: int) -> bool:
    from . import analyse
    from .sniff import sniff

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and looks_like_code(text):
        _code(ctx, member, where, text, f"{where} holds base64-encoded Python code")
        return True
    fmt = sniff(data[:65536])
    if fmt in ("text", "empty", "unknown", "python", "json"):
        return False
    ctx.add_finding(Finding(
        "metadata-encoded-payload", Severity.MEDIUM, "deserialization",
        f"{where} holds a base64-encoded {fmt} payload", ctx.location(member),
        f"{where} = {_short(data.hex())}"))
    analyse(io.BytesIO(data), ctx, join_member(member, f"<{where}, base64>"), depth=depth + 1)
    return True


def _code(ctx: ScanContext, member: str | None, where: str, text: str, message: str) -> None:
    from ..code.engine import Unit, analyse_unit

    ctx.add_finding(Finding("metadata-code", Severity.MEDIUM, "code_object", message,
                            ctx.location(member), _short(text)))
    analyse_unit(Unit(text, "python", member, origin=f"code in {where}"), ctx)


def _patterns(ctx: ScanContext, member: str | None, where: str, text: str) -> None:
    try:
        from ..code.patterns import scan_text
    except ImportError:
        return
    for match in scan_text(text):
        ctx.add_finding(Finding(f"pattern-{match.rule}", Severity.INFO, match.category,
                                f"{match.description} ({where})", ctx.location(member), match.matched))


def _short(text: str) -> str:
    text = text.strip()
    return text if len(text) <= EVIDENCE_CHARS else text[:EVIDENCE_CHARS] + "…"
