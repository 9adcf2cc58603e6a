"""The verdict cache: content scanned once, re-scanned when anything that decides a verdict changes."""
from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import replace

import pytest

import opcodes as op

import malhug
from malhug import cache as cache_module
from malhug import scanner
from malhug.cache import ResultMemo, VerdictCache, default_cache_path, is_storable, rebase
from malhug.findings import FileResult, Finding, Location, MemberResult, Problem, Severity, Verdict
from malhug.limits import DEFAULT_LIMITS
from malhug.scanner import ScanOptions, scan_stream

EVIL = op.call("os", "system", "id")
BENIGN = op.proto(2) + op.empty_dict() + op.stop()


@pytest.fixture
def analysed(monkeypatch):
    """The names of the files the format readers were asked to read."""
    calls = []
    real = scanner.analyse

    def counting(stream, ctx, member, name="", **kwargs):
        calls.append(name)
        return real(stream, ctx, member, name=name, **kwargs)

    monkeypatch.setattr(scanner, "analyse", counting)
    return calls


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _without_paths(result: FileResult) -> dict:
    data = result.to_dict()
    data.pop("path")
    data.pop("seconds")
    for item in data["findings"] + data["problems"]:
        item["location"].pop("file")
    return data


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_second_scan_is_served_from_the_cache(tmp_path, analysed):
    db = tmp_path / "verdicts.sqlite"
    first_path = _write(tmp_path / "one" / "model.pkl", EVIL)
    second_path = _write(tmp_path / "two" / "model.pkl", EVIL)

    first = malhug.scan(first_path, cache=db).files[0]
    assert analysed == [str(first_path)]
    second = malhug.scan(second_path, cache=db).files[0]
    assert analysed == [str(first_path)]  # not read again

    assert first.verdict is Verdict.MALICIOUS
    assert _without_paths(first) == _without_paths(second)
    assert second.path == str(second_path)
    assert all(f.location.file == str(second_path) for f in second.findings)


def test_known_hash_is_looked_up_before_anything_is_read(tmp_path):
    db = VerdictCache(tmp_path / "v.sqlite")
    path = _write(tmp_path / "model.pkl", EVIL)
    options = ScanOptions(cache=db)
    stored = scanner.scan_file(path, options)
    assert stored.sha256 == _sha(EVIL)

    def must_not_open():
        raise AssertionError("opened although the content hash was known")

    served = scan_stream("hf://org/name@abc/model.pkl", must_not_open, ScanOptions(cache=db),
                         size=len(EVIL), sha256=_sha(EVIL))
    assert served.verdict is Verdict.MALICIOUS
    assert served.path == "hf://org/name@abc/model.pkl"


def test_a_claimed_hash_with_another_size_is_not_trusted(tmp_path, analysed):
    db = VerdictCache(tmp_path / "v.sqlite")
    scanner.scan_file(_write(tmp_path / "model.pkl", BENIGN), ScanOptions(cache=db))
    evil = _write(tmp_path / "other" / "model.pkl", EVIL)
    result = scan_stream(str(evil), lambda: open(evil, "rb"), ScanOptions(cache=db), size=len(EVIL),
                         sha256=_sha(BENIGN))
    assert result.verdict is Verdict.MALICIOUS


def test_same_content_at_two_paths_in_one_run_is_scanned_once(tmp_path, analysed):
    a = _write(tmp_path / "repo" / "a" / "model.pkl", EVIL)
    b = _write(tmp_path / "repo" / "b" / "model.pkl", EVIL)
    report = malhug.scan(tmp_path / "repo")  # no persistent cache at all
    assert len(analysed) == 1
    by_path = {f.path: f for f in report.files}
    assert set(by_path) == {str(a), str(b)}
    for path, result in by_path.items():
        assert result.verdict is Verdict.MALICIOUS
        assert {f.location.file for f in result.findings} == {path}


def test_the_file_name_is_part_of_the_key(tmp_path, analysed):
    """A text file is read as Python only when its name says so: content alone does not decide."""
    source = b"import os\nos.system('id')\n"
    as_text = _write(tmp_path / "repo" / "notes.txt", source)
    as_code = _write(tmp_path / "repo" / "setup.py", source)
    report = malhug.scan(tmp_path / "repo")
    assert sorted(analysed) == sorted([str(as_text), str(as_code)])
    verdicts = {f.path: f.verdict for f in report.files}
    assert verdicts[str(as_code)] is Verdict.MALICIOUS


