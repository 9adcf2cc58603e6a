"""safetensors: a JSON header and raw tensor bytes. No code can ride in it; the header is checked."""
from __future__ import annotations

import json
import struct
from typing import BinaryIO

from .base import ScanContext

MAX_HEADER = 100 * 1024 * 1024


def handle(stream: BinaryIO, ctx: ScanContext, member: str | None, depth: int) -> str:
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
        header = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        ctx.add_problem(member, f"safetensors header is not valid JSON: {exc}")
        return "safetensors"
    reason = _header_problem(header)
    if reason:
        ctx.add_problem(member, f"malformed safetensors header: {reason}")
    return "safetensors"


def _header_problem(header) -> str | None:
    if not isinstance(header, dict):
        return "not an object"
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict):
                return "__metadata__ is not an object"
            continue
        if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= set(entry):
            return f"tensor {name!r} lacks dtype, shape or data_offsets"
        offsets = entry["data_offsets"]
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(isinstance(o, int) and o >= 0 for o in offsets) and offsets[0] <= offsets[1]):
            return f"tensor {name!r} has bad data_offsets"
    return None


HANDLERS = {"safetensors": handle}
