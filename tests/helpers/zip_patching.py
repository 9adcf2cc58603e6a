"""Byte-level edits of zip archives, for fixtures that zipfile refuses to write."""
from __future__ import annotations

import os
import struct

LOCAL_SIG = b"PK\x03\x04"
CENTRAL_SIG = b"PK\x01\x02"
EOCD_SIG = b"PK\x05\x06"

# (offset of the field in a local header, in a central directory record, struct format)
FIELDS = {"flags": (6, 8, "<H"), "method": (8, 10, "<H"), "crc": (14, 16, "<I")}


class RunsId:
    """Pickles to a call of os.system('id'); only ever pickled by the tests, never loaded."""

    def __reduce__(self):
        return (os.system, ("id",))


def _headers(data: bytes, name: bytes):
    """(kind, offset) of every local header and central record that names `name`."""
    for kind, sig, name_len_at, name_at in (("local", LOCAL_SIG, 26, 30), ("central", CENTRAL_SIG, 28, 46)):
        pos = data.find(sig)
        while 0 <= pos <= len(data) - name_at:
            length = struct.unpack_from("<H", data, pos + name_len_at)[0]
            if data[pos + name_at:pos + name_at + length] == name:
                yield kind, pos
            pos = data.find(sig, pos + 1)


def set_field(data: bytes, name: str, field: str, value: int, *, or_bits: bool = False) -> bytes:
    out = bytearray(data)
    local_at, central_at, fmt = FIELDS[field]
    hits = 0
    for kind, pos in _headers(data, name.encode()):
        at = pos + (local_at if kind == "local" else central_at)
        current = struct.unpack_from(fmt, out, at)[0]
        struct.pack_into(fmt, out, at, (current | value) if or_bits else value)
        hits += 1
    assert hits, f"{name} not found"
    return bytes(out)


def drop_central_record(data: bytes, name: str) -> bytes:
    """The archive without `name` in its central directory (its local header stays)."""
    records = [pos for kind, pos in _headers(data, name.encode()) if kind == "central"]
    assert len(records) == 1
    pos = records[0]
    name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, pos + 28)
    size = 46 + name_len + extra_len + comment_len
    out = bytearray(data[:pos] + data[pos + size:])
    eocd = out.rfind(EOCD_SIG)
    entries = struct.unpack_from("<H", out, eocd + 10)[0] - 1
    cd_size = struct.unpack_from("<I", out, eocd + 12)[0] - size
    struct.pack_into("<HHI", out, eocd + 8, entries, entries, cd_size)
    return bytes(out)


def without_central_directory(data: bytes) -> bytes:
    return data[:data.find(CENTRAL_SIG)]


def corrupt_central_directory(data: bytes) -> bytes:
    pos = data.find(CENTRAL_SIG)
    return data[:pos] + b"XX\x01\x02" + data[pos + 4:]
