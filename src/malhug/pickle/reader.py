"""A forward-only byte reader over a binary stream that knows its offset and can skip cheaply.

Large arguments are never held whole: `skip` seeks when the stream allows it and otherwise
reads and drops bounded chunks, so memory stays flat whatever the size of the input.
"""
from __future__ import annotations

import io
from typing import BinaryIO

from ..streams import Slice

CHUNK = 64 * 1024


class Truncated(Exception):
    """The stream ended before an opcode or its argument was complete."""


class ByteReader:
    def __init__(self, stream: BinaryIO, start: int = 0, end: int | None = None):
        self._stream = stream
        self._buffer = b""
        self._pos = 0  # position inside _buffer
        self._offset = start  # absolute offset of _buffer[0]
        self._end = end  # absolute end (exclusive), if the input is a region of the stream
        self._seekable = _is_seekable(stream)
        self.bytes_skipped = 0

    # -- position ---------------------------------------------------------------------------
    def tell(self) -> int:
        return self._offset + self._pos

    def at_eof(self) -> bool:
        return not self._fill(1)

    # -- reading ----------------------------------------------------------------------------
    def _remaining_allowed(self) -> int | None:
        if self._end is None:
            return None
        return max(0, self._end - (self._offset + len(self._buffer)))

    def _fill(self, n: int) -> bool:
        """Make sure at least n unread bytes are buffered; False when the input ends first."""
        available = len(self._buffer) - self._pos
        if available >= n:
            return True
        self._buffer = self._buffer[self._pos:]
        self._offset += self._pos
        self._pos = 0
        while len(self._buffer) < n:
            want = max(CHUNK, n - len(self._buffer))
            allowed = self._remaining_allowed()
            if allowed is not None:
                want = min(want, allowed)
                if want == 0:
                    return False
            data = self._stream.read(want)
            if not data:
                return False
            self._buffer += data
        return True

    def peek(self, n: int) -> bytes:
        self._fill(n)
        return self._buffer[self._pos:self._pos + n]

    def read(self, n: int) -> bytes:
        if n < 0:
            raise Truncated("negative length")
        if not self._fill(n):
            raise Truncated(f"needed {n} bytes at offset {self.tell()}")
        data = self._buffer[self._pos:self._pos + n]
        self._pos += n
        return data

    def read_byte(self) -> int:
        if self._pos < len(self._buffer):
            value = self._buffer[self._pos]
            self._pos += 1
            return value
        return self.read(1)[0]

    def readline(self, limit: int) -> bytes:
        """Bytes up to and including the next newline; raises Truncated at the end of input."""
        while True:
            index = self._buffer.find(b"\n", self._pos)
            if index >= 0:
                line = self._buffer[self._pos:index + 1]
                if len(line) > limit:
                    raise LineTooLong(limit)
                self._pos = index + 1
                return line
            pending = len(self._buffer) - self._pos
            if pending > limit:
                raise LineTooLong(limit)
            if not self._fill(pending + 1):
                raise Truncated(f"line not terminated at offset {self.tell()}")

    def skip(self, n: int) -> None:
        """Advance over n bytes without keeping them."""
        if n < 0:
            raise Truncated("negative length")
        buffered = len(self._buffer) - self._pos
        if n <= buffered:
            self._pos += n
            return
        if self._end is not None and self.tell() + n > self._end:
            raise Truncated(f"argument of {n} bytes runs past the end of input")
        rest = n - buffered
        self._offset += len(self._buffer)
        self._buffer = b""
        self._pos = 0
        if self._seekable:
            current = self._stream.tell()
            size = self._stream.seek(0, io.SEEK_END)
            if current + rest > size:
                self._offset += size - current
                raise Truncated(f"argument of {n} bytes runs past the end of input")
            self._stream.seek(current + rest)
            self._offset += rest
        else:
            while rest:
                data = self._stream.read(min(CHUNK, rest))
                if not data:
                    raise Truncated(f"argument of {n} bytes runs past the end of input")
                rest -= len(data)
                self._offset += len(data)
        self.bytes_skipped += n

    def region(self, offset: int, length: int) -> "ByteReader | None":
        """A reader over an earlier region of the same stream (only for seekable streams)."""
        if not self._seekable:
            return None
        return ByteReader(Slice(self._stream, offset, length), start=offset, end=offset + length)


class LineTooLong(Exception):
    def __init__(self, limit: int):
        self.limit = limit
        super().__init__(f"text argument longer than {limit} bytes")


def _is_seekable(stream) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, OSError, ValueError):
        return False
