"""A remote file read through HTTP Range requests: seekable, read-only, only what is asked for.

Blocks are fetched on demand and kept in a small bounded cache; sequential reads fetch growing
runs of blocks in one request. A server that ignores Range (it answers 200 with the whole body)
is read as a forward stream: bytes are taken from the body only up to what is needed and the
response stays open for later reads further on. What such a stream has passed is kept in an
anonymous temporary file (no name, removed when closed) when the disk has room, so going back
costs no second download; without room, a read that goes back starts the body again. Every
byte taken from the network is counted, so a repository can tell how much was downloaded.
"""
from __future__ import annotations

import io
import logging
import os
import re
import shutil
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

KIB = 1024
MIB = 1024 * KIB

BLOCK_SIZE = 64 * KIB  # one random read (a zip local header, a safetensors header) costs this much
MAX_RUN_BLOCKS = 64  # sequential reads grow each request up to this many blocks (4 MiB)
CACHE_BYTES = 16 * MIB  # blocks kept per open file
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 30.0  # seconds without a byte from the server
ATTEMPTS = 2  # a request that fails on the network is tried once more, then the read fails
SPILL_MAX_BYTES = 64 * 1024 * MIB  # largest body kept on disk when a server ignores Range
SPILL_HEADROOM = 512 * MIB  # free space left on the temporary disk after keeping a body

LOGGER = logging.getLogger("malhug.sources")
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class RemoteReadError(OSError):
    """A remote read that failed: network error, time-out, an HTTP error, a short body."""


@dataclass
class FetchStats:
    """What the remote files of one repository downloaded, and how the server answered Range."""

    bytes: int = 0
    requests: int = 0
    ranges_honoured: int = 0  # 206 answers
    ranges_ignored: int = 0  # 200 answers with the whole body to a Range request
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, count: int) -> None:
        with self._lock:
            self.bytes += count

    def merge(self, counts: dict) -> None:
        """Add what another process fetched for the same repository (an isolated worker)."""
        with self._lock:
            self.bytes += int(counts.get("bytes", 0))
            self.requests += int(counts.get("requests", 0))
            self.ranges_honoured += int(counts.get("ranges_honoured", 0))
            self.ranges_ignored += int(counts.get("ranges_ignored", 0))

    def answered(self, partial: bool, url: str = "") -> None:
        with self._lock:
            self.requests += 1
            if partial:
                self.ranges_honoured += 1
                return
            self.ranges_ignored += 1
            first = self.ranges_ignored == 1
        if first:
            LOGGER.warning("%s ignores HTTP Range requests: files are read from their start, "
                           "so reading the end of one downloads all of it", _origin(url))


class _Body:
    """An open response body read forward from `position` (an absolute offset in the file)."""

    def __init__(self, response, position: int, end: int):
        self.response = response
        self.chunks = response.iter_raw()
        self.position = position
        self.end = end  # offset after the last byte this body carries
        self.pending = b""

    def close(self) -> None:
        try:
            self.response.close()
        except Exception:  # closing a broken connection must not hide the first error
            pass


