"""The marshal reader: values and code objects of this Python written by `marshal.dumps`, code
objects of other versions written by hand, and hostile input."""
from __future__ import annotations

import marshal
import math
import random
import struct
import sys
import time

import pytest

from malhug.code.bytecode import lower
from malhug.code.engine import Unit, analyse_unit
from malhug.code.marshal_reader import (
    LAYOUT_36, LAYOUT_38, LAYOUT_311, CodeInfo, Cycle, MarshalError, load_code, loads,
)
from malhug.formats.base import ScanContext

RUNNING = sys.version_info[:2]

VALUES = [
    0, 1, -1, 255, 2**31 - 1, -2**31, 2**31, -2**31 - 1, 2**63, 2**100, -(2**200), 10**400,
    0.0, -0.0, 1.5, -2.25e300, float("inf"), float("-inf"), 1e-320,
    1 + 2j, -0.5j, complex(float("inf"), 1),
    "", "a", "héllo wörld", "x" * 300, "😀 emoji", "\ud800 lone surrogate", "ascii only", "é" * 300,
    b"", b"by\x00tes", bytes(range(256)) * 3,
    (), (1,), (1, "two", 3.0), tuple(range(300)), [], [1, [2, [3]]], {}, {"a": 1, 2: (3,), (4, 5): None},
    set(), {1, 2, "x"}, frozenset(), frozenset({1, (2, 3)}),
    None, True, False, Ellipsis, StopIteration,
]


@pytest.mark.parametrize("version", range(5))
@pytest.mark.parametrize("value", VALUES, ids=lambda v: repr(v)[:30])
def test_values_round_trip(value, version):
    data = marshal.dumps(value, version)
    assert _equal(loads(data), value)
    assert _equal(loads(data, RUNNING), value)


def test_nan_round_trips():
    assert math.isnan(loads(marshal.dumps(float("nan"))))


def test_shared_objects_are_read_through_references():
    text = "shared string"
    value = (text, text, [text, (text,)], {text: text})
    data = marshal.dumps(value)
    assert b"r" in data  # written once, then referenced
    assert loads(data) == value


def test_a_list_containing_itself_is_cut_at_the_cycle():
    items: list = [1]
    items.append(items)
    value = loads(marshal.dumps(items))
    assert value[0] == 1 and isinstance(value[1], Cycle)


def test_old_int64_and_text_floats():
    assert loads(b"I" + struct.pack("<q", -5_000_000_000)) == -5_000_000_000
    assert loads(b"f\x041.25") == 1.25
    assert loads(b"x\x031.5\x04-2.0") == complex(1.5, -2.0)
    assert loads(b"y" + struct.pack("<dd", 1.0, 2.0)) == 1 + 2j


def _sample(a, b=2, *rest, key, other=None, **named):
    import os

    def inner(x):
        return x + a + len(rest)

    total = [inner(i) for i in range(b)]
    return os.system("id") or total, key, named, other, (lambda q: q * 2)(3), "%s" % b


def _closure_owner():
    captured = "echo hi"

    def uses(flag=True):
        return captured if flag else None

    return uses


def _no_args():
    return 42


@pytest.mark.parametrize("function", [_sample, _closure_owner, _closure_owner(), _no_args,
                                      lambda x: x * 2, lambda: __import__("os").system("id")])
def test_code_objects_of_this_python_match_their_attributes(function):
    code = function.__code__
    info = load_code(marshal.dumps(code))
    _assert_same_code(info, code)
    assert RUNNING in info.versions


def _assert_same_code(info: CodeInfo, code) -> None:
    assert info.name == code.co_name
    assert info.qualname == getattr(code, "co_qualname", code.co_name)
    assert info.filename == code.co_filename
    assert info.firstlineno == code.co_firstlineno
    assert info.argcount == code.co_argcount
    assert info.posonlyargcount == code.co_posonlyargcount
    assert info.kwonlyargcount == code.co_kwonlyargcount
    assert info.flags == code.co_flags
    assert info.names == code.co_names
    assert info.varnames == code.co_varnames
    assert info.cellvars == code.co_cellvars
    assert info.freevars == code.co_freevars
    assert info.code == code.co_code
    assert len(info.consts) == len(code.co_consts)
    for mine, theirs in zip(info.consts, code.co_consts):
        if isinstance(theirs, type(code)):
            _assert_same_code(mine, theirs)
        else:
            assert _equal(mine, theirs)


def _equal(a, b) -> bool:
    if isinstance(b, float) and math.isnan(b):
        return isinstance(a, float) and math.isnan(a)
    if isinstance(b, float):
        return isinstance(a, float) and a == b and math.copysign(1, a) == math.copysign(1, b)
    return type(a) is type(b) and a == b


# -- code objects of other Python versions, written by hand after each version's w_object

def w_long(n: int) -> bytes:
    return b"i" + struct.pack("<i", n)


def w_raw_long(n: int) -> bytes:
    return struct.pack("<i", n)


