"""Compressed streams (gzip, bz2, xz, lzma, zlib, lz4), tar and 7z archives.

Nothing is extracted to disk and nothing is decompressed whole: compressed streams and tar
members are read as bounded streams in order; 7z members are checked against their declared
sizes before any is decompressed. Every member goes back through `analyse`.
"""
from __future__ import annotations

import io
import tarfile
import tempfile
from typing import BinaryIO

from ..limits import LimitExceeded
from .base import ScanContext, join_member, peek_stream
from .decompress import CODECS, DecompressingStream

GZIP_NAME_MAX = 200
SPOOL_IN_MEMORY = 64 * 1024 * 1024  # larger 7z inputs and members spill to an anonymous temp file
COPY_CHUNK = 1024 * 1024
TAR_EXTENDED_HEADER_MAX = 1024 * 1024
EXTENDED_HEADER_TYPES = {tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE,
                         tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE}


def _compressed_handler(codec: str):
    def handle(stream: BinaryIO, ctx: ScanContext, member: str | None, depth: int) -> str:
        from . import analyse

        head, stream = peek_stream(stream, 1024)
        child_name = (gzip_inner_name(head) if codec == "gzip" else None) or f"<{codec}>"
        reader = DecompressingStream(stream, codec, ctx.limits, ctx.deadline)
        analyse(reader, ctx, join_member(member, child_name), name=child_name, depth=depth + 1)
        reader.drain()
        if reader.error:
            ctx.add_problem(member, reader.error)
        return codec

    handle.__name__ = f"handle_{codec}"
    return handle


def gzip_inner_name(head: bytes) -> str | None:
    """The original file name a gzip header may carry (FNAME), reduced to a safe base name."""
    if len(head) < 10 or head[:2] != b"\x1f\x8b":
        return None
    flags = head[3]
    position = 10
    if flags & 0x04:  # FEXTRA
        if len(head) < position + 2:
            return None
        position += 2 + int.from_bytes(head[position:position + 2], "little")
    if not flags & 0x08:  # FNAME
        return None
    end = head.find(b"\x00", position)
    if end < 0:
        return None
    raw = head[position:end].decode("latin-1")
    base = raw.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(ch for ch in base if ch.isprintable() and ch != ":")[:GZIP_NAME_MAX]
    return cleaned if cleaned.strip(". ") else None


def handle_tar(stream: BinaryIO, ctx: ScanContext, member: str | None, depth: int) -> str:
    source = ForwardOnly(stream)
    try:
        archive = tarfile.open(fileobj=source, mode="r|", tarinfo=_BoundedTarInfo)
        for info in archive:
            ctx.count_member(member)
            _read_tar_entry(archive, info, ctx, member, depth)
    except (tarfile.TarError, EOFError, OSError) as exc:
        ctx.add_problem(member, f"tar archive unreadable: {exc}")
    if source.error:
        ctx.add_problem(member, f"tar data unreadable: {source.error}")
    return "tar"


def _read_tar_entry(archive: tarfile.TarFile, info: tarfile.TarInfo, ctx: ScanContext,
                    member: str | None, depth: int) -> None:
    from . import analyse

    name = join_member(member, info.name)
    if info.isdir():
        return
    if not info.isreg():
        kind, target = _tar_kind(info)
        ctx.record_member(name, kind, analysed=False, note=f"{kind}{target}: holds no data to analyse")
        return
    if info.size > ctx.limits.max_member_size:
        ctx.limit_hit(name, LimitExceeded("max_member_size", f"tar member of {info.size} bytes"))
        ctx.record_member(name, "tar member", analysed=False)
        return
    data = ForwardOnly(archive.extractfile(info))
    analyse(data, ctx, name, name=info.name, depth=depth + 1)
    if data.error:
        ctx.add_problem(member, f"member {info.name!r} unreadable: {data.error}")


