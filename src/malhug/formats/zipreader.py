"""A tolerant zip reader: lists members the way lenient loaders find them, reads none whole.

PyTorch's loader (miniz) trusts the central directory for sizes and methods, the local header
only for where the data starts, and checks neither CRCs nor most flag bits. Payloads hide in
exactly those gaps, so this reader ignores them too. Members that only a local header names
(no central directory entry, or a central directory that is missing or broken) are found by
scanning the bytes no listed member covers, so tensor data is never scanned.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from typing import BinaryIO

from ..limits import Deadline, LimitExceeded
from ..streams import read_at

LOCAL_SIG = b"PK\x03\x04"
CENTRAL_SIG = b"PK\x01\x02"
DESCRIPTOR_SIG = b"PK\x07\x08"
EOCD_SIG = b"PK\x05\x06"
ZIP64_EOCD_SIG = b"PK\x06\x06"
ZIP64_LOCATOR_SIG = b"PK\x06\x07"

FLAG_ENCRYPTED = 0x1
FLAG_DESCRIPTOR = 0x8
FLAG_UTF8 = 0x800
ZIP64_EXTRA = 0x0001
SATURATED = 0xFFFFFFFF

_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
_EOCD = struct.Struct("<4sHHHHIIH")
_ZIP64_LOCATOR = struct.Struct("<4sIQI")
_ZIP64_EOCD = struct.Struct("<4sQHHIIQQQQ")
_MAX_COMMENT = 0xFFFF
_SCAN_CHUNK = 1 << 20
_FALLBACK = "members found from local headers"
_SIGNATURES = re.compile(rb"PK(?:\x07\x08|\x03\x04|\x01\x02|\x05\x06)")


@dataclass
class Entry:
    name: str
    header_offset: int
    compressed_size: int | None  # None: unknown (a data descriptor that could not be found)
    method: int
    flags: int
    in_central: bool = True
    data_offset: int | None = None  # None: no local header where the central directory points
    local_name: str | None = None
    size: int | None = None  # uncompressed size the central directory declares


@dataclass
class Listing:
    entries: list = field(default_factory=list)
    problems: list = field(default_factory=list)  # (reason, offset)
    has_central_directory: bool = True

    def hidden(self, entry: Entry) -> bool:
        """Only a local header names it, though a central directory lists the others."""
        return self.has_central_directory and not entry.in_central


def list_entries(stream: BinaryIO, deadline: Deadline | None = None) -> Listing:
    deadline = deadline or Deadline(None)
    size = stream.seek(0, 2)
    listing = Listing()
    directory = _find_central_directory(stream, size)
    if directory is None:
        listing.problems.append((f"no end of central directory record: {_FALLBACK}", None))
        listing.has_central_directory = False
        cd_start = size
    else:
        cd_start, cd_end = directory
        listing.entries, broken_at = _read_central_directory(stream, cd_start, cd_end, deadline)
        if broken_at is not None:
            listing.problems.append(
                (f"central directory broken at offset {broken_at}: {_FALLBACK}", broken_at))
            listing.has_central_directory = False
    for index, entry in enumerate(listing.entries):
        if index & 0x3FF == 0x3FF:
            deadline.check()
        _locate_data(stream, entry)
    covered = [(e.header_offset, e.data_offset + (e.compressed_size or 0))
               for e in listing.entries if e.data_offset is not None]
    known = {e.header_offset for e in listing.entries}
    for start, end in _gaps(covered, 0, cd_start):
        for entry in scan_local_headers(stream, start, end, deadline):
            if entry.header_offset not in known:
                listing.entries.append(entry)
    return listing


# -- central directory ------------------------------------------------------------------------
def _find_central_directory(stream: BinaryIO, size: int) -> tuple[int, int] | None:
    """(start, end) of the central directory; the last end record that points at one wins."""
    tail_start = max(0, size - _EOCD.size - _MAX_COMMENT)
    tail = read_at(stream, tail_start, size - tail_start)
    fallback = None
    index = tail.rfind(EOCD_SIG, 0, max(0, len(tail) - _EOCD.size + len(EOCD_SIG)))
    while index >= 0:
        directory = _directory_from_end_record(stream, tail, index, tail_start + index)
        if read_at(stream, directory[0], 4) == CENTRAL_SIG or directory[0] == directory[1]:
            return directory
        fallback = fallback or directory
        index = tail.rfind(EOCD_SIG, 0, index)
    return fallback


def _directory_from_end_record(stream: BinaryIO, tail: bytes, index: int,
                               eocd_offset: int) -> tuple[int, int]:
    _, _, _, _, _, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, index)
    record_start = eocd_offset
    zip64 = _read_zip64_directory(stream, eocd_offset)
    if zip64 is not None:
        cd_size, cd_offset, record_start = zip64
    cd_start = cd_offset
    implied = record_start - cd_size  # where the directory is if data was prepended to the zip
    if read_at(stream, cd_start, 4) != CENTRAL_SIG and implied >= 0:
        if read_at(stream, implied, 4) == CENTRAL_SIG:
            cd_start = implied
    cd_end = min(cd_start + cd_size, record_start) if cd_start <= record_start else cd_start
    return cd_start, cd_end


def _read_zip64_directory(stream: BinaryIO, eocd_offset: int) -> tuple[int, int, int] | None:
    locator_offset = eocd_offset - _ZIP64_LOCATOR.size
    if locator_offset < 0:
        return None
    locator = read_at(stream, locator_offset, _ZIP64_LOCATOR.size)
    if len(locator) < _ZIP64_LOCATOR.size or not locator.startswith(ZIP64_LOCATOR_SIG):
        return None
    record_offset = _ZIP64_LOCATOR.unpack(locator)[2]
    record = read_at(stream, record_offset, _ZIP64_EOCD.size)
    if len(record) < _ZIP64_EOCD.size or not record.startswith(ZIP64_EOCD_SIG):
        return None
    fields = _ZIP64_EOCD.unpack(record)
    return fields[8], fields[9], record_offset


def _read_central_directory(stream: BinaryIO, start: int, end: int,
                            deadline: Deadline) -> tuple[list, int | None]:
    entries = []
    pos = start
    stream.seek(pos)
    while pos < end:
        if len(entries) & 0x3FF == 0x3FF:
            deadline.check()
        record = stream.read(_CENTRAL.size)
        if len(record) < _CENTRAL.size or not record.startswith(CENTRAL_SIG):
            return entries, pos
        (_, _, _, flags, method, _, _, _, csize, usize, name_len, extra_len, comment_len,
         _, _, _, offset) = _CENTRAL.unpack(record)
        name = stream.read(name_len)
        extra = stream.read(extra_len)
        stream.seek(comment_len, 1)
        if len(name) < name_len or len(extra) < extra_len:
            return entries, pos
        usize, csize, offset = _apply_zip64_extra(extra, usize, csize, offset)
        entries.append(Entry(_decode_name(name, flags), offset, csize, method, flags, size=usize))
        pos += _CENTRAL.size + name_len + extra_len + comment_len
    return entries, None


def _apply_zip64_extra(extra: bytes, *values: int) -> tuple[int, ...]:
    """Replace saturated 32-bit fields (in order: size, compressed size, offset) from zip64 extra."""
    data = _extra_field(extra, ZIP64_EXTRA)
    out = list(values)
    if data is None:
        return tuple(out)
    pos = 0
    for index, value in enumerate(out):
        if value == SATURATED and pos + 8 <= len(data):
            out[index] = struct.unpack_from("<Q", data, pos)[0]
            pos += 8
    return tuple(out)


def _extra_field(extra: bytes, wanted: int) -> bytes | None:
    pos = 0
    while pos + 4 <= len(extra):
        kind, length = struct.unpack_from("<HH", extra, pos)
        if kind == wanted:
            return extra[pos + 4:pos + 4 + length]
        pos += 4 + length
    return None


def _decode_name(raw: bytes, flags: int) -> str:
    if flags & FLAG_UTF8:
        return raw.decode("utf-8", "replace")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp437")


# -- local headers ----------------------------------------------------------------------------
@dataclass
class LocalHeader:
    offset: int
    flags: int
    method: int
    compressed_size: int
    name: str
    data_offset: int

    @property
    def size_known(self) -> bool:
        return not (self.flags & FLAG_DESCRIPTOR) or self.compressed_size != 0


def read_local_header(stream: BinaryIO, offset: int) -> LocalHeader | None:
    fixed = read_at(stream, offset, _LOCAL.size)
    if len(fixed) < _LOCAL.size or not fixed.startswith(LOCAL_SIG):
        return None
    _, _, flags, method, _, _, _, csize, usize, name_len, extra_len = _LOCAL.unpack(fixed)
    variable = stream.read(name_len + extra_len)
    if len(variable) < name_len + extra_len:
        return None
    _, csize = _apply_zip64_extra(variable[name_len:], usize, csize)
    name = _decode_name(variable[:name_len], flags)
    return LocalHeader(offset, flags, method, csize, name, offset + _LOCAL.size + name_len + extra_len)


def _locate_data(stream: BinaryIO, entry: Entry) -> None:
    header = read_local_header(stream, entry.header_offset)
    if header is not None:
        entry.data_offset = header.data_offset
        entry.local_name = header.name


def scan_local_headers(stream: BinaryIO, start: int, end: int, deadline: Deadline):
    """Members whose local headers lie in [start, end), hopping over the data of each found."""
    pos = start
    descriptors = None
    while pos < end:
        found = _find(stream, LOCAL_SIG, pos, end, deadline)
        if found is None:
            return
        header = read_local_header(stream, found)
        if header is None or header.data_offset > end:
            pos = found + 1
            continue
        if header.size_known:
            size = header.compressed_size
        else:
            if descriptors is None:
                descriptors = _DescriptorIndex(stream, start, end, deadline)
            size = descriptors.size_from(header.data_offset)
        yield Entry(header.name, found, size, header.method, header.flags, in_central=False,
                    data_offset=header.data_offset, local_name=header.name)
        pos = header.data_offset + size if size is not None else header.data_offset


MAX_SIGNATURES = 1 << 18  # zip signatures in the bytes walked for members without sizes


class _DescriptorIndex:
    """Where the data of a member without sizes ends: at the first data descriptor (with or
    without its signature, 32- or 64-bit sizes) that records the distance from the data's start
    to itself. Every signature in [start, end) is read once, so finding the size of each of many
    such members stays linear."""

    def __init__(self, stream: BinaryIO, start: int, end: int, deadline: Deadline):
        self._sizes: dict[int, int] = {}  # data offset -> compressed size
        count = 0
        for pos, signature in _signatures(stream, start, end, deadline):
            count += 1
            if count > MAX_SIGNATURES:
                raise LimitExceeded("max_members", f"more than {MAX_SIGNATURES} zip signatures to walk",
                                    hostile=True)
            if signature == DESCRIPTOR_SIG:
                fields = read_at(stream, pos + 8, 8)
                if len(fields) >= 4:
                    self._add(pos, pos - struct.unpack_from("<I", fields)[0])
                if len(fields) == 8:
                    self._add(pos, pos - struct.unpack("<Q", fields)[0])
                continue
            for descriptor_size, field_format in ((12, "<I"), (20, "<Q")):
                width = struct.calcsize(field_format)
                raw = read_at(stream, pos - descriptor_size + 4, width) if pos >= descriptor_size else b""
                if len(raw) == width:
                    self._add(pos - descriptor_size, pos - descriptor_size - struct.unpack(field_format, raw)[0])

    def _add(self, data_end: int, data_offset: int) -> None:
        if 0 <= data_offset <= data_end:
            self._sizes.setdefault(data_offset, data_end - data_offset)

    def size_from(self, data_offset: int) -> int | None:
        return self._sizes.get(data_offset)


# -- scanning bytes ---------------------------------------------------------------------------
def _signatures(stream: BinaryIO, start: int, end: int, deadline: Deadline):
    pos = start
    last = -1
    while pos < end:
        deadline.check()
        chunk = read_at(stream, pos, min(_SCAN_CHUNK, end - pos) + 3)
        if not chunk:
            return
        for match in _SIGNATURES.finditer(chunk):
            absolute = pos + match.start()
            if absolute > last and absolute < end:
                last = absolute
                yield absolute, match.group()
        if len(chunk) <= 3:
            return
        pos += len(chunk) - 3


def _find(stream: BinaryIO, signature: bytes, start: int, end: int, deadline: Deadline) -> int | None:
    pos = start
    while pos < end:
        deadline.check()
        chunk = read_at(stream, pos, min(_SCAN_CHUNK, end - pos) + len(signature) - 1)
        index = chunk.find(signature)
        if index >= 0:
            return pos + index if pos + index < end else None
        if len(chunk) < len(signature):
            return None
        pos += len(chunk) - len(signature) + 1
    return None


def _gaps(covered: list, start: int, end: int):
    """The parts of [start, end) that no (begin, finish) interval covers."""
    pos = start
    for begin, finish in sorted(covered):
        if begin > pos:
            yield pos, min(begin, end)
        pos = max(pos, finish)
        if pos >= end:
            return
    if pos < end:
        yield pos, end