def w_bytes(data: bytes) -> bytes:
    return b"s" + struct.pack("<i", len(data)) + data


def w_str(text: str) -> bytes:
    return b"z" + bytes([len(text)]) + text.encode("ascii")


def w_tuple(*items: bytes) -> bytes:
    return b")" + bytes([len(items)]) + b"".join(items)


# `lambda x: os.system('id')` compiled for each layout's Python (the bytecode is illustrative:
# only the names and constants are used for versions other than the running one).
BYTECODE_38 = bytes([116, 0, 160, 1, 100, 1, 161, 1, 83, 0])  # LOAD_GLOBAL LOAD_METHOD LOAD_CONST CALL_METHOD RETURN
BYTECODE_36 = bytes([116, 0, 106, 1, 100, 1, 131, 1, 83, 0])  # LOAD_GLOBAL LOAD_ATTR LOAD_CONST CALL_FUNCTION RETURN
BYTECODE_312 = bytes([151, 0, 116, 1, 0, 0, 0, 0, 0, 0, 0, 0, 100, 1, 171, 1, 0, 0, 0, 0, 0, 0, 83, 0])
NAMES = w_tuple(w_str("os"), w_str("system"))
CONSTS = w_tuple(b"N", w_str("id"))


def code_36() -> bytes:
    """3.6/3.7: argcount, kwonlyargcount, nlocals, stacksize, flags, code, consts, names,
    varnames, freevars, cellvars, filename, name, firstlineno, lnotab."""
    return (b"\xe3" + w_raw_long(1) + w_raw_long(0) + w_raw_long(1) + w_raw_long(3) + w_raw_long(67)
            + w_bytes(BYTECODE_36) + CONSTS + NAMES + w_tuple(w_str("x")) + w_tuple() + w_tuple()
            + w_str("<model>") + w_str("<lambda>") + w_raw_long(7) + w_bytes(b"\x00\x01"))


def code_38() -> bytes:
    """3.8-3.10: as 3.6 with posonlyargcount after argcount; 3.10 calls lnotab linetable."""
    return (b"\xe3" + w_raw_long(1) + w_raw_long(0) + w_raw_long(0) + w_raw_long(1) + w_raw_long(3)
            + w_raw_long(67) + w_bytes(BYTECODE_38) + CONSTS + NAMES + w_tuple(w_str("x")) + w_tuple()
            + w_tuple() + w_str("<model>") + w_str("<lambda>") + w_raw_long(7) + w_bytes(b"\x00\x01"))


def code_312() -> bytes:
    """3.11-3.13: argcount, posonlyargcount, kwonlyargcount, stacksize, flags, code, consts,
    names, localsplusnames, localspluskinds, filename, name, qualname, firstlineno, linetable,
    exceptiontable."""
    return (b"\xe3" + w_raw_long(1) + w_raw_long(0) + w_raw_long(0) + w_raw_long(4) + w_raw_long(3)
            + w_bytes(BYTECODE_312) + CONSTS + NAMES + w_tuple(w_str("x")) + w_bytes(b"\x20")
            + w_str("<model>") + w_str("<lambda>") + w_str("<lambda>") + w_raw_long(7)
            + w_bytes(b"\x80\x00") + w_bytes(b""))


HAND_WRITTEN = [
    ((3, 6), code_36, LAYOUT_36), ((3, 7), code_36, LAYOUT_36),
    ((3, 8), code_38, LAYOUT_38), ((3, 9), code_38, LAYOUT_38), ((3, 10), code_38, LAYOUT_38),
    ((3, 12), code_312, LAYOUT_311), ((3, 13), code_312, LAYOUT_311),
]


@pytest.mark.parametrize("version,writer,layout", HAND_WRITTEN, ids=lambda v: str(v))
def test_hand_written_code_objects_of_each_layout(version, writer, layout):
    for info in (load_code(writer(), version), load_code(writer())):
        assert info.layout == layout
        assert info.name == "<lambda>" and info.filename == "<model>" and info.firstlineno == 7
        assert info.names == ("os", "system")
        assert info.consts == (None, "id")
        assert info.varnames == ("x",)
        assert info.argcount == 1
    assert load_code(writer(), version).versions == (version,)
    assert version in load_code(writer()).versions


@pytest.mark.parametrize("version,writer,layout", HAND_WRITTEN, ids=lambda v: str(v))
def test_other_versions_are_lowered_from_names_and_constants(version, writer, layout):
    lowered = lower(load_code(writer(), version))
    assert not lowered.disassembled
    assert "os.system('id')" in lowered.source
    ctx = ScanContext("model")
    analyse_unit(Unit(lowered.source, "python", "m", origin="Keras Lambda layer 'l'"), ctx)
    assert any(f.category == "command_exec" and f.severity >= 3 for f in ctx.findings)


def test_a_layout_read_with_the_wrong_version_fails():
    with pytest.raises(MarshalError):
        load_code(code_38(), (3, 12))
    with pytest.raises(MarshalError):
        load_code(code_312(), (3, 7))


