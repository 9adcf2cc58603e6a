"""GGUF files (llama.cpp and its kin): the metadata key/value section is read as a bounded
stream, and the chat templates in it are analysed as Jinja. Tensor infos and tensor data are
never read: a GGUF holds code only in its templates.

Layout: magic `GGUF`, version (1, 2 or 3; byte order told by the version field), tensor count,
key/value count, then the pairs. Version 1 wrote counts and lengths as 32-bit integers.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import BinaryIO

from ..findings import Finding, Severity
from ..limits import KIB, MIB, LimitExceeded
from .base import ScanContext, join_member

MAGIC = b"GGUF"
VERSIONS = (1, 2, 3)
MAX_KV_PAIRS = 1_000_000  # real files carry a few dozen
MAX_KEY_BYTES = 64 * KIB
MAX_ARRAY_DEPTH = 4
MAX_KEPT_STRING = 4 * MIB  # string values up to this size are kept for analysis
MAX_METADATA_BYTES = 256 * MIB  # a 256k-token vocabulary with merges takes about 10 MiB
HOSTILE_CLAIM = 256 * MIB  # claimed beyond the end of the file, this much is built to exhaust
MAX_SCANNED_TEXT = 16 * MIB  # of other string values, for text patterns
READ_CHUNK = 1 * MIB
MIN_TENSOR_INFO = 20  # name length, dimension count, type, offset

STRING, ARRAY = 8, 9
SCALARS = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
TYPE_NAMES = {0: "uint8", 1: "int8", 2: "uint16", 3: "int16", 4: "uint32", 5: "int32", 6: "float32",
              7: "bool", 8: "string", 9: "array", 10: "uint64", 11: "int64", 12: "float64"}


class _Malformed(Exception):
    """The bytes are not a readable GGUF (truncated, unknown type ...): inconclusive."""


@dataclass
class _Text:
    key: str
    offset: int
    value: str


@dataclass
class _Metadata:
    version: int = 0
    byte_order: str = "<"
    tensor_count: int = 0
    kv_count: int = 0
    templates: list = field(default_factory=list)
    texts: list = field(default_factory=list)
    text_bytes: int = 0


class _Cursor:
    """Sequential reads and skips over a stream, counted against the metadata budget."""

    def __init__(self, stream: BinaryIO, ctx: ScanContext, member: str | None):
        self.stream = stream
        self.ctx = ctx
        self.member = member
        self.seekable = _seekable(stream)
        self.origin = stream.tell() if self.seekable else 0
        self.size = _size(stream, self.origin) if self.seekable else None
        self.pos = 0
        self.buffer = b""
        self.at = 0  # next unread byte of buffer
        self.order = "<"
        self.wide = True  # 64-bit counts and lengths (version 2 on)

    def remaining(self) -> int | None:
        return None if self.size is None else self.size - self.pos

    def claim(self, nbytes: int, what: str) -> None:
        """The file says nbytes follow: check that before reading or skipping a byte of them."""
        remaining = self.remaining()
        if remaining is not None and nbytes > remaining:
            if nbytes >= HOSTILE_CLAIM:
                raise LimitExceeded("gguf_claimed_size", f"{what} claims {nbytes} bytes at offset {self.pos}, "
                                    f"{remaining} remain", hostile=True)
            raise _Malformed(f"truncated: {what} claims {nbytes} bytes at offset {self.pos}, {remaining} remain")
        if self.pos + nbytes > MAX_METADATA_BYTES:
            raise LimitExceeded("gguf_metadata_bytes",
                                f"{what} at offset {self.pos} goes past {MAX_METADATA_BYTES} bytes of metadata")

    def read(self, n: int, what: str = "value") -> bytes:
        self.claim(n, what)
        available = len(self.buffer) - self.at
        if n <= available:
            data = self.buffer[self.at:self.at + n]
            self.at += n
        else:
            parts = [self.buffer[self.at:]]
            missing = n - available
            while missing > 0:
                chunk = self.stream.read(max(missing, READ_CHUNK))
                if not chunk:
                    raise _Malformed(f"truncated at offset {self.pos + n - missing}")
                parts.append(chunk[:missing])
                self.buffer, self.at = chunk, min(missing, len(chunk))
                missing -= len(chunk)
            data = b"".join(parts)
        self.pos += n
        return data

    def skip(self, n: int, what: str = "value") -> None:
        self.claim(n, what)
        available = len(self.buffer) - self.at
        if n <= available:
            self.at += n
            self.pos += n
            return
        stream_pos = self.pos + available  # where the stream itself stands
        self.buffer, self.at = b"", 0
        self.pos += n
        if self.seekable:
            self.stream.seek(self.origin + self.pos)
            return
        left = self.pos - stream_pos
        while left > 0:
            chunk = self.stream.read(min(left, READ_CHUNK))
            if not chunk:
                raise _Malformed(f"truncated at offset {self.pos - left}")
            left -= len(chunk)

    def skip_strings(self, count: int, what: str) -> None:
        """Skip count length-prefixed strings, walking the buffer in place where it holds them."""
        length_of = struct.Struct(self.order + ("Q" if self.wide else "I")).unpack_from
        size = self.count_size
        while count > 0:
            self.ctx.deadline.check()
            buffer, at, end, skipped = self.buffer, self.at, len(self.buffer), 0
            while skipped < count and at + size <= end:
                following = at + size + length_of(buffer, at)[0]
                if following > end:
                    break
                at, skipped = following, skipped + 1
            self.pos += at - self.at
            self.at = at
            count -= skipped
            if self.pos > MAX_METADATA_BYTES:
                raise LimitExceeded("gguf_metadata_bytes", f"{what} goes past {MAX_METADATA_BYTES} bytes of metadata")
            if count > 0:  # a string that crosses the end of the buffer
                self.skip(self.count(), what)
                count -= 1

    def u32(self) -> int:
        return struct.unpack(self.order + "I", self.read(4))[0]

    def count(self) -> int:
        """A length or count: 64-bit from version 2 on, 32-bit in version 1."""
        return struct.unpack(self.order + ("Q" if self.wide else "I"), self.read(8 if self.wide else 4))[0]

    @property
    def count_size(self) -> int:
        return 8 if self.wide else 4


def handle(stream: BinaryIO, ctx: ScanContext, member: str | None, depth: int) -> str:
    cursor = _Cursor(stream, ctx, member)
    meta = _Metadata()
    try:
        _read(cursor, meta, ctx, member)
    except _Malformed as exc:
        ctx.add_problem(member, f"GGUF metadata not fully read: {exc}", cursor.pos)
    except LimitExceeded as exc:
        ctx.limit_hit(member, exc, cursor.pos)
    _analyse_templates(meta, ctx, member)
    _scan_texts(meta, ctx, member)
    return "gguf"


def chat_templates(stream: BinaryIO, name: str = "") -> list[tuple[str, str]]:
    """The chat templates in a GGUF file's metadata, as (key, text), read up to any damage."""
    ctx = ScanContext(name)
    meta = _Metadata()
    try:
        _read(_Cursor(stream, ctx, None), meta, ctx, None)
    except (_Malformed, LimitExceeded):
        pass  # what was read before the damage is still returned
    return [(template.key, template.value) for template in meta.templates]