def test_changed_rules_version_or_limits_miss(tmp_path, analysed, monkeypatch):
    db = tmp_path / "v.sqlite"
    path = _write(tmp_path / "model.pkl", EVIL)
    malhug.scan(path, cache=db)
    malhug.scan(path, cache=db)
    assert len(analysed) == 1

    with monkeypatch.context() as patch:
        patch.setattr(cache_module, "rules_digest", lambda: "0" * 64)
        malhug.scan(path, cache=db)
    assert len(analysed) == 2

    with monkeypatch.context() as patch:
        patch.setattr(cache_module, "__version__", "999.0.0")
        malhug.scan(path, cache=db)
    assert len(analysed) == 3

    malhug.scan(path, cache=db, limits={"max_depth": 3})
    assert len(analysed) == 4

    malhug.scan(path, cache=db)  # the original key is still there
    assert len(analysed) == 4


def test_rule_digest_covers_every_rule_file():
    from importlib import resources

    folder = resources.files("malhug.rules")
    assert any(entry.name.endswith(".toml") for entry in folder.iterdir())
    assert len(cache_module.rules_digest()) == 64
    assert cache_module.knowledge_digest(DEFAULT_LIMITS) != cache_module.knowledge_digest(
        DEFAULT_LIMITS.with_overrides(seconds_per_file=1.0))


def test_cache_false_bypasses(tmp_path, analysed):
    db = tmp_path / "v.sqlite"
    path = _write(tmp_path / "model.pkl", EVIL)
    malhug.scan(path, cache=db)
    malhug.scan(path, cache=False)
    malhug.scan(path)
    assert len(analysed) == 3


def test_transient_failures_are_not_kept(tmp_path, analysed):
    db = VerdictCache(tmp_path / "v.sqlite")
    options = ScanOptions(cache=db)

    class Flaky:
        def __init__(self):
            self.reads = 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def seekable(self):
            return False

        def read(self, size=-1):
            raise ConnectionResetError(104, "connection reset by peer")

    failed = scan_stream("hf://org/name/model.pkl", Flaky, options, size=len(EVIL), sha256=_sha(EVIL))
    assert failed.verdict is Verdict.INCONCLUSIVE
    assert db.count() == 0
    assert not is_storable(failed)

    path = _write(tmp_path / "model.pkl", EVIL)
    good = scan_stream(str(path), lambda: open(path, "rb"), options, size=len(EVIL), sha256=_sha(EVIL))
    assert good.verdict is Verdict.MALICIOUS
    assert db.count() == 1


def test_inconclusive_from_a_limit_is_kept(tmp_path):
    db = VerdictCache(tmp_path / "v.sqlite")
    path = _write(tmp_path / "model.pkl", EVIL)
    limits = DEFAULT_LIMITS.with_overrides(max_line=3)
    result = scanner.scan_file(path, ScanOptions(limits=limits, cache=db))
    assert result.verdict is Verdict.INCONCLUSIVE
    assert any("max_line" in p.reason for p in result.problems)
    assert db.get(result.sha256, limits, str(path)) is not None


def test_corrupted_database_is_rebuilt_never_trusted(tmp_path, analysed):
    db = tmp_path / "v.sqlite"
    db.write_bytes(b"this is not a database at all " * 200)
    path = _write(tmp_path / "model.pkl", EVIL)
    assert malhug.scan(path, cache=db).files[0].verdict is Verdict.MALICIOUS
    assert malhug.scan(path, cache=db).files[0].verdict is Verdict.MALICIOUS
    assert len(analysed) == 1  # rebuilt, and in use again


def test_a_damaged_row_is_a_miss(tmp_path, analysed):
    db = tmp_path / "v.sqlite"
    path = _write(tmp_path / "model.pkl", EVIL)
    malhug.scan(path, cache=db)
    with sqlite3.connect(db) as conn:
        (text,) = conn.execute("SELECT result FROM verdicts").fetchone()
        forged = text.replace('\\"malicious\\"', '\\"clean\\"')
        assert forged != text
        conn.execute("UPDATE verdicts SET result = ?", (forged,))
    assert malhug.scan(path, cache=db).files[0].verdict is Verdict.MALICIOUS
    assert len(analysed) == 2


