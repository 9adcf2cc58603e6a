"""A tiny pickle opcode assembler: each function returns the bytes of one opcode.

Tests join them to write any stream, valid or not, without going through pickle.dumps.
"""
from __future__ import annotations

import struct


def proto(n: int = 2) -> bytes:
    return b"\x80" + bytes([n])


def frame(length: int) -> bytes:
    return b"\x95" + struct.pack("<Q", length)


def stop() -> bytes:
    return b"."


def mark() -> bytes:
    return b"("


def pop() -> bytes:
    return b"0"


def pop_mark() -> bytes:
    return b"1"


def dup() -> bytes:
    return b"2"


def none() -> bytes:
    return b"N"


def newtrue() -> bytes:
    return b"\x88"


def newfalse() -> bytes:
    return b"\x89"


def int_(text) -> bytes:
    return b"I" + str(text).encode() + b"\n"


def long_(text) -> bytes:
    return b"L" + str(text).encode() + b"\n"


def float_(text) -> bytes:
    return b"F" + str(text).encode() + b"\n"


def binint(n: int) -> bytes:
    return b"J" + struct.pack("<i", n)


def binint1(n: int) -> bytes:
    return b"K" + bytes([n])


def binint2(n: int) -> bytes:
    return b"M" + struct.pack("<H", n)


def long1(n: int) -> bytes:
    data = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True) if n else b""
    return b"\x8a" + bytes([len(data)]) + data


def binfloat(x: float) -> bytes:
    return b"G" + struct.pack(">d", x)


def string(text: str, quote: str = "'") -> bytes:
    return b"S" + (quote + text + quote).encode() + b"\n"


def binstring(data: bytes) -> bytes:
    return b"T" + struct.pack("<i", len(data)) + data


def short_binstring(data: bytes) -> bytes:
    return b"U" + bytes([len(data)]) + data


def unicode(text: str) -> bytes:
    return b"V" + text.encode("raw-unicode-escape") + b"\n"


def binunicode(text: str) -> bytes:
    data = text.encode("utf-8")
    return b"X" + struct.pack("<I", len(data)) + data


def short_binunicode(text: str) -> bytes:
    data = text.encode("utf-8")
    return b"\x8c" + bytes([len(data)]) + data


def binunicode8(text: str) -> bytes:
    data = text.encode("utf-8")
    return b"\x8d" + struct.pack("<Q", len(data)) + data


def binbytes(data: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(data)) + data


def short_binbytes(data: bytes) -> bytes:
    return b"C" + bytes([len(data)]) + data


def binbytes8(data: bytes) -> bytes:
    return b"\x8e" + struct.pack("<Q", len(data)) + data


def bytearray8(data: bytes) -> bytes:
    return b"\x96" + struct.pack("<Q", len(data)) + data


def next_buffer() -> bytes:
    return b"\x97"


def readonly_buffer() -> bytes:
    return b"\x98"


def empty_list() -> bytes:
    return b"]"


def empty_dict() -> bytes:
    return b"}"


def empty_tuple() -> bytes:
    return b")"


def empty_set() -> bytes:
    return b"\x8f"


def list_() -> bytes:
    return b"l"


def tuple_() -> bytes:
    return b"t"


def dict_() -> bytes:
    return b"d"


def tuple1() -> bytes:
    return b"\x85"


def tuple2() -> bytes:
    return b"\x86"


def tuple3() -> bytes:
    return b"\x87"


def append() -> bytes:
    return b"a"


def appends() -> bytes:
    return b"e"


def setitem() -> bytes:
    return b"s"


def setitems() -> bytes:
    return b"u"


def additems() -> bytes:
    return b"\x90"


def frozenset_() -> bytes:
    return b"\x91"


def put(n: int) -> bytes:
    return b"p" + str(n).encode() + b"\n"


def binput(n: int) -> bytes:
    return b"q" + bytes([n])


def long_binput(n: int) -> bytes:
    return b"r" + struct.pack("<I", n)


def get(n: int) -> bytes:
    return b"g" + str(n).encode() + b"\n"


def binget(n: int) -> bytes:
    return b"h" + bytes([n])


def long_binget(n: int) -> bytes:
    return b"j" + struct.pack("<I", n)


def memoize() -> bytes:
    return b"\x94"


def global_(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def stack_global() -> bytes:
    return b"\x93"


def inst(module: str, name: str) -> bytes:
    return b"i" + module.encode() + b"\n" + name.encode() + b"\n"


def obj() -> bytes:
    return b"o"


def reduce() -> bytes:
    return b"R"


def newobj() -> bytes:
    return b"\x81"


def newobj_ex() -> bytes:
    return b"\x92"


def build() -> bytes:
    return b"b"


def ext1(code: int) -> bytes:
    return b"\x82" + bytes([code])


def ext2(code: int) -> bytes:
    return b"\x83" + struct.pack("<H", code)


def ext4(code: int) -> bytes:
    return b"\x84" + struct.pack("<i", code)


def persid(pid: str) -> bytes:
    return b"P" + pid.encode() + b"\n"


def binpersid() -> bytes:
    return b"Q"


# -- common shapes --------------------------------------------------------------------------

def call(module: str, name: str, *args: str, protocol: int = 2) -> bytes:
    """`module.name(*args)` with string arguments, as GLOBAL + TUPLE + REDUCE + STOP."""
    body = global_(module, name) + mark() + b"".join(binunicode(a) for a in args) + tuple_() + reduce()
    return (proto(protocol) if protocol >= 2 else b"") + body + stop()


def call_stack_global(module: str, name: str, *args: str) -> bytes:
    """The same call written with protocol 4's STACK_GLOBAL."""
    body = (short_binunicode(module) + memoize() + short_binunicode(name) + memoize() + stack_global()
            + memoize() + mark() + b"".join(short_binunicode(a) for a in args) + tuple_() + reduce())
    return proto(4) + body + stop()


def call_proto0(module: str, name: str, arg: str) -> bytes:
    """Protocol 0 text form: cmodule\\nname\\n(S'arg'\\ntR."""
    return global_(module, name) + mark() + string(arg) + tuple_() + reduce() + stop()


# -- running fixtures through the scanner (bytes are only ever written, then scanned) -------

def scan_bytes(directory, data: bytes, name: str = "fixture.pkl"):
    """Write data under directory and scan it; returns the FileResult."""
    import malhug

    path = directory / name
    path.write_bytes(data)
    return malhug.scan(path).files[0]


def run_machine(data: bytes, **limit_overrides):
    """The trace of the symbolic machine over data."""
    import io

    from malhug.limits import DEFAULT_LIMITS
    from malhug.pickle.machine import PickleMachine
    from malhug.pickle.reader import ByteReader

    limits = DEFAULT_LIMITS.with_overrides(**limit_overrides) if limit_overrides else DEFAULT_LIMITS
    return PickleMachine(ByteReader(io.BytesIO(data)), limits).run()


def dangerous(result) -> list:
    """The pickle-dangerous-callable findings of a FileResult."""
    return [f for f in result.findings if f.rule == "pickle-dangerous-callable"]


def program_source(data: bytes) -> str:
    from malhug.limits import DEFAULT_LIMITS
    from malhug.pickle.decompile import Renderer

    trace = run_machine(data)
    return Renderer(DEFAULT_LIMITS).program(trace, DEFAULT_LIMITS.max_program_chars).source