def _read(cursor: _Cursor, meta: _Metadata, ctx: ScanContext, member: str | None) -> None:
    if cursor.read(4) != MAGIC:
        raise _Malformed("no GGUF magic")
    raw_version = cursor.read(4)
    for order in ("<", ">"):
        version = struct.unpack(order + "I", raw_version)[0]
        if version in VERSIONS:
            break
    else:
        raise _Malformed(f"unsupported GGUF version {struct.unpack('<I', raw_version)[0]}")
    cursor.order, cursor.wide = order, version >= 2
    meta.version, meta.byte_order = version, order
    meta.tensor_count = cursor.count()
    meta.kv_count = cursor.count()
    _check_tensor_count(cursor, meta)
    cursor.claim(meta.kv_count * (cursor.count_size + 4 + 1), f"{meta.kv_count} key/value pairs")
    if meta.kv_count > MAX_KV_PAIRS:
        raise LimitExceeded("gguf_kv_pairs", f"{meta.kv_count} key/value pairs (at most {MAX_KV_PAIRS} read)")
    for index in range(meta.kv_count):
        if index % 256 == 0:
            ctx.deadline.check()
        _read_pair(cursor, meta, ctx)


def _check_tensor_count(cursor: _Cursor, meta: _Metadata) -> None:
    """Tensor infos are not read, but a count no file of this size can hold is a hostile shape."""
    claimed = meta.tensor_count * MIN_TENSOR_INFO
    remaining = cursor.remaining()
    if remaining is not None and claimed > remaining:
        raise LimitExceeded("gguf_tensor_count", f"{meta.tensor_count} tensors claimed in a file of "
                            f"{cursor.size} bytes", hostile=claimed >= HOSTILE_CLAIM)