def _tar_kind(info: tarfile.TarInfo) -> tuple[str, str]:
    if info.issym():
        return "symlink", f" to {info.linkname!r}"
    if info.islnk():
        return "hard link", f" to {info.linkname!r}"
    if info.ischr() or info.isblk():
        return "device", ""
    if info.isfifo():
        return "fifo", ""
    return "special entry", ""


class _BoundedTarInfo(tarfile.TarInfo):
    """tarfile reads a long-name or pax header whole into memory: refuse one of hostile size."""

    def _proc_member(self, tarfile_):
        if self.type in EXTENDED_HEADER_TYPES and self.size > TAR_EXTENDED_HEADER_MAX:
            raise LimitExceeded("tar_extended_header", f"extended tar header of {self.size} bytes",
                                hostile=True)
        return super()._proc_member(tarfile_)


class ForwardOnly(io.RawIOBase):
    """Read-only, non-seekable view of a stream; read errors end the data and are kept."""

    def __init__(self, stream: BinaryIO):
        self._stream = stream
        self.error: str | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, n: int = -1) -> bytes:
        if self.error is not None:
            return b""
        try:
            return self._stream.read(n)
        except (tarfile.TarError, EOFError, OSError) as exc:
            self.error = str(exc) or type(exc).__name__
            return b""

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def handle_7z(stream: BinaryIO, ctx: ScanContext, member: str | None, depth: int) -> str:
    import py7zr

    source, size = _seekable_copy(stream, ctx)
    try:
        archive = py7zr.SevenZipFile(source, mode="r")
    except py7zr.PasswordRequired:
        ctx.add_problem(member, "encrypted: 7z headers need a password")
        return "7z"
    except LimitExceeded:
        raise
    except Exception as exc:  # a third-party parser on hostile input: any failure is "unreadable"
        ctx.add_problem(member, f"7z archive unreadable: {_describe(exc)}")
        return "7z"
    with archive:
        if archive.needs_password():
            ctx.add_problem(member, "encrypted: 7z members need a password")
            return "7z"
        targets = _sevenzip_targets(archive, ctx, member)
        _check_sevenzip_ratio(targets, size, ctx)
        if not targets:
            return "7z"
        collector = _SevenZipCollector(ctx, member, depth)
        try:
            archive.extract(targets=[entry.filename for entry in targets], factory=collector)
        except LimitExceeded:
            raise
        except Exception as exc:
            ctx.add_problem(member, f"7z archive broken: {_describe(exc)}")
        else:
            collector.finish_unclosed()
        missing = len(targets) - collector.analysed
        if missing > 0:
            ctx.add_problem(member, f"{missing} of {len(targets)} 7z members could not be read")
    return "7z"


def _sevenzip_targets(archive, ctx: ScanContext, member: str | None) -> list:
    """Regular members within the limits, judged from their declared sizes alone."""
    targets = []
    for entry in archive.files:
        ctx.count_member(member)
        name = join_member(member, entry.filename)
        if entry.is_directory:
            continue
        if entry.is_symlink or entry.is_junction or entry.is_socket:
            ctx.record_member(name, "link", analysed=False, note="link or special entry: holds no data to analyse")
            continue
        if entry.uncompressed > ctx.limits.max_member_size:
            ctx.limit_hit(name, LimitExceeded("max_member_size", f"7z member declares {entry.uncompressed} bytes"))
            ctx.record_member(name, "7z member", analysed=False)
            continue
        targets.append(entry)
    return targets


def _check_sevenzip_ratio(targets: list, packed: int, ctx: ScanContext) -> None:
    declared = sum(entry.uncompressed for entry in targets)
    if declared > ctx.limits.ratio_floor and declared > ctx.limits.max_ratio * max(packed, 1):
        raise LimitExceeded("max_ratio", f"7z members declare {declared} bytes in a {packed} byte archive",
                            hostile=True)


