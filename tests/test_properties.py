"""Properties that hold for any input: the readers never raise, what pickle.dumps writes is
clean and re-renders as Python, and the marshal reader agrees with marshal."""
from __future__ import annotations

import ast
import io
import marshal
import pickle
import zipfile

from hypothesis import HealthCheck, given, settings, strategies as st

from malhug.code import fold
from malhug.code.marshal_reader import CodeInfo, MarshalError, loads
from malhug.formats import analyse
from malhug.formats.base import ScanContext
from malhug.formats.sniff import sniff
from malhug.limits import Deadline
from malhug.pickle.checks import check_trace
from malhug.pickle.decompile import Renderer
from malhug.pickle.machine import PickleMachine
from malhug.pickle.reader import ByteReader
from malhug.pickle.values import (
    Blob, Const, DictValue, ListValue, SetValue, TupleValue,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-2**200, max_value=2**200),
    st.floats(allow_nan=False), st.text(max_size=40), st.binary(max_size=40),
)
hashable = st.one_of(scalars, st.tuples(scalars, scalars))
data = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6), st.tuples(inner, inner),
        st.dictionaries(hashable, inner, max_size=5), st.frozensets(hashable, max_size=4),
        st.sets(hashable, max_size=4), st.builds(bytearray, st.binary(max_size=20)),
    ),
    max_leaves=30,
)


def _trace(raw: bytes):
    return PickleMachine(ByteReader(io.BytesIO(raw))).run()


@SETTINGS
@given(st.binary(max_size=2048))
def test_pickle_machine_never_raises_on_any_bytes(raw):
    trace = _trace(raw)
    program = Renderer().program(trace, 1 << 20)
    ast.parse(program.source)
    check_trace(trace, ScanContext("x").location(None))


@SETTINGS
@given(data, st.integers(min_value=0, max_value=pickle.HIGHEST_PROTOCOL))
def test_pickles_of_plain_data_are_clean_and_render_as_python(value, protocol):
    raw = pickle.dumps(value, protocol)
    trace = _trace(raw)
    assert trace.complete and trace.pickles == 1
    verdict = check_trace(trace, ScanContext("x").location(None))
    assert [f for f in verdict.findings if f.rule != "pickle-anomaly"] == []
    renderer = Renderer(max_literal=1 << 20)
    for result in trace.results:
        ast.parse(renderer.expr(result))
    ctx = ScanContext("x.pkl")
    analyse(io.BytesIO(raw), ctx, None, name="x.pkl")
    assert not ctx.findings and not ctx.problems


def _plain(value):
    """A symbolic value as the Python value it stands for (containers of constants only)."""
    if isinstance(value, Const):
        return value.value
    if isinstance(value, Blob):
        raise AssertionError("large argument")
    if isinstance(value, ListValue):
        return [_plain(v) for v in value.items]
    if isinstance(value, TupleValue):
        return tuple(_plain(v) for v in value.items)
    if isinstance(value, DictValue):
        return {_plain(k): _plain(v) for k, v in value.items}
    if isinstance(value, SetValue):
        items = [_plain(v) for v in value.items]
        return frozenset(items) if value.frozen else set(items)
    return value


marshallable = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**100, max_value=2**100),
              st.floats(allow_nan=False), st.complex_numbers(allow_nan=False), st.text(max_size=30),
              st.binary(max_size=30), st.just(Ellipsis)),
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.tuples(inner, inner),
                            st.dictionaries(st.one_of(st.text(max_size=8), st.integers()), inner, max_size=4),
                            st.frozensets(st.integers(), max_size=4)),
    max_leaves=25,
)


@SETTINGS
@given(marshallable)
def test_marshal_reader_reads_what_marshal_writes(value):
    assert _normal(loads(marshal.dumps(value))) == _normal(value)


def _normal(value):
    """Compare structures with the reader's own spellings of tuples and sets set aside."""
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_normal(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted(((repr(k), _normal(v)) for k, v in value.items()))))
    if isinstance(value, (set, frozenset)):
        return ("set", tuple(sorted(repr(v) for v in value)))
    return repr(value)


@SETTINGS
@given(st.text(max_size=200).filter(lambda s: s.strip()))
def test_marshal_reader_reads_compiled_code(source):
    try:
        code = compile(source, "<p>", "exec")
    except (SyntaxError, ValueError):
        return
    info = loads(marshal.dumps(code))
    assert isinstance(info, CodeInfo)
    assert set(code.co_names) <= set(info.names)


@SETTINGS
@given(st.binary(max_size=512))
def test_marshal_reader_only_raises_marshal_error(raw):
    try:
        loads(raw)
    except MarshalError:
        pass


constants = st.one_of(data, st.slices(10))
operators = st.sampled_from(["Add", "Sub", "Mult", "Mod", "FloorDiv", "Div", "Pow", "LShift", "RShift",
                             "BitOr", "BitXor", "BitAnd", "MatMult"])


@SETTINGS
@given(st.sampled_from(sorted(fold.foldable_names())), st.lists(constants, max_size=3),
       st.dictionaries(st.text(max_size=8), constants, max_size=2))
def test_fold_call_never_raises(name, args, kwargs):
    fold.fold_call(name, tuple(args), kwargs, fold.FoldBudget(max_output=1 << 20))


@SETTINGS
@given(constants, st.text(max_size=12), st.lists(constants, max_size=3), operators, constants)
def test_fold_operations_never_raise(receiver, method, args, op, other):
    budget = fold.FoldBudget(max_output=1 << 20)
    fold.fold_method(receiver, method, tuple(args), {}, budget)
    fold.fold_binop(op, receiver, other, budget)
    fold.fold_unaryop("Invert", receiver, budget)
    fold.fold_subscript(receiver, other, budget)
    fold.fold_fstring([method, (receiver, 114, None), (other, -1, method)], budget)


def _zip_bytes(members: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


VALID_ZIP = _zip_bytes({"a/data.pkl": pickle.dumps({"k": [1, 2]}, 2), "b.txt": b"hello " * 40,
                        "inner.zip": _zip_bytes({"x.pkl": b"cos\nsystem\n(S'id'\ntR."})})


@SETTINGS
@given(st.lists(st.tuples(st.integers(min_value=0, max_value=len(VALID_ZIP) - 1),
                          st.integers(min_value=0, max_value=255)), min_size=1, max_size=12),
       st.integers(min_value=0, max_value=len(VALID_ZIP)))
def test_zip_reader_survives_mutated_zips(changes, cut):
    raw = bytearray(VALID_ZIP)
    for position, byte in changes:
        raw[position] = byte
    for variant in (bytes(raw), bytes(raw[:cut])):
        ctx = ScanContext("x.zip", deadline=Deadline(20))
        analyse(io.BytesIO(variant), ctx, None, name="x.zip", hint="zip")


@SETTINGS
@given(st.binary(max_size=4096), st.sampled_from(["", "x.pkl", "model.onnx", "a.py", "t.jinja", "x.pb"]))
def test_sniff_never_raises(head, name):
    assert isinstance(sniff(head, name), str)
