"""Streaming decompression with bounds: a forward-only reader that never holds a whole member.

The reader hands out bounded chunks, counts what it produced against `max_member_size` and
the output/input ratio against `max_ratio`, and turns corrupt or truncated input into an end
of stream plus a recorded `error` (the caller reports it), so that whatever was read before
the damage is still judged.
"""
from __future__ import annotations

import bz2
import io
import lzma
import zlib
from typing import BinaryIO, Callable

from ..limits import MIB, Deadline, LimitExceeded, Limits

INPUT_CHUNK = 16 * 1024  # small, so the ratio is measured against input actually consumed
OUTPUT_CHUNK = 1 * MIB
LZMA_MEMLIMIT = 512 * MIB  # an .lzma header may declare a 4 GiB dictionary

CODEC_ERRORS = (zlib.error, OSError, lzma.LZMAError, EOFError, RuntimeError, ValueError)


class _Zlib:
    """zlib's decompressobj behind the interface bz2, lzma and lz4 decompressors share."""

    def __init__(self, wbits: int):
        self._inflate = zlib.decompressobj(wbits)

    def decompress(self, data: bytes, max_length: int) -> bytes:
        return self._inflate.decompress(self._inflate.unconsumed_tail + data, max_length)

    @property
    def needs_input(self) -> bool:
        return not self._inflate.unconsumed_tail

    @property
    def eof(self) -> bool:
        return self._inflate.eof

    @property
    def unused_data(self) -> bytes:
        return self._inflate.unused_data


def _lz4():
    import lz4.frame

    return lz4.frame.LZ4FrameDecompressor()


CODECS: dict[str, Callable[[], object]] = {
    "gzip": lambda: _Zlib(16 + zlib.MAX_WBITS),
    "zlib": lambda: _Zlib(zlib.MAX_WBITS),
    "bz2": bz2.BZ2Decompressor,
    "xz": lambda: lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=LZMA_MEMLIMIT),
    "lzma": lambda: lzma.LZMADecompressor(format=lzma.FORMAT_ALONE, memlimit=LZMA_MEMLIMIT),
    "lz4": _lz4,
}


class DecompressingStream(io.RawIOBase):
    """Decompressed bytes of `raw`, read on demand; concatenated streams are read in turn."""

    def __init__(self, raw: BinaryIO, codec: str, limits: Limits, deadline: Deadline | None = None):
        self._raw = raw
        self._codec_name = codec
        self._new_codec = CODECS[codec]
        self._codec = self._new_codec()
        self._limits = limits
        self._deadline = deadline or Deadline(None)
        self._finished = False
        self._streams = 1
        self._stream_started = False
        self._pending = b""
        self.bytes_in = 0
        self.bytes_out = 0
        self.error: str | None = None  # why the data ended early, if it did
        self.failure: LimitExceeded | None = None  # the bound it stopped at, if any

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, n: int = -1) -> bytes:
        if self.failure is not None:
            raise self.failure
        if n is None or n < 0:
            return self._read_all()
        if n == 0 or self._finished:
            return b""
        data = self._produce(min(n, OUTPUT_CHUNK))
        self._account(len(data))
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        """Decompress what nobody read, to check the rest against the bounds and for damage."""
        if self.failure is not None:
            return
        while self.read(OUTPUT_CHUNK):
            pass

    def _read_all(self) -> bytes:
        parts = []
        while True:
            data = self.read(OUTPUT_CHUNK)
            if not data:
                return b"".join(parts)
            parts.append(data)

    def _account(self, produced: int) -> None:
        self.bytes_out += produced
        limits = self._limits
        ratio = self.bytes_out / max(self.bytes_in, 1)
        if self.bytes_out > limits.ratio_floor and ratio > limits.max_ratio:
            self._fail(LimitExceeded(
                "max_ratio", f"{self._codec_name} data expands more than {limits.max_ratio} times",
                hostile=True))
        if self.bytes_out > limits.max_member_size:
            self._fail(LimitExceeded(
                "max_member_size", f"{self._codec_name} data decompresses to more than "
                f"{limits.max_member_size} bytes"))

    def _fail(self, exc: LimitExceeded) -> None:
        self.failure = exc
        self._finished = True
        raise exc

    def _read_raw(self) -> bytes:
        self._deadline.check()
        data = self._raw.read(INPUT_CHUNK)
        self.bytes_in += len(data)
        return data

    def _produce(self, n: int) -> bytes:
        stalled = 0
        while not self._finished:
            codec = self._codec
            if codec.eof:
                self._next_stream()
                continue
            data, self._pending = self._pending, b""
            if not data and codec.needs_input:
                data = self._read_raw()
                if not data:
                    return self._flush_at_end_of_input(n)
            try:
                out = codec.decompress(data, n)
            except CODEC_ERRORS as exc:
                self._stop(f"{self._codec_name} data is corrupt: {exc}")
                return b""
            if out:
                self._stream_started = True
                return out
            stalled = 0 if data else stalled + 1
            if stalled > 2:
                self._stop(f"{self._codec_name} decoder made no progress")
        return b""

    def _flush_at_end_of_input(self, n: int) -> bytes:
        try:
            out = self._codec.decompress(b"", n)
        except CODEC_ERRORS as exc:
            self._stop(f"{self._codec_name} data is corrupt: {exc}")
            return b""
        if out:
            self._stream_started = True
            return out
        if self._codec.eof:
            self._finished = True
        else:
            self._stop(f"{self._codec_name} data is truncated after {self.bytes_in} compressed bytes")
        return b""

    def _next_stream(self) -> None:
        """Loaders go on to a concatenated stream; bytes after the last one that start none are ignored."""
        leftover = self._codec.unused_data or self._read_raw()
        if not leftover:
            self._finished = True
            return
        self._codec = self._new_codec()
        self._pending = leftover
        self._streams += 1
        self._stream_started = False

    def _stop(self, reason: str) -> None:
        self._finished = True
        if self._streams > 1 and not self._stream_started:
            return  # trailing bytes, not another stream: no loader reads them
        self.error = reason
