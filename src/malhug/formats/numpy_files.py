"""NumPy .npy files: the header is read as a literal; array data is a pickle only for object dtypes.

Plain arrays are never read past their header: their data is numbers, and no loader runs it.
"""
from __future__ import annotations

import ast
import re
import struct
from dataclasses import dataclass
from typing import BinaryIO

from ..limits import LimitExceeded
from .base import ScanContext
from .pickle_stream import analyse_pickle

MAGIC = b"\x93NUMPY"
HEADER_LENGTH_FORMATS = {1: "<H", 2: "<I", 3: "<I"}
HEADER_KEYS = {"descr", "fortran_order", "shape"}
MAX_DESCR_DEPTH = 32

# dtype spellings numpy maps to a type without Python objects (after the byte-order mark).
_PLAIN_CODE = re.compile(r"[?bBhHiIlLqQpPnNefdgFDGSUVaMmc]\d*(\[\w+\])?")
_PLAIN_NAME = re.compile(
    r"(bool|int|uint|float|complex|bytes|str|void|datetime64|timedelta64|half|single|double|"
    r"longdouble|byte|ubyte|short|ushort|intc|uintc|intp|uintp|longlong|ulonglong|"
    r"csingle|cdouble|clongdouble)_?\d*(\[\w+\])?"
)
_OBJECT = re.compile(r"(O\d*|object_?)")


class NpyHeaderError(Exception):
    """The header is not one numpy would accept."""


@dataclass(frozen=True)
class NpyHeader:
    version: int
    descr: object
    fortran_order: bool
    shape: tuple
    data_offset: int  # from the start of the file


def handle(stream: BinaryIO, ctx: ScanContext, member: str | None, depth: int) -> str:
    base = _position(stream)
    try:
        header = read_header(stream, ctx.limits.kept_bytes)
        holds_objects = has_object_fields(header.descr)
    except NpyHeaderError as exc:
        ctx.add_problem(member, f"npy header unreadable: {exc}")
        return "npy"
    if not holds_objects:
        return "npy"
    # np.save pickles the whole array right after the header when its dtype holds objects.
    analyse_pickle(stream, ctx, member, depth, start=base + header.data_offset)
    return "npy_object"


def read_header(stream: BinaryIO, max_header: int) -> NpyHeader:
    prefix = _read_exactly(stream, len(MAGIC) + 2, "magic")
    if not prefix.startswith(MAGIC):
        raise NpyHeaderError("no NUMPY magic")
    major, minor = prefix[len(MAGIC)], prefix[len(MAGIC) + 1]
    if major not in HEADER_LENGTH_FORMATS or minor != 0:
        raise NpyHeaderError(f"unknown format version {major}.{minor}")
    length_format = HEADER_LENGTH_FORMATS[major]
    size = struct.calcsize(length_format)
    (length,) = struct.unpack(length_format, _read_exactly(stream, size, "header length"))
    if length > max_header:
        raise LimitExceeded("kept_bytes", f"npy header of {length} bytes")
    text = _read_exactly(stream, length, "header").decode("utf-8" if major == 3 else "latin-1", "replace")
    fields = _parse_dict(text)
    return NpyHeader(major, fields["descr"], fields["fortran_order"], fields["shape"],
                     len(prefix) + size + length)


# Headers written by Python 2 spell integers `2L`; numpy itself reads them.
_PY2_LONG = re.compile(r"\b(\d+)L\b")


def _parse_dict(text: str) -> dict:
    try:
        value = ast.literal_eval(_PY2_LONG.sub(r"\1", text.strip()))  # a literal only: nothing is called
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise NpyHeaderError(f"header is not a literal: {type(exc).__name__}") from None
    if not isinstance(value, dict) or set(value) != HEADER_KEYS:
        raise NpyHeaderError("header is not a dict with descr, fortran_order and shape")
    if not isinstance(value["fortran_order"], bool):
        raise NpyHeaderError("fortran_order is not a bool")
    shape = value["shape"]
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise NpyHeaderError("shape is not a tuple of sizes")
    return value


def has_object_fields(descr, depth: int = 0) -> bool:
    """Whether a dtype description holds Python objects anywhere (fields, sub-arrays included)."""
    if depth > MAX_DESCR_DEPTH:
        raise NpyHeaderError("dtype nested too deeply")
    if isinstance(descr, str):
        return _type_string_holds_objects(descr)
    if isinstance(descr, tuple) and len(descr) == 2:  # (base, shape): a sub-array
        return has_object_fields(descr[0], depth + 1)
    if isinstance(descr, list):
        return any(_field_holds_objects(field, depth + 1) for field in descr)
    raise NpyHeaderError(f"unrecognised dtype {descr!r:.80}")


def _field_holds_objects(field, depth: int) -> bool:
    if not isinstance(field, tuple) or len(field) not in (2, 3):
        raise NpyHeaderError(f"unrecognised structured field {field!r:.80}")
    return has_object_fields(field[1], depth)


def _type_string_holds_objects(text: str) -> bool:
    # "f8,O" is a structured dtype too; commas inside a sub-array shape "(2,3)f8" do not split
    parts = [part.strip() for part in re.split(r",(?![^(]*\))", text)]
    holds = False
    for part in parts:
        code = re.sub(r"^\(\s*[\d,\s]*\)", "", part).lstrip("<>|=")  # "(2,)f8" sub-array prefix
        if _OBJECT.fullmatch(code):
            holds = True
        elif not (_PLAIN_CODE.fullmatch(code) or _PLAIN_NAME.fullmatch(code)):
            raise NpyHeaderError(f"unrecognised dtype {text!r:.80}")
    return holds


def _read_exactly(stream: BinaryIO, size: int, what: str) -> bytes:
    parts = []
    remaining = size
    while remaining > 0:
        data = stream.read(remaining)
        if not data:
            raise NpyHeaderError(f"file ends inside the {what}")
        parts.append(data)
        remaining -= len(data)
    return b"".join(parts)


def _position(stream) -> int:
    try:
        return stream.tell() if stream.seekable() else 0
    except (AttributeError, OSError, ValueError):
        return 0


HANDLERS = {"npy": handle}
