"""Ways a payload hides from a scanner, and the benign twin of each."""
from __future__ import annotations

import ast
import pickle

import pytest

import opcodes as op
from opcodes import dangerous, program_source, run_machine, scan_bytes

from malhug.findings import Severity, Verdict


class _Reduce:
    """An object whose pickle calls func(*args); only ever pickled, never loaded."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _os_system_pickle(protocol=2) -> bytes:
    import os
    return pickle.dumps(_Reduce(os.system, "id"), protocol=protocol)


def _categories(result):
    return {(f.category, f.severity) for f in result.findings}


# -- dotted names, aliases, Python 2 names ---------------------------------------------------

@pytest.mark.parametrize("module,name,qual,category", [
    ("pathlib", "os.system", "os.system", "command_exec"),
    ("builtins", "getattr", "builtins.getattr", "import_indirection"),
    ("torch.serialization", "pickle.loads", "pickle.loads", "deserialization"),
    ("collections", "os.popen", "os.popen", "command_exec"),
    ("numpy", "testing._private.utils.runstring", "numpy.testing._private.utils.runstring", "code_exec"),
])
def test_dotted_names_through_stack_global(tmp_path, module, name, qual, category):
    result = scan_bytes(tmp_path, op.call_stack_global(module, name, "id"))
    assert result.verdict is Verdict.MALICIOUS
    found = dangerous(result)
    assert any(qual in f.message and f.category == category for f in found), [f.message for f in found]


def test_dotted_name_benign_twin(tmp_path):
    # a dotted name that only reaches a safe class
    result = scan_bytes(tmp_path, op.proto(4) + op.short_binunicode("collections") + op.short_binunicode("OrderedDict")
                        + op.stack_global() + op.empty_tuple() + op.reduce() + op.stop())
    assert result.verdict is Verdict.CLEAN


@pytest.mark.parametrize("module,name,category", [
    ("posix", "system", "command_exec"),
    ("nt", "system", "command_exec"),
    ("__builtin__", "eval", "code_exec"),
    ("__builtins__", "exec", "code_exec"),
    ("_io", "open", "file_read"),
    ("commands", "getoutput", "command_exec"),  # Python 2 name, mapped by _compat_pickle
    ("cPickle", "loads", "deserialization"),
    ("copy_reg", "add_extension", "import_indirection"),
    ("_pickle", "loads", "deserialization"),
    ("_operator", "attrgetter", "import_indirection"),
])
@pytest.mark.parametrize("protocol", [0, 2])
def test_aliases_and_python2_names(tmp_path, module, name, category, protocol):
    data = op.call_proto0(module, name, "id") if protocol == 0 else op.call(module, name, "id")
    result = scan_bytes(tmp_path, data)
    assert result.verdict is Verdict.MALICIOUS
    assert any(f.category == category for f in dangerous(result))


@pytest.mark.parametrize("module,name", [("__builtin__", "set"), ("copy_reg", "_reconstructor"), ("__builtin__", "frozenset")])
def test_python2_names_of_safe_callables_are_clean(tmp_path, module, name):
    data = op.global_(module, name) + op.mark() + op.tuple_() + op.reduce() + op.stop()
    assert scan_bytes(tmp_path, data).verdict is Verdict.CLEAN


def test_real_pickle_of_os_system_names_posix_or_nt(tmp_path):
    for protocol in range(0, 6):
        result = scan_bytes(tmp_path, _os_system_pickle(protocol))
        assert result.verdict is Verdict.MALICIOUS
        finding = dangerous(result)[0]
        assert finding.severity is Severity.CRITICAL and finding.category == "command_exec"
        assert "system('id')" in finding.evidence


# -- names computed at load time and calls of computed values -------------------------------

def test_stack_global_with_computed_names_is_dynamic_import(tmp_path):
    data = (op.proto(4) + op.global_("builtins", "str") + op.short_binunicode("os") + op.tuple1() + op.reduce()
            + op.short_binunicode("system") + op.stack_global() + op.short_binunicode("id") + op.tuple1()
            + op.reduce() + op.stop())
    result = scan_bytes(tmp_path, data)
    assert result.verdict is Verdict.MALICIOUS
    finding = next(f for f in result.findings if f.rule == "pickle-dynamic-import")
    assert finding.severity is Severity.HIGH
    ast.parse(program_source(data))


def test_stack_global_with_non_string_constants_is_broken(tmp_path):
    data = op.proto(4) + op.binint1(1) + op.binint1(2) + op.stack_global() + op.stop()
    result = scan_bytes(tmp_path, data)
    assert result.verdict is Verdict.INCONCLUSIVE


def test_getattr_result_called(tmp_path):
    data = (op.proto(2) + op.global_("builtins", "getattr") + op.global_("builtins", "__import__")
            + op.binunicode("os") + op.tuple1() + op.reduce() + op.binunicode("system") + op.tuple2() + op.reduce()
            + op.binunicode("id") + op.tuple1() + op.reduce() + op.stop())
    result = scan_bytes(tmp_path, data)
    assert result.verdict is Verdict.MALICIOUS
    rules = {f.rule for f in result.findings}
    assert {"pickle-dangerous-callable", "pickle-indirect-call"} <= rules
    indirect = next(f for f in result.findings if f.rule == "pickle-indirect-call")
    assert indirect.evidence == "_v2 = _v1('id')"


def test_calling_a_safe_result_is_still_reported(tmp_path):
    # collections.OrderedDict()() — a computed callee is never judged clean
    data = (op.proto(2) + op.global_("collections", "OrderedDict") + op.empty_tuple() + op.reduce()
            + op.empty_tuple() + op.reduce() + op.stop())
    result = scan_bytes(tmp_path, data)
    assert result.verdict is Verdict.SUSPICIOUS
    assert any(f.rule == "pickle-indirect-call" for f in result.findings)


# -- tampering ------------------------------------------------------------------------------

def test_setitem_on_sys_modules(tmp_path):
    data = op.global_("sys", "modules") + op.string("os") + op.global_("builtins", "object") + op.setitem() + op.stop()
    result = scan_bytes(tmp_path, data)
    assert result.verdict is Verdict.MALICIOUS
    assert any(f.rule == "pickle-object-tampering" for f in result.findings)


def test_setitems_on_an_imported_dict(tmp_path):
    # setting keys on any imported object changes the loading process
    data = (op.proto(2) + op.global_("collections", "OrderedDict") + op.mark() + op.binunicode("k")
            + op.none() + op.setitems() + op.stop())
    result = scan_bytes(tmp_path, data)
    assert result.verdict is Verdict.MALICIOUS
    assert any(f.rule == "pickle-object-tampering" for f in result.findings)


def test_append_on_imported_list(tmp_path):
    data = op.proto(2) + op.global_("sys", "path") + op.binunicode("/tmp/example") + op.append() + op.stop()
    result = scan_bytes(tmp_path, data)
    assert result.verdict is Verdict.MALICIOUS
    assert any(f.rule == "pickle-object-tampering" for f in result.findings)


def test_setitem_on_own_dict_is_clean(tmp_path):
    data = op.proto(2) + op.empty_dict() + op.binunicode("os") + op.none() + op.setitem() + op.stop()
    assert scan_bytes(tmp_path, data).verdict is Verdict.CLEAN


# -- nested payloads ------------------------------------------------------------------------

def test_nested_pickle_loads_is_followed_and_located(tmp_path):
    inner = _os_system_pickle()
    data = op.proto(2) + op.global_("pickle", "loads") + op.binbytes(inner) + op.tuple1() + op.reduce() + op.stop()
    result = scan_bytes(tmp_path, data)
    assert result.verdict is Verdict.MALICIOUS
    nested = [f for f in dangerous(result) if f.category == "command_exec"]
    assert nested and nested[0].location.member and "pickle.loads" in nested[0].location.member
    assert nested[0].location.offset is not None


def test_nested_benign_pickle_still_flags_the_loads_call(tmp_path):
    inner = pickle.dumps({"a": 1}, protocol=2)
    data = op.proto(2) + op.global_("pickle", "loads") + op.binbytes(inner) + op.tuple1() + op.reduce() + op.stop()
    result = scan_bytes(tmp_path, data)
    assert {f.category for f in dangerous(result)} == {"deserialization"}


def test_codecs_encode_latin1_feeds_pickle_loads(tmp_path):
    inner = _os_system_pickle()
    data = (op.proto(2) + op.global_("pickle", "loads") + op.global_("_codecs", "encode")
            + op.binunicode(inner.decode("latin1")) + op.binunicode("latin1") + op.tuple2() + op.reduce()
            + op.tuple1() + op.reduce() + op.stop())
    result = scan_bytes(tmp_path, data)
    assert any(f.category == "command_exec" and f.location.member for f in dangerous(result))


def test_codecs_encode_alone_is_what_bytes_pickling_uses(tmp_path):
    # protocol 2 pickles bytes as _codecs.encode(str, 'latin1'): clean
    assert scan_bytes(tmp_path, pickle.dumps(b"\x00\xffdata", protocol=2)).verdict is Verdict.CLEAN


def test_nested_pickle_in_large_blob_is_read_from_the_stream(tmp_path):
    inner = _os_system_pickle(4)
    padded = inner + b"\x00" * (2 * 1024 * 1024)  # past kept_bytes: becomes a Blob region
    data = op.proto(4) + op.global_("pickle", "loads") + op.binbytes(padded) + op.tuple1() + op.reduce() + op.stop()
    result = scan_bytes(tmp_path, data)
    assert any(f.category == "command_exec" and f.location.member for f in dangerous(result))


# -- broken, truncated and odd streams ------------------------------------------------------

def test_dangerous_call_before_parse_error(tmp_path):
    data = op.proto(2) + op.global_("os", "system") + op.binunicode("id") + op.tuple1() + op.reduce() + b"\xff\xff"
    result = scan_bytes(tmp_path, data)
    assert result.verdict is Verdict.MALICIOUS
    assert result.problems and "invalid opcode" in result.problems[0].reason


def test_invalid_opcode_alone_is_inconclusive(tmp_path):
    result = scan_bytes(tmp_path, op.proto(2) + op.none() + b"\xff" + op.stop())
    assert result.verdict is Verdict.INCONCLUSIVE


def test_stack_underflow(tmp_path):
    result = scan_bytes(tmp_path, op.proto(2) + op.reduce() + op.stop())
    assert result.verdict is Verdict.INCONCLUSIVE
    assert "underflow" in result.problems[0].reason
    result = scan_bytes(tmp_path, op.proto(2) + op.global_("os", "system") + op.binunicode("id") + op.tuple1()
                        + op.reduce() + op.reduce() + op.stop())
    assert result.verdict is Verdict.MALICIOUS and result.problems


def test_stop_on_empty_stack_is_an_error():
    assert "underflow" in run_machine(op.proto(2) + op.stop()).error


def test_empty_input():
    trace = run_machine(b"")
    assert trace.error and "empty" in trace.error


def test_empty_file_is_not_a_pickle(tmp_path):
    result = scan_bytes(tmp_path, b"", "empty.pkl")
    assert result.format == "empty"
    assert not result.findings


_TRUNCATION_FIXTURES = {
    "protocol 2": op.call("os", "system", "id"),
    "protocol 4 stack global": op.call_stack_global("os", "system", "id"),
    "real pickle protocol 2": _os_system_pickle(2),
    "real pickle protocol 5": _os_system_pickle(5),
}


@pytest.mark.parametrize("fixture", sorted(_TRUNCATION_FIXTURES))
def test_every_prefix_is_flagged_or_inconclusive(tmp_path, fixture):
    data = _TRUNCATION_FIXTURES[fixture]
    reduce_at = data.rindex(b"R")
    for cut in range(1, len(data)):
        result = scan_bytes(tmp_path, data[:cut])
        if cut > reduce_at:
            assert result.verdict is Verdict.MALICIOUS, cut
            assert result.problems, cut
        else:
            assert result.verdict is not Verdict.CLEAN, cut


def test_protocol_0_prefixes_after_the_import_are_never_clean(tmp_path):
    data = op.call_proto0("os", "system", "id")
    reduce_at = data.rindex(b"R")
    first_global_end = data.index(b"system\n") + len(b"system\n")
    for cut in range(first_global_end, len(data)):
        result = scan_bytes(tmp_path, data[:cut])
        if cut > reduce_at:
            assert result.verdict is Verdict.MALICIOUS, cut
        else:
            assert result.verdict is not Verdict.CLEAN, cut


try:
    from hypothesis import given, settings, strategies as st
except ImportError:  # pragma: no cover
    given = None

if given is not None:
    @settings(max_examples=60, deadline=None)
    @given(st.binary(max_size=64))
    def test_machine_never_crashes_on_arbitrary_bytes(data):
        trace = run_machine(op.proto(2) + data)
        assert trace.complete or trace.error or trace.limit
        ast.parse(program_source(op.proto(2) + data))

    @settings(max_examples=40, deadline=None)
    @given(st.integers(min_value=0, max_value=10), st.binary(min_size=0, max_size=16))
    def test_corrupting_after_the_reduce_keeps_the_finding(tmp_path_factory, index, junk):
        data = op.call("os", "system", "id")
        cut = data.rindex(b"R") + 1 + index
        path = tmp_path_factory.mktemp("fuzz")
        result = scan_bytes(path, data[:cut] + junk)
        assert result.verdict is Verdict.MALICIOUS


# -- sniffing by content, not by name -------------------------------------------------------

@pytest.mark.parametrize("name", ["model.txt", "data.data", "weights.th", "table.tsv.pkl", "noext", "README.md"])
@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_pickle_is_sniffed_whatever_its_name(tmp_path, name, protocol):
    result = scan_bytes(tmp_path, _os_system_pickle(protocol), name)
    assert result.format == "pickle"
    assert result.verdict is Verdict.MALICIOUS


@pytest.mark.parametrize("name", ["notes.txt", "noext"])
def test_benign_protocol_0_pickle_is_sniffed_by_trial_parse(tmp_path, name):
    data = pickle.dumps({"a": [1, 2, "x"], "b": (3.5, None)}, protocol=0)
    result = scan_bytes(tmp_path, data, name)
    assert result.format == "pickle"
    assert result.verdict is Verdict.CLEAN


def test_plain_text_is_not_a_pickle(tmp_path):
    result = scan_bytes(tmp_path, b"hello world\nthis is a readme\n", "notes.txt")
    assert result.format == "text" and result.verdict is Verdict.CLEAN