def test_a_foreign_schema_is_replaced(tmp_path):
    db = tmp_path / "v.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE verdicts (something TEXT)")
    cache = VerdictCache(db)
    path = _write(tmp_path / "model.pkl", EVIL)
    result = scanner.scan_file(path, ScanOptions(cache=cache))
    assert result.verdict is Verdict.MALICIOUS
    assert not cache.disabled
    assert cache.get(result.sha256, DEFAULT_LIMITS, str(path)) is not None


def test_an_unusable_location_turns_the_cache_off(tmp_path):
    blocker = _write(tmp_path / "file", b"x")
    cache = VerdictCache(blocker / "sub" / "v.sqlite")  # a file where a folder should be
    path = _write(tmp_path / "model.pkl", EVIL)
    result = scanner.scan_file(path, ScanOptions(cache=cache))
    assert result.verdict is Verdict.MALICIOUS
    assert cache.disabled and cache.error


def test_concurrent_writers_from_two_processes(tmp_path):
    db = tmp_path / "v.sqlite"
    script = textwrap.dedent("""
        import sys
        from malhug.cache import VerdictCache
        from malhug.findings import FileResult, Verdict
        from malhug.limits import DEFAULT_LIMITS
        cache = VerdictCache(sys.argv[1])
        worker = sys.argv[2]
        for n in range(150):
            sha = f"{worker}{n:063x}"[:64]
            result = FileResult(f"/x/{worker}/{n}.bin", "pickle", Verdict.CLEAN, (), (), (), sha, n)
            assert cache.put(sha, DEFAULT_LIMITS, result), cache.error
            assert cache.get(sha, DEFAULT_LIMITS, f"{n}.bin") is not None
    """)
    workers = [subprocess.Popen([sys.executable, "-c", script, str(db), worker]) for worker in "ab"]
    assert [w.wait(timeout=120) for w in workers] == [0, 0]
    cache = VerdictCache(db)
    assert cache.count() == 300
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        sha = f"b{7:063x}"[:64]
        (text,) = conn.execute("SELECT result FROM verdicts WHERE key LIKE ?", (sha + ":%",)).fetchone()
    got = cache_module._decode(text)
    assert got is not None and got.size == 7 and got.sha256 == sha


def test_default_path_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("MALHUG_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_path() == tmp_path / "xdg" / "malhug" / "verdicts.sqlite"
    monkeypatch.setenv("MALHUG_CACHE_DIR", str(tmp_path / "mine"))
    assert default_cache_path() == tmp_path / "mine" / "verdicts.sqlite"
    monkeypatch.delenv("MALHUG_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_path() == tmp_path / "home" / ".cache" / "malhug" / "verdicts.sqlite"


def test_results_round_trip_through_dicts(tmp_path):
    location = Location("/a/model.pkl", "data.pkl", 12, None)
    result = FileResult(
        "/a/model.pkl", "torch_zip", Verdict.MALICIOUS,
        (Finding("rce", Severity.CRITICAL, "command_exec", "runs id", location, "os.system('id')"),),
        (Problem("limit max_depth exceeded", Location("/a/model.pkl", None, None, 3)),),
        (MemberResult("data.pkl", "pickle", Verdict.MALICIOUS, True, ""),),
        "ab" * 32, 99, 0.12345,
    )
    data = result.to_dict()
    again = FileResult.from_dict(json.loads(json.dumps(data)))
    assert again.to_dict() == data
    assert again.findings == result.findings and again.problems == result.problems
    assert again.members == result.members


def test_rebase_moves_every_location():
    old = Location("/a/model.pkl", "data.pkl", 3)
    result = FileResult("/a/model.pkl", "pickle", Verdict.MALICIOUS,
                        (Finding("rce", Severity.HIGH, "command_exec", "m", old),),
                        (Problem("p", Location("/a/model.pkl")),), (), "ab" * 32, 1)
    moved = rebase(result, "/b/model.pkl")
    assert moved.path == "/b/model.pkl"
    assert moved.findings[0].location == Location("/b/model.pkl", "data.pkl", 3)
    assert moved.problems[0].location.file == "/b/model.pkl"
    assert result.path == "/a/model.pkl"  # the stored one is unchanged


def test_memo_is_bounded():
    memo = ResultMemo(entries=2)
    result = FileResult("/x", "pickle", Verdict.CLEAN, (), (), (), "ab" * 32, 1)
    for key in "abc":
        memo.put(key, replace(result, path=key))
    assert len(memo) == 2 and memo.get("a") is None and memo.get("c").path == "c"


def test_scan_rejects_a_strange_cache():
    with pytest.raises(TypeError):
        malhug.scan("x", cache=42)
