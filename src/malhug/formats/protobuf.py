"""A bounded reader of the protobuf wire format, for schemas malhug knows by field number.

Messages are views of a byte range of a source (bytes or a seekable stream). Iterating a
message yields its fields one by one; a length-delimited field is not read until asked for,
so a caller descends into the messages it needs and skips the rest (tensor data) with a seek.

    for field in Message.of(stream):
        if field.number == 7 and field.wire == LEN:
            for inner in field.message(): ...
        elif field.number == 2 and field.wire == LEN:
            name = field.text()
"""
from __future__ import annotations

import struct
import tempfile
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from ..limits import LimitExceeded

VARINT, I64, LEN, I32 = 0, 1, 2, 5
WIRE_NAMES = {VARINT: "varint", I64: "64-bit", LEN: "length-delimited", I32: "32-bit"}

MAX_VARINT_BYTES = 10
MAX_FIELDS = 50_000_000  # fields visited in one document, all messages together
MAX_MESSAGE_DEPTH = 100  # nested messages (graphs inside attributes inside graphs ...)
MAX_TEXT_BYTES = 1 << 20  # a string field read whole; longer ones are cut to this
CHUNK = 64 * 1024


class ProtoError(ValueError):
    """The bytes are not well-formed protobuf (truncated, a bad tag, a length past the end)."""


class Budget:
    """Bounds shared by every message of one document."""

    def __init__(self, max_fields: int = MAX_FIELDS, max_depth: int = MAX_MESSAGE_DEPTH, deadline=None):
        self.max_fields = max_fields
        self.max_depth = max_depth
        self.deadline = deadline
        self.fields = 0

    def count(self) -> None:
        self.fields += 1
        if self.fields > self.max_fields:
            raise LimitExceeded("max_protobuf_fields", f"more than {self.max_fields} protobuf fields")
        if self.deadline is not None and self.fields % 4096 == 0:
            self.deadline.check()


class _Source:
    """Random access to bytes or a seekable stream, through one cached window."""

    def __init__(self, data: bytes | BinaryIO, size: int | None = None):
        """size: where the data ends (for a stream, an absolute position; default: its end)."""
        if isinstance(data, (bytes, bytearray, memoryview)):
            self._bytes = bytes(data)
            self._stream = None
            self.size = len(self._bytes)
        else:
            self._bytes = None
            self._stream = data
            self.size = size if size is not None else _stream_size(data)
        self._window_start = 0
        self._window = b""

    def read(self, offset: int, size: int) -> bytes:
        if size <= 0:
            return b""
        if self._bytes is not None:
            return self._bytes[offset:offset + size]
        end = offset + size
        if self._window_start <= offset and end <= self._window_start + len(self._window):
            start = offset - self._window_start
            return self._window[start:start + size]
        if size > CHUNK:
            self._stream.seek(offset)
            return self._stream.read(size)
        self._stream.seek(offset)
        self._window = self._stream.read(max(CHUNK, size))
        self._window_start = offset
        return self._window[:size]


def _stream_size(stream: BinaryIO) -> int:
    """Where the stream ends (an absolute position, like the offsets read from it)."""
    here = stream.tell()
    end = stream.seek(0, 2)
    stream.seek(here)
    return end


@dataclass(frozen=True)
class Field:
    number: int
    wire: int
    value: int  # varint and fixed-width fields: the value; length-delimited: the length
    offset: int  # where the value starts in the source (absolute)
    source: "_Source"
    budget: Budget
    depth: int

    @property
    def length(self) -> int:
        return self.value if self.wire == LEN else 0

    def bytes(self, limit: int = MAX_TEXT_BYTES) -> bytes:
        """The payload of a length-delimited field, at most `limit` bytes of it."""
        self._expect(LEN)
        return self.source.read(self.offset, min(self.value, limit))

    def text(self, limit: int = MAX_TEXT_BYTES) -> str:
        return self.bytes(limit).decode("utf-8", "replace")

    def message(self) -> "Message":
        self._expect(LEN)
        if self.depth + 1 > self.budget.max_depth:
            raise LimitExceeded("max_message_depth", f"protobuf messages nested deeper than "
                                f"{self.budget.max_depth}", hostile=True)
        return Message(self.source, self.offset, self.offset + self.value, self.budget, self.depth + 1)

    def signed(self) -> int:
        """A varint read as int64 (negative numbers take ten bytes on the wire)."""
        self._expect(VARINT)
        return self.value - (1 << 64) if self.value >= 1 << 63 else self.value

    def double(self) -> float:
        self._expect(I64)
        return struct.unpack("<d", self.value.to_bytes(8, "little"))[0]

    def packed_varints(self, limit: int = 1 << 16) -> list[int]:
        """A packed repeated varint field (dims, ints), at most `limit` values."""
        data = self.bytes(limit * MAX_VARINT_BYTES)
        values, pos = [], 0
        while pos < len(data) and len(values) < limit:
            value, pos = _varint_from(data, pos)
            values.append(value)
        return values

    def _expect(self, wire: int) -> None:
        if self.wire != wire:
            raise ProtoError(f"field {self.number} is {WIRE_NAMES.get(self.wire)}, "
                             f"expected {WIRE_NAMES[wire]}")


