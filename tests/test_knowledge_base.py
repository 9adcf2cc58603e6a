"""The knowledge base (rules/callables.toml): every entry is exercised through a real scan."""
from __future__ import annotations

import fnmatch
import sys
from importlib import resources

import pytest

import opcodes as op
from opcodes import scan_bytes

from malhug.findings import Severity, Verdict
from malhug.rules import CATEGORIES, KnowledgeBase, knowledge_base

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_DATA = tomllib.loads(resources.files("malhug.rules").joinpath("callables.toml").read_text("utf-8"))
_DANGEROUS = _DATA["dangerous"]
_SAFE_NAMES = _DATA["safe"]["names"]
_SAFE_CLASSES = _DATA["safe"]["classes"]


def _concrete(pattern: str, filler: str = "x") -> str:
    """A name the pattern matches: each wildcard becomes a plain identifier part."""
    return pattern.replace("*", filler).replace("?", "x")


def _split(name: str) -> tuple[str, str]:
    module, _, attr = name.rpartition(".")
    return module, attr


def _matching_entries(name: str) -> list[dict]:
    kb = knowledge_base()
    return [e for e in _DANGEROUS if fnmatch.fnmatchcase(kb.unalias(name), e["match"])]


@pytest.mark.parametrize("entry", _DANGEROUS, ids=[e["match"] for e in _DANGEROUS])
def test_every_dangerous_entry_is_found(tmp_path, entry):
    name = _concrete(entry["match"])
    module, attr = _split(name)
    result = scan_bytes(tmp_path, op.call(module, attr, "id"))
    found = [f for f in result.findings if f.rule == "pickle-dangerous-callable" and f.location.member is None]
    assert found, (name, [f.message for f in result.findings])
    finding = found[0]
    expected = Severity.parse(entry["severity"])
    others = [e for e in _matching_entries(name) if e is not entry]
    if not any(Severity.parse(e["severity"]) > expected for e in others):
        assert finding.severity == expected
        if not any(Severity.parse(e["severity"]) == expected and e["category"] != entry["category"] for e in others):
            assert finding.category == entry["category"]
    else:
        assert finding.severity >= expected
    if finding.severity >= Severity.HIGH:
        assert result.verdict is Verdict.MALICIOUS
    elif finding.severity == Severity.MEDIUM:
        assert result.verdict is Verdict.SUSPICIOUS
    else:
        assert result.verdict is not Verdict.MALICIOUS


@pytest.mark.parametrize("entry", _DANGEROUS, ids=[e["match"] for e in _DANGEROUS])
def test_dangerous_entry_through_protocol_4_dotted_name(entry):
    name = _concrete(entry["match"])
    module, attr = _split(name)
    outcome = knowledge_base().classify("pathlib", f"{module}.{attr}")  # reached as an attribute chain
    assert outcome.kind == "dangerous"


def test_entries_are_well_formed():
    patterns = [e["match"] for e in _DANGEROUS]
    assert len(patterns) == len(set(patterns)), "duplicate dangerous entries"
    for entry in _DANGEROUS:
        assert entry["category"] in CATEGORIES
        Severity.parse(entry["severity"])
        assert entry["message"] and "\n" not in entry["message"]
        assert isinstance(entry.get("payload_arg", 0), int)
    assert len(_SAFE_NAMES) == len(set(_SAFE_NAMES)), "duplicate safe names"


def test_unknown_category_is_refused():
    with pytest.raises(ValueError):
        KnowledgeBase({"dangerous": [{"match": "a.b", "category": "nope", "severity": "high", "message": "m"}]})


def _safe_name_cases():
    kb = knowledge_base()
    cases = []
    for pattern in _SAFE_NAMES:
        name = _concrete(pattern, "Thing") if pattern.endswith("*") else _concrete(pattern)
        if "." not in name:
            continue
        if kb.dangerous_rule([name]) is None:
            cases.append(name)
    return cases


@pytest.mark.parametrize("name", _safe_name_cases())
def test_every_safe_name_is_not_flagged(tmp_path, name):
    module, attr = _split(name)
    data = op.global_(module, attr) + op.mark() + op.tuple_() + op.reduce() + op.stop()
    result = scan_bytes(tmp_path, data)
    assert not result.findings, [f.message for f in result.findings]
    assert result.verdict is Verdict.CLEAN