def _read_pair(cursor: _Cursor, meta: _Metadata, ctx: ScanContext) -> None:
    key_length = cursor.count()
    if key_length > MAX_KEY_BYTES:
        cursor.claim(key_length, "key")
        raise LimitExceeded("gguf_key_bytes", f"a key of {key_length} bytes at offset {cursor.pos}")
    key = cursor.read(key_length, "key").decode("utf-8", "replace")
    value_type = cursor.u32()
    if value_type == STRING:
        _read_string_value(cursor, meta, key)
    elif value_type == ARRAY:
        _skip_array(cursor, key, 1, ctx)
    elif value_type in SCALARS:
        cursor.skip(SCALARS[value_type])
    else:
        raise _Malformed(f"unknown value type {value_type} for key {key!r}")


def _read_string_value(cursor: _Cursor, meta: _Metadata, key: str) -> None:
    length = cursor.count()
    offset = cursor.pos
    cursor.claim(length, f"string value of {key!r}")
    template = _is_template_key(key)
    if length > MAX_KEPT_STRING:
        if template:
            cursor.ctx.add_problem(cursor.member, f"GGUF chat template {key!r} of {length} bytes is longer than "
                                   f"{MAX_KEPT_STRING}: not analysed", offset)
        cursor.skip(length)
        return
    if not template and meta.text_bytes + length > MAX_SCANNED_TEXT:
        cursor.skip(length)
        return
    value = cursor.read(length).decode("utf-8", "replace")
    if template:
        meta.templates.append(_Text(key, offset, value))
    else:
        meta.text_bytes += length
        meta.texts.append(_Text(key, offset, value))


def _skip_array(cursor: _Cursor, key: str, depth: int, ctx: ScanContext) -> None:
    """Arrays (vocabularies, scores, merges) are data: skipped without keeping an element."""
    if depth > MAX_ARRAY_DEPTH:
        raise LimitExceeded("gguf_array_depth", f"arrays nested deeper than {MAX_ARRAY_DEPTH} in {key!r}")
    element_type = cursor.u32()
    count = cursor.count()
    what = f"array {key!r} of {count} {TYPE_NAMES.get(element_type, '?')} elements"
    if element_type in SCALARS:
        cursor.skip(count * SCALARS[element_type], what)
        return
    if element_type == STRING:
        cursor.claim(count * cursor.count_size, what)
        cursor.skip_strings(count, what)
        return
    if element_type == ARRAY:
        cursor.claim(count * (4 + cursor.count_size), what)
        for index in range(count):
            if index % 4096 == 0:
                ctx.deadline.check()
            _skip_array(cursor, key, depth + 1, ctx)
        return
    raise _Malformed(f"unknown element type {element_type} in array {key!r}")


def _is_template_key(key: str) -> bool:
    """tokenizer.chat_template and the named ones, tokenizer.chat_template.<name>."""
    return key == "tokenizer.chat_template" or key.startswith("tokenizer.chat_template.") or (
        "chat_template" in key and not key.endswith("chat_templates"))


def _analyse_templates(meta: _Metadata, ctx: ScanContext, member: str | None) -> None:
    from .templates import analyse_template

    for template in meta.templates:
        name = join_member(member, template.key)
        analyse_template(template.value, ctx, name, f"GGUF chat template {template.key}", offset=template.offset)
        ctx.record_member(name, "chat_template")


def _scan_texts(meta: _Metadata, ctx: ScanContext, member: str | None) -> None:
    """Names, descriptions and URLs are data; text patterns in them only inform."""
    if not meta.texts:
        return
    try:
        from ..code.patterns import scan_text
    except ImportError:
        return
    seen: set = set()
    for text in meta.texts:
        if not text.value.strip():
            continue
        try:
            matches = scan_text(text.value)
        except LimitExceeded as exc:
            ctx.limit_hit(member, exc, text.offset)
            continue
        for match in matches:
            if match.rule in seen:
                continue
            seen.add(match.rule)
            ctx.add_finding(Finding(f"pattern-{match.rule}", Severity.INFO, match.category,
                                    f"GGUF metadata {text.key}: {match.description}",
                                    ctx.location(member, text.offset),
                                    f"{text.key}: {match.matched}"))


def _seekable(stream) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _size(stream, origin: int) -> int | None:
    try:
        end = stream.seek(0, 2)
        stream.seek(origin)
        return end - origin
    except (OSError, ValueError):
        return None


HANDLERS = {"gguf": handle}