class RemoteFile(io.RawIOBase):
    def __init__(self, url: str, size: int, *, session=None, headers: dict | None = None,
                 stats: FetchStats | None = None, block_size: int = BLOCK_SIZE,
                 cache_bytes: int = CACHE_BYTES, connect_timeout: float = CONNECT_TIMEOUT,
                 read_timeout: float = READ_TIMEOUT, name: str | None = None):
        super().__init__()
        if session is None:
            from huggingface_hub.utils import get_session

            session = get_session()
        self.url = url
        self.name = name or url
        self.size = int(size)
        self.stats = stats or FetchStats()
        self.fetched = 0
        self._session = session
        self._headers = dict(headers or {})
        self._headers["Accept-Encoding"] = "identity"  # Range offsets are offsets of the file
        self._block = max(1, block_size)
        self._max_blocks = max(1, cache_bytes // self._block)
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._pos = 0
        self._body: _Body | None = None
        self._last_block = -2
        self._run = 1
        self._timeout = _timeout(connect_timeout, read_timeout)
        self._redirected: str | None = None  # where the hub sent the last request
        self._spill = None  # the temporary file holding [0, self._spilled) of a whole body
        self._spilled = 0

    # -- io interface --------------------------------------------------------------------------
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}.get(whence)
        if base is None:
            raise ValueError(f"invalid whence {whence}")
        position = base + offset
        if position < 0:
            raise ValueError("negative seek position")
        self._pos = position
        return position

    def read(self, n: int = -1) -> bytes:
        self._check_open()
        if n is None or n < 0:
            n = self.size - self._pos
        n = min(n, self.size - self._pos)
        if n <= 0:
            return b""
        data = self._read_range(self._pos, self._pos + n)
        self._pos += len(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._drop_body()
            self._cache.clear()
            if self._spill is not None:
                self._spill.close()
                self._spill = None
        super().close()

    # -- blocks --------------------------------------------------------------------------------
    def _read_range(self, start: int, end: int) -> bytes:
        if self._spill is not None:
            return self._read_spilled(start, end)
        first, last = start // self._block, (end - 1) // self._block
        parts = []
        index = first
        while index <= last:
            block = self._cache.get(index)
            if block is None:
                self._fetch_from(index, last)
                if self._spill is not None:
                    return self._read_spilled(start, end)
                block = self._cache.get(index)
                if block is None:
                    raise RemoteReadError(f"{self.name}: block at offset {index * self._block} "
                                          "was not received")
            else:
                self._cache.move_to_end(index)
            parts.append(block)
            index += 1
        data = b"".join(parts)
        offset = start - first * self._block
        return data[offset: offset + (end - start)]

    def _fetch_from(self, first: int, last: int) -> None:
        """Fetch block `first` and, in the same request, the missing blocks up to `last`."""
        if self.stats.ranges_ignored and not self.stats.ranges_honoured:
            self._run = 1  # a whole-body stream costs nothing more per request: no read-ahead
        elif first == self._last_block + 1:
            self._run = min(self._run * 2, MAX_RUN_BLOCKS, self._max_blocks)
        else:
            self._run = 1
        stop = max(last, first + self._run - 1)
        stop = min(stop, (self.size - 1) // self._block, first + self._max_blocks - 1)
        index = first + 1
        while index <= stop and index not in self._cache:
            index += 1
        stop = index - 1
        start, end = first * self._block, min((stop + 1) * self._block, self.size)
        error = None
        for _ in range(ATTEMPTS):
            try:
                self._receive(start, end)
                self._last_block = stop
                return
            except RemoteReadError as exc:
                error = exc
                self._drop_body()
        raise error

    def _receive(self, start: int, end: int) -> None:
        body = self._body
        if body is None or body.position > start or body.end < end:
            self._drop_body()
            body = self._body = self._request(start, end)
            whole = body.position == 0 and body.end == self.size
            if whole and self.size > self._max_blocks * self._block and self._start_spill():
                return
        while body.position < end:
            self._consume(body, end)
        if body.position >= body.end:
            self._drop_body()

    def _consume(self, body: _Body, end: int) -> None:
        """Read one block's worth of body into the cache (blocks passed on the way too)."""
        block_start = (body.position // self._block) * self._block
        block_end = min(block_start + self._block, self.size)
        need = block_end - body.position
        data = body.pending
        body.pending = b""
        while len(data) < need:
            chunk = self._next_chunk(body)
            if not chunk:
                raise RemoteReadError(f"{self.name}: connection closed at offset "
                                      f"{body.position + len(data)} of {self.size}")
            data += chunk
        body.pending = data[need:]
        if body.position == block_start:
            self._store(block_start // self._block, data[:need])
        body.position = block_end
        if body.position >= body.end and body.pending:
            body.pending = b""

    # -- whole bodies kept on disk --------------------------------------------------------------
    def _start_spill(self) -> bool:
        if self.size > SPILL_MAX_BYTES:
            return False
        try:
            folder = tempfile.gettempdir()
            if shutil.disk_usage(folder).free < self.size + SPILL_HEADROOM:
                return False
            self._spill = tempfile.TemporaryFile(prefix="malhug-remote-", dir=folder)
        except OSError:
            return False
        self._spilled = 0
        self._cache.clear()
        return True

    def _read_spilled(self, start: int, end: int) -> bytes:
        error = None
        for _ in range(ATTEMPTS):
            try:
                self._spill_until(end)
                error = None
                break
            except RemoteReadError as exc:
                error = exc
                self._drop_body()
        if error is not None:
            raise error
        try:
            return os.pread(self._spill.fileno(), end - start, start)
        except OSError as exc:
            raise RemoteReadError(f"{self.name}: cannot read the temporary copy: {exc}") from exc

    def _spill_until(self, end: int) -> None:
        if self._spilled >= end:
            return
        body = self._body
        if body is None or body.position > self._spilled:
            self._drop_body()
            body = self._body = self._request(self._spilled, self.size)
        while self._spilled < end:
            data = body.pending or self._next_chunk(body)
            body.pending = b""
            if not data:
                raise RemoteReadError(f"{self.name}: connection closed at offset "
                                      f"{body.position} of {self.size}")
            skip = max(0, self._spilled - body.position)
            body.position += len(data)
            if skip < len(data):
                try:
                    os.pwrite(self._spill.fileno(), data[skip:], self._spilled)
                except OSError as exc:
                    raise RemoteReadError(f"{self.name}: cannot keep the body on disk: {exc}") from exc
                self._spilled += len(data) - skip
        if body.position >= body.end:
            self._drop_body()

    def _next_chunk(self, body: _Body) -> bytes:
        import httpx2

        try:
            chunk = next(body.chunks, b"")
        except httpx2.TimeoutException as exc:
            raise RemoteReadError(f"{self.name}: timed out while reading ({exc})") from exc
        except (httpx2.HTTPError, httpx2.StreamError) as exc:
            raise RemoteReadError(f"{self.name}: network error while reading: {exc}") from exc
        except OSError as exc:
            raise RemoteReadError(f"{self.name}: network error while reading: {exc}") from exc
        if chunk:
            self.fetched += len(chunk)
            self.stats.add(len(chunk))
        return chunk

    def _store(self, index: int, data: bytes) -> None:
        self._cache[index] = data
        self._cache.move_to_end(index)
        while len(self._cache) > self._max_blocks:
            self._cache.popitem(last=False)

    # -- requests ------------------------------------------------------------------------------
    def _request(self, start: int, end: int) -> _Body:
        import httpx2

        url = self._redirected or self.url
        headers = dict(self._headers)
        headers["Range"] = f"bytes={start}-{end - 1}"
        if _origin(url) != _origin(self.url):
            headers.pop("authorization", None)  # the token is for the hub, not where it sends us
            headers.pop("Authorization", None)
        try:
            request = self._session.build_request("GET", url, headers=headers,
                                                  timeout=self._timeout)
            response = self._session.send(request, stream=True, follow_redirects=True)
        except httpx2.TimeoutException as exc:
            raise RemoteReadError(f"{self.name}: timed out ({exc})") from exc
        except (httpx2.HTTPError, OSError) as exc:
            raise RemoteReadError(f"{self.name}: cannot connect: {exc}") from exc
        status = response.status_code
        if status in (200, 206) and response.history:
            self._redirected = str(response.url)  # later ranges skip the redirect
        if status == 206:
            self.stats.answered(partial=True)
            return self._partial_body(response, start)
        if status == 200:
            self.stats.answered(partial=False, url=str(response.url))
            return _Body(response, 0, self.size)
        response.close()
        if self._redirected is not None:
            self._redirected = None  # an expired signed address: the next attempt asks the hub
        raise RemoteReadError(f"{self.name}: HTTP {status} {_reason(response)}".rstrip())

    def _partial_body(self, response, start: int) -> _Body:
        match = _CONTENT_RANGE.match(response.headers.get("content-range", ""))
        if match is None or int(match.group(1)) != start:
            response.close()
            raise RemoteReadError(f"{self.name}: server answered another range than asked "
                                  f"({response.headers.get('content-range', 'none')})")
        return _Body(response, start, min(int(match.group(2)) + 1, self.size))

    def _drop_body(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")


def _timeout(connect: float, read: float):
    import httpx2

    return httpx2.Timeout(connect=connect, read=read, write=read, pool=connect)


def _origin(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")


def _reason(response) -> str:
    try:
        return response.reason_phrase or ""
    except Exception:
        return ""
