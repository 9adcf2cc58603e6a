"""Render a pickle trace as the Python program the unpickler would effectively run.

The output is valid Python (elided parts become `...`), so the code engine can parse it, and
it is bounded in size whatever the input (shared and deeply nested values are cut off).
"""
from __future__ import annotations

import keyword
from dataclasses import dataclass

from ..limits import DEFAULT_LIMITS, Limits
from .values import (
    Blob, Buffer, Call, Const, DictValue, DynamicGlobal, Global, ListValue, Result, SetValue,
    TupleValue,
)

MAX_ITEMS = 8  # container items shown before `...`
MAX_LITERAL = 160  # characters of a literal shown before it is cut
MAX_NODES = 400  # values rendered per statement: shared memo references cannot blow it up


@dataclass
class Program:
    source: str
    lines: list  # (line number, stream offset) for each statement
    truncated: bool


class Renderer:
    """max_literal: characters of a string shown before it is cut; evidence keeps it short,
    the program handed to the code engine keeps code strings whole."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS, max_literal: int = MAX_LITERAL):
        self.max_depth = limits.max_render_depth
        self.max_literal = max_literal
        self._budget = MAX_NODES

    def expr(self, value, depth: int = 0) -> str:
        if depth > self.max_depth or self._budget <= 0:
            return "..."
        self._budget -= 1
        if isinstance(value, Const):
            return _literal(value.value, self.max_literal)
        if isinstance(value, Result):
            return f"_v{value.call.index}"
        if isinstance(value, Global):
            return dotted(value.qualname)
        if isinstance(value, Blob):
            kind = "str" if value.text else "bytes"
            return f"_large_{kind}(offset={value.offset}, length={value.length})"
        if isinstance(value, DynamicGlobal):
            module = self.expr(value.module, depth + 1)
            name = self.expr(value.name, depth + 1)
            return f"getattr(__import__({module}), {name})"
        if isinstance(value, ListValue):
            return "[" + self._items(value.items, depth) + "]"
        if isinstance(value, TupleValue):
            inner = self._items(value.items, depth)
            return "(" + inner + ("," if len(value.items) == 1 else "") + ")"
        if isinstance(value, SetValue):
            inner = self._items(value.items, depth)
            text = "{" + inner + "}" if value.items else "set()"
            return f"frozenset({text})" if value.frozen else text
        if isinstance(value, DictValue):
            shown = value.items[:MAX_ITEMS]
            parts = [f"{self.expr(k, depth + 1)}: {self.expr(v, depth + 1)}" for k, v in shown]
            if len(value.items) > MAX_ITEMS:
                parts.append("**{...: ...}")
            return "{" + ", ".join(parts) + "}"
        if isinstance(value, Buffer):
            return "_out_of_band_buffer()"
        return "..."

    def _items(self, items, depth: int) -> str:
        parts = [self.expr(item, depth + 1) for item in list(items[:MAX_ITEMS])]
        if len(items) > MAX_ITEMS:
            parts.append("...")
        return ", ".join(parts)

    def _arguments(self, call: Call) -> str:
        parts = [self.expr(arg, 1) for arg in call.args[:MAX_ITEMS * 2]]
        if len(call.args) > MAX_ITEMS * 2:
            parts.append("...")
        for key, value in call.kwargs:
            if isinstance(key, Const) and isinstance(key.value, str) and key.value.isidentifier():
                parts.append(f"{key.value}={self.expr(value, 1)}")
            else:
                parts.append(f"**{{{self.expr(key, 1)}: {self.expr(value, 1)}}}")
        return ", ".join(parts)

    def statement(self, call: Call) -> str:
        self._budget = MAX_NODES
        func = self.expr(call.func) if call.func is not None else "persistent_load"
        args = self._arguments(call)
        kind = call.kind
        if kind in ("reduce", "obj", "inst", "persistent_load"):
            return f"_v{call.index} = {_callee(func)}({args})"
        if kind in ("newobj", "newobj_ex"):
            sep = ", " if args else ""
            return f"_v{call.index} = {_callee(func)}.__new__({func}{sep}{args})"
        if kind == "build":
            return f"{_callee(func)}.__setstate__({args})"
        if kind == "setitem":
            key, value = (self.expr(a, 1) for a in call.args)
            return f"{_callee(func)}[{key}] = {value}"
        return f"{_callee(func)}.{call.method}({args})"

    def program(self, trace, max_chars: int) -> Program:
        lines: list[str] = []
        mapping: list[tuple[int, int]] = []
        size = 0
        truncated = False
        imports = sorted({_import_of(g.qualname) for g in trace.globals if isinstance(g, Global)} - {None})
        for module in imports:
            lines.append(f"import {module}")
        for call in trace.calls:
            text = self.statement(call)
            if size + len(text) > max_chars:
                truncated = True
                lines.append("...  # program cut: too long to show")
                break
            size += len(text)
            lines.append(text)
            mapping.append((len(lines), call.offset))
        if not truncated:
            for index, value in enumerate(trace.results):
                self._budget = MAX_NODES
                text = f"result_{index} = {self.expr(value)}"
                if size + len(text) > max_chars:
                    truncated = True
                    lines.append("...  # program cut: too long to show")
                    break
                size += len(text)
                lines.append(text)
        return Program("\n".join(lines) + "\n", mapping, truncated)


def _is_name(part: str) -> bool:
    return part.isidentifier() and not keyword.iskeyword(part)


MAX_DOTTED_CHARS = 1024  # longer names are shown cut, as an __import__ of a shortened literal


def dotted(qualname: str) -> str:
    if len(qualname) > MAX_DOTTED_CHARS:
        return f"__import__({_literal(qualname)})"
    parts = qualname.split(".")
    if all(_is_name(part) for part in parts):
        return qualname
    return f"__import__({qualname!r})"


def _import_of(qualname: str) -> str | None:
    parts = qualname.split(".")
    if len(parts) < 2 or not all(_is_name(part) for part in parts):
        return None
    return parts[0]


def _callee(text: str) -> str:
    """Parenthesise anything that is not a plain name or attribute chain."""
    if all(part.isidentifier() for part in text.split(".")):
        return text
    return f"({text})"


def _literal(value, max_literal: int = MAX_LITERAL) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 4 * MAX_LITERAL:
        return "..."  # repr of a huge int is slow, and refused past sys.get_int_max_str_digits()
    if isinstance(value, (str, bytes, bytearray)) and len(value) > 4 * max_literal:
        value = value[: 4 * max_literal]  # never repr more than can be shown
        text = repr(value) + "!"
    else:
        text = repr(value)
    if len(text) <= max_literal:
        return text
    if isinstance(value, (str, bytes, bytearray)):
        # escapes make repr longer than the value: shrink the prefix until its repr fits
        length = max_literal // 2
        while length > 1 and len(repr(value[:length])) > max_literal:
            length //= 2
        return f"({repr(value[:length])} + ...)"
    return "..."


def render_call(call: Call, limits: Limits = DEFAULT_LIMITS) -> str:
    text = Renderer(limits).statement(call)
    if len(text) > limits.max_evidence_chars:
        text = text[: limits.max_evidence_chars] + " ..."
    return text
