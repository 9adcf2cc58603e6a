"""A zip member's bytes as a stream: stored data in place, compressed data decompressed as read.

Nothing is held whole: decompression stops at what the reader asks for, and the size and ratio
limits are checked on the bytes actually produced, so a bomb is stopped as it goes off.
"""
from __future__ import annotations

import bz2
import io
import lzma
import struct
import zlib
from typing import BinaryIO

from ..limits import MIB, LimitExceeded, Limits
from ..streams import Slice
from .zipreader import Entry

STORED, DEFLATED, BZIP2, LZMA = 0, 8, 12, 14
_INPUT_CHUNK = 64 * 1024
_OUTPUT_CHUNK = 1 * MIB
_DECOMPRESS_ERRORS = (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError)


class UnsupportedMethod(Exception):
    pass


def open_member(stream: BinaryIO, entry: Entry, limits: Limits) -> BinaryIO:
    """The member's bytes as a stream, decompressed on demand; stored members stay seekable."""
    if entry.compressed_size is None:
        length = stream.seek(0, 2) - entry.data_offset
    else:
        length = entry.compressed_size
    raw = Slice(stream, entry.data_offset, length)
    if entry.method == STORED:
        return raw
    factory = _DECOMPRESSORS.get(entry.method)
    if factory is None:
        raise UnsupportedMethod(f"compression method {entry.method} is not supported")
    return Decompressing(raw, factory(), limits.max_member_size, limits.max_ratio, limits.ratio_floor)


class Decompressing(io.RawIOBase):
    """Decompresses as it is read, never more than asked; a broken stream just ends (see error)."""

    def __init__(self, source: BinaryIO, decompressor, max_size: int, max_ratio: int, ratio_floor: int):
        self._source = source
        self._decompressor = decompressor
        self._max_size = max_size
        self._max_ratio = max_ratio
        self._ratio_floor = ratio_floor
        self._done = False
        self.consumed = 0
        self.produced = 0
        self.error: str | None = None

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            return b"".join(iter(lambda: self.read(_OUTPUT_CHUNK), b""))
        n = min(n, _OUTPUT_CHUNK)
        while not self._done and n > 0:
            out = self._step(n)
            if out:
                self._account(len(out))
                return out
        return b""

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _step(self, n: int) -> bytes:
        decompressor = self._decompressor
        if decompressor.eof:
            self._done = True
            return b""
        data = b""
        if decompressor.needs_input:
            data = self._source.read(_INPUT_CHUNK)
            if not data:
                self._done = True
                self.error = "compressed data ends early"
                return b""
            self.consumed += len(data)
        try:
            return decompressor.decompress(data, n)
        except _DECOMPRESS_ERRORS as exc:
            self._done = True
            self.error = f"compressed data broken: {exc}"
            return b""

    def _account(self, size: int) -> None:
        self.produced += size
        if self.produced > self._max_size:
            self._done = True
            raise LimitExceeded("max_member_size", f"member decompresses past {self._max_size} bytes")
        if self.produced > self._ratio_floor and self.produced > self._max_ratio * max(self.consumed, 1):
            self._done = True
            detail = f"member decompresses more than {self._max_ratio} times its size"
            raise LimitExceeded("max_ratio", detail, hostile=True)


class _Inflate:
    """zlib's raw deflate with the needs_input/eof interface of bz2 and lzma decompressors."""

    def __init__(self):
        self._z = zlib.decompressobj(-15)

    @property
    def eof(self) -> bool:
        return self._z.eof

    @property
    def needs_input(self) -> bool:
        return not self._z.unconsumed_tail

    def decompress(self, data: bytes, max_length: int) -> bytes:
        return self._z.decompress(self._z.unconsumed_tail + data, max_length)


class _ZipLzma:
    """Zip's LZMA: version (2 bytes), properties size (2), properties, then raw LZMA1 data."""

    def __init__(self):
        self._header = b""
        self._lzma: lzma.LZMADecompressor | None = None

    @property
    def eof(self) -> bool:
        return self._lzma is not None and self._lzma.eof

    @property
    def needs_input(self) -> bool:
        return self._lzma is None or self._lzma.needs_input

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if self._lzma is None:
            self._header += data
            if len(self._header) < 4:
                return b""
            props_size = struct.unpack_from("<H", self._header, 2)[0]
            if len(self._header) < 4 + props_size:
                return b""
            props = self._header[4:4 + props_size]
            data = self._header[4 + props_size:]
            self._lzma = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[_lzma1_filter(props)])
        return self._lzma.decompress(data, max_length)


def _lzma1_filter(props: bytes) -> dict:
    if len(props) < 5:
        raise lzma.LZMAError("LZMA properties too short")
    pb, rest = divmod(props[0], 45)
    lp, lc = divmod(rest, 9)
    return {"id": lzma.FILTER_LZMA1, "dict_size": int.from_bytes(props[1:5], "little"),
            "lc": lc, "lp": lp, "pb": pb}


_DECOMPRESSORS = {DEFLATED: _Inflate, BZIP2: bz2.BZ2Decompressor, LZMA: _ZipLzma}