class Message:
    """The fields of [start, end) of a source, read on iteration."""

    def __init__(self, source: _Source, start: int, end: int, budget: Budget, depth: int = 0):
        if end > source.size:
            raise ProtoError(f"message of {end - start} bytes at {start} runs past the end of the data")
        self.source = source
        self.start = start
        self.end = end
        self.budget = budget
        self.depth = depth

    @classmethod
    def of(cls, data: bytes | BinaryIO, budget: Budget | None = None, size: int | None = None) -> "Message":
        """The top-level message: all of `data`, or a stream from its position on."""
        source = _Source(data, size)
        start = 0 if source._stream is None else data.tell()
        return cls(source, start, source.size, budget or Budget())

    def __iter__(self) -> Iterator[Field]:
        pos = self.start
        while pos < self.end:
            self.budget.count()
            tag_at = pos
            tag, pos = self._varint(pos)
            number, wire = tag >> 3, tag & 7
            if number == 0:
                raise ProtoError(f"field number 0 at {tag_at}")
            if wire == VARINT:
                value, pos = self._varint(pos)
                yield Field(number, wire, value, tag_at, self.source, self.budget, self.depth)
                continue
            if wire in (I64, I32):
                width = 8 if wire == I64 else 4
                raw = self._take(pos, width)
                value = int.from_bytes(raw, "little")
                yield Field(number, wire, value, pos, self.source, self.budget, self.depth)
                pos += width
                continue
            if wire == LEN:
                length, pos = self._varint(pos)
                if pos + length > self.end:
                    raise ProtoError(f"field {number} at {tag_at} claims {length} bytes, "
                                     f"past the end of its message")
                yield Field(number, wire, length, pos, self.source, self.budget, self.depth)
                pos += length
                continue
            raise ProtoError(f"unsupported wire type {wire} (field {number}) at {tag_at}")

    def _take(self, pos: int, size: int) -> bytes:
        if pos + size > self.end:
            raise ProtoError(f"truncated field at {pos}")
        return self.source.read(pos, size)

    def _varint(self, pos: int) -> tuple[int, int]:
        data = self.source.read(pos, min(MAX_VARINT_BYTES, self.end - pos))
        try:
            value, used = _varint_from(data, 0)
        except ProtoError:
            raise ProtoError(f"truncated or overlong varint at {pos}") from None
        return value, pos + used


def _varint_from(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    for index in range(pos, min(len(data), pos + MAX_VARINT_BYTES)):
        byte = data[index]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value & ((1 << 64) - 1), index + 1
        shift += 7
    raise ProtoError("truncated or overlong varint")


def string_entries(message: Message, key_field: int = 1, value_field: int = 2,
                   limit: int = MAX_TEXT_BYTES) -> tuple[str, str]:
    """A map<string, string> entry (or StringStringEntryProto) as (key, value)."""
    key = value = ""
    for field in message:
        if field.wire != LEN:
            continue
        if field.number == key_field:
            key = field.text(limit)
        elif field.number == value_field:
            value = field.text(limit)
    return key, value


def looks_like_protobuf(data: bytes, max_fields: int = 64) -> bool:
    """Whether the start of `data` reads as protobuf fields (a field cut off by the end is fine)."""
    count = 0
    try:
        for _ in Message.of(data, Budget(max_fields=max_fields + 1)):
            count += 1
            if count >= max_fields:
                break
    except (ProtoError, LimitExceeded) as exc:
        return count > 0 and "past the end" in str(exc)
    return count > 0


SPOOL_IN_MEMORY = 64 * 1024 * 1024
COPY_CHUNK = 1024 * 1024


def random_access(stream: BinaryIO, max_bytes: int) -> BinaryIO:
    """The stream itself when it can seek; else its bytes copied to a spooled temporary file."""
    try:
        if stream.seekable():
            return stream
    except (AttributeError, OSError, ValueError):
        pass
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
    copied = 0
    while True:
        chunk = stream.read(COPY_CHUNK)
        if not chunk:
            break
        copied += len(chunk)
        if copied > max_bytes:
            spool.close()
            raise LimitExceeded("max_member_size", f"more than {max_bytes} bytes to copy for random access")
        spool.write(chunk)
    spool.seek(0)
    return spool
