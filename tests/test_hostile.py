"""Hostile input: every bomb and crafted shape is scanned by the command line in a fresh
process, within 5 seconds and 256 MB, and never judged clean."""
from __future__ import annotations

import io
import struct

import pytest

from hostile_inputs import CASES, GIB, PAYLOAD, scan_measured
from malhug.formats import analyse
from malhug.formats.base import ScanContext
from malhug.pickle import checks
from malhug.pickle.values import ListValue, TupleValue

SECONDS = 5.0  # CPU seconds of the scan (its workers included)
WALL_SECONDS = 30.0  # wall clock: a hang guard with room for a machine shared with other work
PEAK_MB = 256.0

# verdict, and a word the reason must name (the limit, or what is hostile about the shape)
EXPECTED = {
    "nested_zip_bomb": ("suspicious", "max_ratio"),
    "overlapping_zip_bomb": ("suspicious", "max_ratio"),
    "self_containing_zip": ("suspicious", "contains itself"),
    "sevenzip_bomb": ("suspicious", "max_ratio"),
    "gzip_bomb": ("suspicious", "max_ratio"),
    "billion_laughs_pickle": ("suspicious", "shared references expand"),
    "deep_list_pickle": ("suspicious", "nested 100000 deep"),
    "gguf_huge_array": ("suspicious", "gguf_claimed_size"),
    "hdf5_cyclic_group": ("suspicious", "cycle"),
}


def _reasons(file: dict) -> str:
    return " | ".join([f["message"] for f in file["findings"]] + [p["reason"] for p in file["problems"]])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_hostile_input_is_bounded_and_not_clean(name, tmp_path):
    builder, small, _ = CASES[name]
    path = builder(tmp_path, **small)
    measured = scan_measured(path, timeout=60)
    file = measured["file"]
    assert file is not None, measured["stderr"]
    verdict, reason = EXPECTED[name]
    assert file["verdict"] == verdict, _reasons(file)
    assert reason in _reasons(file)
    assert measured["cpu_seconds"] < SECONDS, measured
    assert measured["seconds"] < WALL_SECONDS, measured
    assert measured["peak_mb"] < PEAK_MB, measured


def test_payload_after_2gb_of_sparse_bytes_is_found_in_little_memory(tmp_path):
    builder, small, _ = CASES["sparse_pickle_payload_at_end"]
    path = builder(tmp_path, **small)
    assert path.stat().st_size > 2 * GIB
    measured = scan_measured(path, timeout=60)
    file = measured["file"]
    assert file is not None, measured["stderr"]
    assert file["verdict"] == "malicious"
    assert any("os.system" in f["message"] for f in file["findings"])
    assert measured["cpu_seconds"] < SECONDS, measured
    assert measured["seconds"] < WALL_SECONDS, measured
    assert measured["peak_mb"] < 100, measured


# -- the pieces, in process ----------------------------------------------------------------

def _scan_bytes(data: bytes, name: str = "x.bin") -> ScanContext:
    ctx = ScanContext(name)
    analyse(io.BytesIO(data), ctx, None, name=name)
    return ctx


def test_many_members_each_with_a_problem_are_judged_in_linear_time():
    from hostile_inputs import _zip_with_deflated
    import zlib

    junk = zlib.compress(b"\x00\x01\x02" * 10)[2:-4]
    archive = _zip_with_deflated([(f"m{i}.bin", junk, 30) for i in range(20_000)])
    ctx = ScanContext("many.zip")
    analyse(io.BytesIO(archive), ctx, None, name="many.zip")
    assert len(ctx.members) == 20_001
    assert all(m.verdict.value == "inconclusive" for m in ctx.members)


def test_member_verdicts_count_only_what_is_inside_them():
    from malhug.findings import Finding, Severity

    ctx = ScanContext("f")
    ctx.add_problem("a:b", "broken")
    ctx.add_finding(Finding("r", Severity.HIGH, "c", "m", ctx.location("a:bc")))
    deep = ":".join(["x"] * 20)  # deeper than the indexed prefixes: matched one by one
    ctx.add_finding(Finding("r", Severity.MEDIUM, "c", "m", ctx.location(deep + ":y")))
    for key in ("a", "a:b", "a:bc", "a:b:c", "x", deep, deep + ":z", "", None):
        ctx.record_member(key, "t")
    verdicts = [m.verdict.value for m in ctx.members]
    assert verdicts == ["malicious", "inconclusive", "malicious", "clean", "suspicious", "suspicious",
                        "clean", "malicious", "malicious"]


def test_a_pile_of_deep_members_is_judged_in_bounded_work():
    """Member names full of ':' nest deeper than the indexed prefixes; thousands of them with a
    problem each are judged with their group, not each against all the others."""
    import time

    ctx = ScanContext("f")
    prefix = ":".join(["n"] * 20)
    for index in range(20_000):
        ctx.add_problem(f"{prefix}:{index}", "encrypted")
    started = time.process_time()
    for index in range(20_000):
        ctx.record_member(f"{prefix}:{index}", "t")
    assert time.process_time() - started < 10
    assert all(m.verdict.value == "inconclusive" for m in ctx.members)


def test_duplicate_regions_in_a_zip_count_towards_its_expansion():
    from hostile_inputs import overlapping_zip_bomb

    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = overlapping_zip_bomb(Path(folder), kernel_size=1 << 20, entries=400)
        ctx = _scan_bytes(path.read_bytes(), "o.zip")
    assert any("max_ratio" in p.reason for p in ctx.problems)
    assert any(f.rule == "hostile-shape" for f in ctx.findings)


def test_a_zip_of_ordinary_compressed_members_is_not_a_bomb():
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(4):
            archive.writestr(f"{i}.txt", "hello world\n" * 1000)
    ctx = _scan_bytes(buffer.getvalue(), "ok.zip")
    assert not ctx.problems and not ctx.findings


def test_shared_references_are_measured_once_per_value():
    leaf = ListValue([])
    levels = [leaf]
    for _ in range(60):
        levels.append(ListValue([levels[-1]] * 10))
    expanded, depth = checks._shape([levels[-1]])
    assert expanded >= 10 ** 18 and depth == 61
    cyclic = ListValue([])
    cyclic.items.append(cyclic)
    assert checks._shape([TupleValue((cyclic, cyclic))]) == (5, 2)


def test_a_pickle_nested_as_deep_as_pickle_dumps_can_write_is_clean():
    data = b"\x80\x02" + b"(" * 900 + b"l" * 900 + b"."
    ctx = _scan_bytes(data, "x.pkl")
    assert not ctx.findings and not ctx.problems


def test_pickle_payload_after_a_large_blob_in_a_stream_that_cannot_seek():
    class Forward(io.RawIOBase):
        def __init__(self, data):
            self._data = io.BytesIO(data)

        def readable(self):
            return True

        def readinto(self, buffer):
            chunk = self._data.read(len(buffer))
            buffer[:len(chunk)] = chunk
            return len(chunk)

    blob = 8 << 20
    data = b"\x80\x04\x8e" + struct.pack("<Q", blob) + bytes(blob) + b"0" + PAYLOAD
    ctx = ScanContext("x.pkl")
    analyse(io.BufferedReader(Forward(data)), ctx, None, name="x.pkl")
    assert any(f.rule == "pickle-dangerous-callable" for f in ctx.findings)