def _seekable_copy(stream: BinaryIO, ctx: ScanContext) -> tuple[BinaryIO, int]:
    """py7zr needs to seek: a stream that cannot is copied, within the member size bound."""
    if _is_seekable(stream):
        start = stream.tell()
        size = stream.seek(0, io.SEEK_END) - start
        stream.seek(start)
        return stream, size
    copy = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
    size = 0
    while True:
        chunk = stream.read(COPY_CHUNK)
        if not chunk:
            break
        size += len(chunk)
        if size > ctx.limits.max_member_size:
            raise LimitExceeded("max_member_size", f"7z archive larger than {ctx.limits.max_member_size} bytes")
        copy.write(chunk)
    copy.seek(0)
    return copy, size


def _is_seekable(stream) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _describe(exc: Exception) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _SevenZipCollector:
    """py7zr writer factory: each member lands in a bounded buffer and is analysed once complete.

    py7zr (1.1 and later) closes a member's writer only after its CRC checked out, so a damaged
    member is never analysed as if whole; older versions never close them, so what is still
    open after a successful extraction is analysed then.
    """

    def __init__(self, ctx: ScanContext, member: str | None, depth: int):
        self.ctx = ctx
        self.member = member
        self.depth = depth
        self.writers: list[_SevenZipMember] = []
        self.analysed = 0

    def create(self, filename: str) -> "_SevenZipMember":
        writer = _SevenZipMember(self, filename)
        self.writers.append(writer)
        return writer

    def finished(self, filename: str, buffer) -> None:
        from . import analyse

        self.analysed += 1
        buffer.seek(0)
        analyse(buffer, self.ctx, join_member(self.member, filename), name=filename, depth=self.depth + 1)

    def finish_unclosed(self) -> None:
        for writer in self.writers:
            if not writer.closed:
                writer.close()


class _SevenZipMember:
    def __init__(self, collector: _SevenZipCollector, filename: str):
        self._collector = collector
        self._filename = filename
        self._buffer = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)
        self._size = 0
        self.closed = False

    def write(self, data) -> int:
        self._size += len(data)
        if self._size > self._collector.ctx.limits.max_member_size:
            raise LimitExceeded("max_member_size", f"7z member {self._filename!r} grows past its bound")
        return self._buffer.write(data)

    def read(self, size=None) -> bytes:
        return self._buffer.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._buffer.seek(offset, whence)

    def flush(self) -> None:
        self._buffer.flush()

    def size(self) -> int:
        return self._size

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self._collector.finished(self._filename, self._buffer)
        finally:
            self._buffer.close()


def handle_joblib_zf(stream: BinaryIO, ctx: ScanContext, member: str | None, depth: int) -> str:
    """joblib's pre-0.10 compressed file: a short text header, then zlib (sniff.joblib_zf_offset).
    Its content is a pickle, or, in a file named `*.npy.z`, an array's raw data that joblib
    hands to numpy as bytes (no code can run): that is read through, for the size limits, and
    reported as data once sniffing finds no other format in it."""
    from . import analyse
    from .sniff import SNIFF_BYTES, joblib_zf_offset, sniff

    head, stream = peek_stream(stream, 64)
    offset = joblib_zf_offset(head)
    if offset is None or len(stream.read(offset)) < offset:
        ctx.add_problem(member, "joblib compressed file with a damaged header")
        return "joblib_zf"
    reader = DecompressingStream(stream, "zlib", ctx.limits, ctx.deadline)
    child = join_member(member, "<joblib-zlib>")
    inner_head, inner = peek_stream(reader, SNIFF_BYTES)
    if (member or ctx.file).endswith(".npy.z") and sniff(inner_head, "<joblib-zlib>") == "unknown":
        ctx.record_member(child, "array_data", note="joblib array data: holds no code")
    else:
        analyse(inner, ctx, child, name="<joblib-zlib>", depth=depth + 1)
    reader.drain()
    if reader.error:
        ctx.add_problem(member, reader.error)
    return "joblib_zf"


HANDLERS = {codec: _compressed_handler(codec) for codec in CODECS}
HANDLERS["joblib_zf"] = handle_joblib_zf
HANDLERS["tar"] = handle_tar
HANDLERS["7z"] = handle_7z
