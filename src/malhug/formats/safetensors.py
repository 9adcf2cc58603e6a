"""safetensors: a JSON header and raw tensor bytes. No code rides in the tensors; the header is
checked the way the reference loader checks it, bytes no tensor accounts for (a gap, a tail)
are read as a nested member, and `__metadata__` strings are checked for code.

Layout: 8 bytes little-endian header length N, N bytes of JSON ({name: {dtype, shape,
data_offsets: [begin, end]}, "__metadata__": {str: str}}), then the data buffer; offsets are
relative to the buffer, tensors cover it from 0 without gaps, and the file ends with it.
"""
from __future__ import annotations

import json
import struct
from math import prod
from typing import BinaryIO

from ..findings import Finding, Severity
from ..streams import Slice
from .base import ScanContext, join_member
from .metadata import check_text
from .protobuf import random_access

MAX_HEADER = 100_000_000  # the reference loader's bound
MAX_TENSORS = 1_000_000
DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32,
    "I64": 64, "U64": 64, "F64": 64, "C64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}


class HeaderError(ValueError):
    pass


def handle(stream: BinaryIO, ctx: ScanContext, member: str | None, depth: int) -> str:
    stream = random_access(stream, ctx.limits.max_member_size)
    base = _tell(stream)
    prefix = stream.read(8)
    if len(prefix) < 8:
        ctx.add_problem(member, "safetensors header truncated")
        return "safetensors"
    (length,) = struct.unpack("<Q", prefix)
    if length > MAX_HEADER:
        ctx.add_problem(member, f"safetensors header of {length} bytes is larger than allowed")
        return "safetensors"
    raw = stream.read(length)
    if len(raw) < length:
        ctx.add_problem(member, "safetensors header truncated")
        return "safetensors"
    try:
        header = json.loads(raw, object_pairs_hook=_no_duplicates)
        tensors, metadata = _parse_header(header)
        spans = _spans(tensors)
    except (ValueError, RecursionError) as exc:  # HeaderError and JSON errors alike
        ctx.add_problem(member, f"malformed safetensors header: {exc}")
        return "safetensors"
    for key, value in metadata.items():
        check_text(ctx, member, f"safetensors metadata {key!r}", value, depth)
    data_start = base + 8 + length
    size = _size(stream)
    data_end = spans[-1][1] if spans else 0
    if size is not None and data_start + data_end > size:
        ctx.add_problem(member, f"safetensors data truncated: tensors need {data_end} bytes, "
                                f"the file holds {max(0, size - data_start)}")
        return "safetensors"
    _unaccounted(stream, ctx, member, depth, data_start, spans, size)
    return "safetensors"


def _no_duplicates(pairs):
    keys = [key for key, _ in pairs]
    if len(keys) != len(set(keys)):
        duplicate = next(key for key in keys if keys.count(key) > 1)
        raise HeaderError(f"key {duplicate!r} appears twice")
    return dict(pairs)


def _parse_header(header) -> tuple[dict, dict]:
    if not isinstance(header, dict):
        raise HeaderError("not an object")
    if len(header) > MAX_TENSORS:
        raise HeaderError(f"more than {MAX_TENSORS} tensors")
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise HeaderError("__metadata__ is not an object of strings")
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= set(entry):
            raise HeaderError(f"tensor {name!r} lacks dtype, shape or data_offsets")
        tensors[name] = _check_tensor(name, entry)
    return tensors, metadata


def _check_tensor(name: str, entry: dict) -> tuple[int, int]:
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in DTYPE_BITS:
        raise HeaderError(f"tensor {name!r} has unknown dtype {dtype!r}")
    if not (isinstance(shape, list) and all(_is_count(n) for n in shape)):
        raise HeaderError(f"tensor {name!r} has a bad shape")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)
            and offsets[0] <= offsets[1]):
        raise HeaderError(f"tensor {name!r} has bad data_offsets")
    bits = prod(shape) * DTYPE_BITS[dtype]
    if bits % 8:
        raise HeaderError(f"tensor {name!r} does not fill whole bytes")
    if bits // 8 != offsets[1] - offsets[0]:
        raise HeaderError(f"tensor {name!r}: shape {shape} of {dtype} needs {bits // 8} bytes, "
                          f"data_offsets span {offsets[1] - offsets[0]}")
    return offsets[0], offsets[1]


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _spans(tensors: dict) -> list[tuple[int, int, str]]:
    """Tensor byte ranges in order; overlapping ranges are malformed (gaps are reported later)."""
    spans = sorted((begin, end, name) for name, (begin, end) in tensors.items())
    for (b1, e1, n1), (b2, _e2, n2) in zip(spans, spans[1:]):
        if b2 < e1:
            raise HeaderError(f"tensors {n1!r} and {n2!r} overlap")
    return spans


def _unaccounted(stream, ctx: ScanContext, member: str | None, depth: int, data_start: int,
                 spans: list, size: int | None) -> None:
    """Gaps between tensors and bytes after the last one: the reference loader refuses such
    files, so nothing legitimate lives there; each region is read as a member of its own."""
    regions, cursor = [], 0
    for begin, end, _name in spans:
        if begin > cursor:
            regions.append((cursor, begin, "gap"))
        cursor = max(cursor, end)
    if size is not None and data_start + cursor < size:
        regions.append((cursor, size - data_start, "trailing data"))
    for begin, end, what in regions:
        offset = data_start + begin
        ctx.add_finding(Finding(
            "safetensors-hidden-data", Severity.MEDIUM, "tampering",
            f"{end - begin} bytes of {what} that no tensor accounts for (loaders refuse the file; "
            f"another reader may take them)", ctx.location(member, offset),
            f"bytes {offset}..{data_start + end} of the file"))
        _analyse_region(stream, ctx, member, depth, offset, end - begin, what)


def _analyse_region(stream, ctx: ScanContext, member: str | None, depth: int, offset: int,
                    length: int, what: str) -> None:
    from . import analyse

    name = join_member(member, f"<{what} at {offset}>")
    analyse(Slice(stream, offset, length), ctx, name, depth=depth + 1)


def _tell(stream) -> int:
    try:
        return stream.tell()
    except (AttributeError, OSError, ValueError):
        return 0


def _size(stream) -> int | None:
    try:
        if not stream.seekable():
            return None
        here = stream.tell()
        end = stream.seek(0, 2)
        stream.seek(here)
        return end
    except (AttributeError, OSError, ValueError):
        return None


HANDLERS = {"safetensors": handle}