def test_versions_outside_the_supported_range_are_refused():
    with pytest.raises(MarshalError):
        load_code(code_312(), (3, 5))
    with pytest.raises(MarshalError):
        load_code(code_312(), (3, 14))


def test_running_version_code_is_disassembled_into_calls():
    lowered = lower(load_code(marshal.dumps((lambda x: __import__("os").system("id") or x).__code__)))
    assert lowered.disassembled
    assert "__import__('os').system('id')" in lowered.source
    assert "system" in lowered.listing and "'id'" in lowered.listing


def test_imports_attributes_and_keywords_are_rebuilt():
    def body(x):
        import subprocess as sp
        from os import path as p
        return sp.Popen(["echo", "hi"], shell=True), p.join(x, "y")

    source = lower(load_code(marshal.dumps(body.__code__))).source
    assert "import subprocess as sp" in source
    assert "from os import path as p" in source
    assert "sp.Popen(['echo', 'hi'], shell=True)" in source


# -- hostile input

def test_every_truncation_of_a_code_object_fails():
    data = marshal.dumps(_sample.__code__)
    for end in range(0, len(data), max(1, len(data) // 300)):
        with pytest.raises(MarshalError):
            load_code(data[:end])


def test_trailing_bytes_fail():
    with pytest.raises(MarshalError):
        loads(marshal.dumps((1, 2)) + b"N")


def test_random_garbage_fails_or_reads_quickly():
    rng = random.Random(1234)
    started = time.monotonic()
    for _ in range(3000):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
        try:
            loads(data)
        except MarshalError:
            pass
    assert time.monotonic() - started < 10


def test_mutated_code_objects_never_escape_as_other_errors():
    rng = random.Random(99)
    data = bytearray(marshal.dumps(_sample.__code__))
    for _ in range(1500):
        mutated = bytearray(data)
        for _ in range(rng.randrange(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        try:
            value = load_code(bytes(mutated))
        except MarshalError:
            continue
        lower(value)


@pytest.mark.parametrize("data", [
    b"(" + struct.pack("<i", 1) * 1 + b"(" * 0,
    b"\x28" * 100_000,
    b"[" + b"\x01\x00\x00\x00[" * 50_000,
    b"s" + struct.pack("<i", 0x7FFFFFFF),
    b"(" + struct.pack("<i", 0x7FFFFFFF) + b"N",
    b"l" + struct.pack("<i", 0x7FFFFFFF),
    b"l" + struct.pack("<i", 1) + struct.pack("<H", 0x8000),
    b"l" + struct.pack("<i", 2) + struct.pack("<HH", 1, 0),
    b"s" + struct.pack("<i", -1),
    b"r" + struct.pack("<i", 5),
    b"?", b"0", b"\xff", b"", b"f\x03abc", b")\x01" + b"0",
    b"{" + b"N",
    b"<" + struct.pack("<i", 1) + b"[" + struct.pack("<i", 0),
])
def test_malformed_input_raises_marshal_error_quickly(data):
    started = time.monotonic()
    with pytest.raises(MarshalError):
        loads(data)
    assert time.monotonic() - started < 2


def test_deep_nesting_is_bounded():
    value: object = 1
    for _ in range(300):
        value = (value,)
    with pytest.raises(MarshalError, match="deeper"):
        loads(marshal.dumps(value))


def test_a_value_that_is_not_code_is_refused_as_code():
    with pytest.raises(MarshalError, match="not a code object"):
        load_code(marshal.dumps((1, 2)))


def test_names_given_as_strings_are_joined_for_other_versions():
    """`getattr(__import__('os'), 'system')('id')` keeps every name in its strings."""
    consts = w_tuple(b"N", w_str("os"), w_str("system"), w_str("id"))
    names = w_tuple(w_str("getattr"), w_str("__import__"))
    data = (b"\xe3" + w_raw_long(1) + w_raw_long(0) + w_raw_long(0) + w_raw_long(1) + w_raw_long(4)
            + w_raw_long(67) + w_bytes(b"\x00" * 8) + consts + names + w_tuple(w_str("x")) + w_tuple()
            + w_tuple() + w_str("<model>") + w_str("<lambda>") + w_raw_long(1) + w_bytes(b""))
    lowered = lower(load_code(data, (3, 9)))
    assert "os.system('id')" in lowered.source
    assert "id.system" not in lowered.source


def test_benign_names_make_no_calls_for_other_versions():
    names = w_tuple(w_str("tf"), w_str("nn"), w_str("relu"))
    data = (b"\xe3" + w_raw_long(1) + w_raw_long(0) + w_raw_long(0) + w_raw_long(1) + w_raw_long(4)
            + w_raw_long(67) + w_bytes(b"\x00" * 8) + w_tuple(b"N") + names + w_tuple(w_str("x"))
            + w_tuple() + w_tuple() + w_str("<model>") + w_str("<lambda>") + w_raw_long(1) + w_bytes(b""))
    lowered = lower(load_code(data, (3, 9)))
    assert "(" not in lowered.source.split("\n", 1)[1]
