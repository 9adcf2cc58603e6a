"""JSON files: data, except for the chat templates that tokenizer and processor configs carry
(`tokenizer_config.json`, `chat_template.json`, `processor_config.json`), which are Jinja
programs and are analysed as such.

A JSON file is parsed whole up to MAX_PARSE_BYTES. Past that no config is that large: the file
is read as a stream for the words that could name a chat template, and one that holds them is
reported as not analysed rather than parsed without bound.
"""
from __future__ import annotations

import json
import re
from typing import BinaryIO

from ..limits import MIB, LimitExceeded
from .base import ScanContext, join_member

MAX_PARSE_BYTES = 32 * MIB
MAX_JSON_LINES_BYTES = 32 * MIB
READ_CHUNK = 4 * MIB
TEMPLATE_KEY = "chat_template"
JSON_SUFFIXES = (".json", ".jsonl", ".ndjson", ".json5", ".jsonc", ".geojson")
# `\u0063hat_template` is the same key to a JSON parser; serializers never escape letters.
_ESCAPED_LETTER = re.compile(rb"\\u00(?:[46][1-9a-fA-F]|[57][0-9aA]|5[fF])")
_NEEDLE = TEMPLATE_KEY.encode()


def handle(stream: BinaryIO, ctx: ScanContext, member: str | None, depth: int) -> str:
    raw = stream.read(MAX_PARSE_BYTES + 1)
    if len(raw) > MAX_PARSE_BYTES:
        return _large(raw, stream, ctx, member)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        ctx.add_problem(member, f"JSON file is not UTF-8 text (byte {exc.start})")
        return "json"
    try:
        data = json.loads(text)
    except RecursionError:
        ctx.limit_hit(member, LimitExceeded("json_depth", "JSON nested deeper than the parser goes", hostile=True))
        return "json"
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and _json_lines(text, ctx, member):
            return "json_lines"
        return _not_json(text, exc, ctx, member)
    _templates(data, ctx, member)
    return "json"


def _not_json(text: str, exc: json.JSONDecodeError, ctx: ScanContext, member: str | None) -> str:
    """Text that starts like JSON but is not: a Jinja template is analysed as one; a file named
    as JSON is unreadable (never clean); other text (`[section]` of an INI or TOML file) is data."""
    if text.lstrip().startswith(("{{", "{%", "{#")):
        from .templates import analyse_template

        analyse_template(text, ctx, member, "template")
        return "template"
    if (member or ctx.file).lower().endswith(JSON_SUFFIXES):
        ctx.add_problem(member, f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", exc.pos)
        return "json"
    return "text"


def _json_lines(text: str, ctx: ScanContext, member: str | None) -> bool:
    """One JSON value a line (`.jsonl` datasets): data. False when it is not that either."""
    if len(text) > MAX_JSON_LINES_BYTES:
        return False
    decoder = json.JSONDecoder()
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        try:
            _, end = decoder.raw_decode(line)
        except (json.JSONDecodeError, RecursionError):
            return False
        if line[end:].strip():
            return False
    return True


def _templates(data, ctx: ScanContext, member: str | None) -> None:
    if not isinstance(data, dict) or TEMPLATE_KEY not in data:
        return
    from .templates import analyse_template

    for name, source in _named_templates(data[TEMPLATE_KEY], ctx, member):
        label = TEMPLATE_KEY if name is None else f"{TEMPLATE_KEY}.{name}"
        where = f"chat template {label}"
        path = join_member(member, label)
        analyse_template(source, ctx, path, where)
        ctx.record_member(path, "chat_template")


def _named_templates(value, ctx: ScanContext, member: str | None):
    """A string; a list of {"name": ..., "template": ...} (tokenizer_config.json); or a mapping
    of names to templates. Anything else is no template any loader renders."""
    if isinstance(value, str):
        yield None, value
    elif isinstance(value, list):
        for index, entry in enumerate(value):
            if isinstance(entry, dict) and isinstance(entry.get("template"), str):
                yield str(entry.get("name", index)), entry["template"]
    elif isinstance(value, dict):
        for name, template in value.items():
            if isinstance(template, str):
                yield str(name), template


def _large(head: bytes, stream: BinaryIO, ctx: ScanContext, member: str | None) -> str:
    """Too large to parse: look for a chat template key (plain or escaped) in a bounded stream."""
    tail = b""
    chunk = head
    offset = 0
    while chunk:
        ctx.deadline.check()
        window = tail + chunk
        found = window.find(_NEEDLE)
        escaped = _ESCAPED_LETTER.search(window)
        if found >= 0 or escaped:
            at = offset - len(tail) + (found if found >= 0 else escaped.start())
            what = "a chat_template key" if found >= 0 else "letters written as \\u escapes (a key could hide)"
            ctx.add_problem(member, f"JSON larger than {MAX_PARSE_BYTES} bytes holds {what}: not parsed", at)
            return "json"
        tail = window[-(len(_NEEDLE) + 6):]
        offset += len(chunk)
        chunk = stream.read(READ_CHUNK)
    return "large_json"


HANDLERS = {"json": handle}
