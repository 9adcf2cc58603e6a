"""The pickle opcodes of protocols 0 to 5, as data: code byte -> (name, argument kind, protocol)."""
from __future__ import annotations

from typing import NamedTuple


class Opcode(NamedTuple):
    name: str
    arg: str  # how the argument is encoded; "" for none
    proto: int


_TABLE = [
    ("(", "MARK", "", 0), (".", "STOP", "", 0), ("0", "POP", "", 0), ("1", "POP_MARK", "", 1),
    ("2", "DUP", "", 0), ("F", "FLOAT", "line", 0), ("I", "INT", "line", 0),
    ("J", "BININT", "int4", 1), ("K", "BININT1", "uint1", 1), ("L", "LONG", "line", 0),
    ("M", "BININT2", "uint2", 1), ("N", "NONE", "", 0), ("P", "PERSID", "line", 0),
    ("Q", "BINPERSID", "", 1), ("R", "REDUCE", "", 0), ("S", "STRING", "line", 0),
    ("T", "BINSTRING", "sized4s", 1), ("U", "SHORT_BINSTRING", "sized1", 1),
    ("V", "UNICODE", "line", 0), ("X", "BINUNICODE", "sized4", 1), ("a", "APPEND", "", 0),
    ("b", "BUILD", "", 0), ("c", "GLOBAL", "line2", 0), ("d", "DICT", "", 0),
    ("}", "EMPTY_DICT", "", 1), ("e", "APPENDS", "", 1), ("g", "GET", "line", 0),
    ("h", "BINGET", "uint1", 1), ("i", "INST", "line2", 0), ("j", "LONG_BINGET", "uint4", 1),
    ("l", "LIST", "", 0), ("]", "EMPTY_LIST", "", 1), ("o", "OBJ", "", 1), ("p", "PUT", "line", 0),
    ("q", "BINPUT", "uint1", 1), ("r", "LONG_BINPUT", "uint4", 1), ("s", "SETITEM", "", 0),
    ("t", "TUPLE", "", 0), (")", "EMPTY_TUPLE", "", 1), ("u", "SETITEMS", "", 1),
    ("G", "BINFLOAT", "float8", 1),
    ("\x80", "PROTO", "uint1", 2), ("\x81", "NEWOBJ", "", 2), ("\x82", "EXT1", "uint1", 2),
    ("\x83", "EXT2", "uint2", 2), ("\x84", "EXT4", "int4", 2), ("\x85", "TUPLE1", "", 2),
    ("\x86", "TUPLE2", "", 2), ("\x87", "TUPLE3", "", 2), ("\x88", "NEWTRUE", "", 2),
    ("\x89", "NEWFALSE", "", 2), ("\x8a", "LONG1", "long1", 2), ("\x8b", "LONG4", "long4", 2),
    ("B", "BINBYTES", "sized4", 3), ("C", "SHORT_BINBYTES", "sized1", 3),
    ("\x8c", "SHORT_BINUNICODE", "sized1", 4), ("\x8d", "BINUNICODE8", "sized8", 4),
    ("\x8e", "BINBYTES8", "sized8", 4), ("\x8f", "EMPTY_SET", "", 4), ("\x90", "ADDITEMS", "", 4),
    ("\x91", "FROZENSET", "", 4), ("\x92", "NEWOBJ_EX", "", 4), ("\x93", "STACK_GLOBAL", "", 4),
    ("\x94", "MEMOIZE", "", 4), ("\x95", "FRAME", "uint8", 4),
    ("\x96", "BYTEARRAY8", "sized8", 5), ("\x97", "NEXT_BUFFER", "", 5),
    ("\x98", "READONLY_BUFFER", "", 5),
]

OPCODES: dict[int, Opcode] = {ord(code): Opcode(name, arg, proto) for code, name, arg, proto in _TABLE}
HIGHEST_PROTOCOL = 5
