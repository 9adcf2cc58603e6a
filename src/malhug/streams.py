"""Views of part of a shared seekable stream."""
from __future__ import annotations

import io
from typing import BinaryIO


def read_at(stream: BinaryIO, offset: int, size: int) -> bytes:
    stream.seek(offset)
    return stream.read(size) if size > 0 else b""


def origin(stream: BinaryIO, offset: int = 0) -> tuple[BinaryIO, int]:
    """The stream that slices of slices are cut from, and where `offset` of `stream` lies in it."""
    while isinstance(stream, Slice):
        offset += stream._offset
        stream = stream._stream
    return stream, offset


class Slice(io.RawIOBase):
    """[offset, offset + length) of a shared seekable stream, seen from position 0."""

    def __init__(self, stream: BinaryIO, offset: int, length: int):
        self._stream = stream
        self._offset = offset
        self._length = max(0, length)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = min(max(base + pos, 0), self._length)
        return self._pos

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self._length - self._pos
        n = min(n, self._length - self._pos)
        if n <= 0:
            return b""
        data = read_at(self._stream, self._offset + self._pos, n)
        self._pos += len(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