@pytest.mark.parametrize("pattern", _SAFE_CLASSES)
def test_every_safe_class_glob_admits_capwords_classes(tmp_path, pattern):
    name = _concrete(pattern, "somepkg.SomeModel")
    module, attr = _split(name)
    result = scan_bytes(tmp_path, op.proto(2) + op.global_(module, attr) + op.empty_tuple() + op.newobj() + op.stop())
    assert result.verdict is Verdict.CLEAN, [f.message for f in result.findings]


@pytest.mark.parametrize("pattern", _SAFE_CLASSES)
def test_safe_class_glob_does_not_admit_functions(pattern):
    name = _concrete(pattern, "somepkg.some_function")
    module, attr = _split(name)
    assert knowledge_base().classify(module, attr).kind != "safe"


@pytest.mark.parametrize("module,name", [
    ("mymodule", "helper"), ("__main__", "MyClass"), ("__main__", "helper"), ("evil_pkg.sub", "Run"),
    ("notsklearn", "Model"),
])
def test_unknown_globals_are_suspicious(tmp_path, module, name):
    result = scan_bytes(tmp_path, op.call(module, name))
    assert result.verdict is Verdict.SUSPICIOUS
    assert [f.rule for f in result.findings] == ["pickle-unknown-global"]
    assert result.findings[0].category == "unknown_global"


@pytest.mark.parametrize("module,name", [
    ("torch.hub", "load"),
    ("torch.hub", "Loader"),
    ("numpy.testing._private.utils", "runstring"),
    ("numpy.testing", "Tester"),
    ("collections", "Popen"),
    ("torch.nn.functional", "eval"),
    ("sklearn.utils", "Popen"),
    ("torch", "load"),
    ("torch.serialization", "load"),
    ("pathlib", "Path.write_text"),
    ("pathlib", "PosixPath.unlink"),
])
def test_dangerous_name_wins_over_safe_glob(tmp_path, module, name):
    assert knowledge_base().classify(module, name).kind == "dangerous"
    result = scan_bytes(tmp_path, op.call_stack_global(module, name, "id"))
    assert any(f.rule == "pickle-dangerous-callable" for f in result.findings)
    assert result.verdict in (Verdict.MALICIOUS, Verdict.SUSPICIOUS)


def test_alias_prefixes():
    kb = knowledge_base()
    assert kb.unalias("posix.system") == "os.system"
    assert kb.unalias("numpy._core.multiarray._reconstruct") == "numpy.core.multiarray._reconstruct"
    assert kb.unalias("posixpath.join") == "posixpath.join"  # prefix match is by dotted part
    assert kb.classify("numpy._core.multiarray", "_reconstruct").kind == "safe"


def test_classify_full_dotted_name_without_module_split():
    kb = knowledge_base()
    assert kb.classify("os.system").kind == "dangerous"
    assert kb.classify("collections.OrderedDict").kind == "safe"


def test_added_safe_entry_seed_sequence_unpickler():
    assert knowledge_base().classify("numpy.random.bit_generator", "__pyx_unpickle_SeedSequence").kind == "safe"
    # the Cython helper of other classes is not admitted by it
    assert knowledge_base().classify("numpy.random.bit_generator", "__pyx_unpickle_Other").kind == "unknown"


def test_indexed_glob_lookup_agrees_with_plain_fnmatch_in_file_order():
    """The pattern index is only a speed-up: for every name, the first matching entry in file
    order wins, exactly as trying each pattern with fnmatch would."""
    import fnmatch

    from malhug.rules import _Patterns

    entries = [("os.*", "a"), ("*.system", "b"), ("pathlib.*Path.write_*", "c"), ("os.path.join", "d"),
               ("torch.*Storage", "e"), ("torch.cuda.*Storage", "f"), ("_codecs*", "g"), ("x?.y", "h"),
               ("subprocess.*", "i")]
    names = ["os.system", "os.path.join", "posix.system", "pathlib.PosixPath.write_text", "torch.FloatStorage",
             "torch.cuda.FloatStorage", "_codecs.encode", "xa.y", "xab.y", "subprocess.Popen", "os", "nothing",
             "pathlib.Path", "a.b.system"]
    patterns = _Patterns(entries)

    def plain(name):
        if name in dict(entries):
            return dict(entries)[name]
        return next((value for pattern, value in entries if fnmatch.fnmatchcase(name, pattern)), None)

    for name in names:
        assert patterns.lookup(name) == plain(name), name
