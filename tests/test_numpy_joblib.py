"""numpy .npy files and joblib dumps: benign twins made with the real libraries, and payloads."""
from __future__ import annotations

import io
import os
import pickle
import struct

import pytest

import malhug
from malhug.findings import Verdict

np = pytest.importorskip("numpy")
joblib = pytest.importorskip("joblib")

JOBLIB_COMPRESSIONS = [0, 3, "gzip", "bz2", "xz", "lzma", "lz4"]
COMPRESSED_MEMBER = {0: None, 3: "<zlib>", "gzip": "<gzip>", "bz2": "<bz2>", "xz": "<xz>",
                     "lzma": "<lzma>", "lz4": "<lz4>"}


class ShellPayload:
    """Loading this runs `id`: the classic pickle payload."""

    def __reduce__(self):
        return (os.system, ("id",))


def _compress_arg(compression):
    return compression if isinstance(compression, int) else (compression, 3)


def _scan(path, **options):
    return malhug.scan(str(path), **options).files[0]


def _assert_clean(result):
    assert result.verdict == Verdict.CLEAN, (result.findings, result.problems)


def _assert_runs_shell(result, member):
    assert result.verdict == Verdict.MALICIOUS, (result.findings, result.problems)
    hits = [f for f in result.findings if "system" in f.message]
    assert hits, result.findings
    assert all(f.location.member == member for f in hits)


def _sklearn_models():
    sklearn = pytest.importorskip("sklearn")  # noqa: F841
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    features = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.5, 0.2], [0.9, 0.1]])
    labels = [0, 1, 1, 0, 0, 1]
    return {
        "logistic": LogisticRegression().fit(features, labels),
        "forest": RandomForestClassifier(n_estimators=3, random_state=0).fit(features, labels),
    }


def _benign_objects():
    return {
        "floats": np.linspace(0.0, 1.0, 257),
        "ints": np.arange(33, dtype=np.int32).reshape(3, 11),
        "fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
        "scalar": np.array(3.5),
        "empty": np.zeros((0, 4)),
        "strings": np.array(["a", "bcd"]),
        "times": np.arange(3).astype("M8[ns]"),
        "records": np.zeros(4, dtype=[("x", "<f8"), ("name", "U3"), ("pair", "<i2", (2,))]),
        "objects": np.array(["text", 7, None, (1, 2)], dtype=object),
        "tail": [1, 2, 3],
    }


# -- joblib ------------------------------------------------------------------------------------

@pytest.mark.parametrize("compression", JOBLIB_COMPRESSIONS)
def test_joblib_arrays_and_models_are_clean(tmp_path, compression):
    path = tmp_path / "model.joblib"
    joblib.dump({**_benign_objects(), **_sklearn_models()}, path, compress=_compress_arg(compression))
    result = _scan(path)
    _assert_clean(result)
    if compression:
        assert result.format == COMPRESSED_MEMBER[compression].strip("<>")


@pytest.mark.parametrize("compression", [c for c in JOBLIB_COMPRESSIONS if c])
def test_highly_compressible_zero_arrays_are_clean(tmp_path, compression):
    # 64 MB of zeros shrinks more than 1000 times with every codec: ordinary, not a bomb.
    path = tmp_path / "sparse.joblib"
    joblib.dump({"mask": np.zeros(8 << 20), "bias": np.ones(3)}, path, compress=_compress_arg(compression))
    _assert_clean(_scan(path))


@pytest.mark.parametrize("compression", JOBLIB_COMPRESSIONS)
def test_payload_after_an_array_is_found(tmp_path, compression):
    path = tmp_path / "model.joblib"
    joblib.dump({"weights": np.arange(5000.0), "hook": ShellPayload()}, path,
                compress=_compress_arg(compression))
    _assert_runs_shell(_scan(path), COMPRESSED_MEMBER[compression])


@pytest.mark.parametrize("compression", [0, "gzip"])
def test_payload_inside_an_object_array_is_found(tmp_path, compression):
    path = tmp_path / "model.joblib"
    objects = np.array(["fine", ShellPayload(), 3], dtype=object)
    joblib.dump({"before": np.ones(10), "objects": objects, "after": np.zeros(3)}, path,
                compress=_compress_arg(compression))
    _assert_runs_shell(_scan(path), COMPRESSED_MEMBER[compression])


def test_payload_after_an_object_array_is_found(tmp_path):
    path = tmp_path / "model.joblib"
    joblib.dump({"objects": np.array([1, "two"], dtype=object), "hook": ShellPayload()}, path)
    _assert_runs_shell(_scan(path), None)


def test_payload_after_a_structured_object_array_is_found(tmp_path):
    path = tmp_path / "model.joblib"
    records = np.zeros(2, dtype=[("x", "<f8"), ("obj", "O")])
    records["obj"] = ["a", ShellPayload()]
    joblib.dump({"records": records, "after": np.ones(4)}, path)
    _assert_runs_shell(_scan(path), None)


@pytest.mark.parametrize("protocol", [0, 2, 3, 5])
def test_older_pickle_protocols_are_read(tmp_path, protocol):
    path = tmp_path / "model.joblib"
    joblib.dump({"weights": np.arange(100.0), "hook": ShellPayload()}, path, protocol=protocol)
    _assert_runs_shell(_scan(path), None)
    joblib.dump({"weights": np.arange(100.0), "ids": np.arange(9)}, path, protocol=protocol)
    _assert_clean(_scan(path))


class _NoTell(io.RawIOBase):
    """A write-only file: joblib then writes arrays without alignment padding."""

    def __init__(self, target):
        self._target = target

    def writable(self):
        return True

    def write(self, data):
        return self._target.write(data)

    def tell(self):
        raise io.UnsupportedOperation("tell")


def test_arrays_written_without_alignment_are_read(tmp_path):
    path = tmp_path / "model.joblib"
    with open(path, "wb") as target:
        joblib.dump({"weights": np.arange(77.0), "hook": ShellPayload()}, _NoTell(target))
    _assert_runs_shell(_scan(path), None)


def test_layout_of_joblib_before_alignment_is_read(tmp_path, monkeypatch):
    from joblib import numpy_pickle

    original = numpy_pickle.NumpyPickler._create_array_wrapper

    def without_alignment(self, array):  # what joblib < 1.2 wrote: no alignment attribute at all
        wrapper = original(self, array)
        del wrapper.numpy_array_alignment_bytes
        return wrapper

    monkeypatch.setattr(numpy_pickle.NumpyPickler, "_create_array_wrapper", without_alignment)
    path = tmp_path / "model.joblib"
    joblib.dump({"weights": np.arange(50.0), "more": np.arange(3, dtype=np.uint8),
                 "hook": ShellPayload()}, path)
    _assert_runs_shell(_scan(path), None)


def test_unsizable_array_wrapper_is_inconclusive(tmp_path):
    stream = (
        b"\x80\x02cjoblib.numpy_pickle\nNumpyArrayWrapper\nq\x00)\x81q\x01}q\x02("
        b"X\x05\x00\x00\x00dtypeq\x03cnumpy\ndtype\nq\x04X\x05\x00\x00\x00weirdq\x05\x89\x88\x87q\x06Rq\x07"
        b"X\x05\x00\x00\x00shapeq\x08K\x03\x85q\tub."
    )
    path = tmp_path / "crafted.joblib"
    path.write_bytes(stream)
    result = _scan(path)
    assert result.verdict == Verdict.INCONCLUSIVE
    assert any("size" in p.reason for p in result.problems)


def test_truncated_joblib_array_is_inconclusive(tmp_path):
    path = tmp_path / "model.joblib"
    joblib.dump({"weights": np.arange(4000.0)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert _scan(path).verdict == Verdict.INCONCLUSIVE


# -- numpy .npy --------------------------------------------------------------------------------

@pytest.mark.parametrize("array", [
    np.linspace(0.0, 1.0, 1000),
    np.arange(24, dtype=">i4").reshape(2, 3, 4),
    np.zeros(3, dtype=[("x", "<f8"), ("y", "U4")]),
    np.array(["plain", "strings"]),
], ids=["floats", "ints", "records", "unicode"])
def test_plain_arrays_are_clean_without_reading_data(tmp_path, array):
    path = tmp_path / "array.npy"
    np.save(path, array)
    result = _scan(path)
    _assert_clean(result)
    assert result.format == "npy"


def test_object_array_of_plain_values_is_clean(tmp_path):
    path = tmp_path / "objects.npy"
    np.save(path, np.array(["text", 1, 2.5, None, ("a", 3)], dtype=object), allow_pickle=True)
    result = _scan(path)
    _assert_clean(result)
    assert result.format == "npy_object"


def test_object_array_with_payload_is_malicious(tmp_path):
    path = tmp_path / "objects.npy"
    np.save(path, np.array([1, ShellPayload()], dtype=object), allow_pickle=True)
    _assert_runs_shell(_scan(path), None)


def test_npy_is_found_by_content_not_name(tmp_path):
    path = tmp_path / "weights.data"
    with open(path, "wb") as target:
        np.save(target, np.array([ShellPayload()], dtype=object), allow_pickle=True)
    _assert_runs_shell(_scan(path), None)


def test_structured_dtype_with_object_field_is_read_as_pickle(tmp_path):
    path = tmp_path / "records.npy"
    records = np.zeros(2, dtype=[("x", "<f8"), ("obj", "O")])
    records["obj"] = ["fine", ShellPayload()]
    np.save(path, records, allow_pickle=True)
    _assert_runs_shell(_scan(path), None)


def _npy(header: bytes, version: int = 1, body: bytes = b"") -> bytes:
    length = struct.pack("<H" if version == 1 else "<I", len(header))
    return b"\x93NUMPY" + bytes([version, 0]) + length + header + body


@pytest.mark.parametrize("version", [2, 3])
def test_later_header_versions_are_read(tmp_path, version):
    header = b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }\n"
    path = tmp_path / "v.npy"
    path.write_bytes(_npy(header, version, pickle.dumps(ShellPayload(), protocol=2)))
    _assert_runs_shell(_scan(path), None)


@pytest.mark.parametrize("descr", ["'object'", "'f8,O'", "[('a', '<f8'), ('b', [('c', '|O')])]", "('|O', (2,))"])
def test_every_spelling_of_an_object_dtype_is_read_as_pickle(tmp_path, descr):
    header = b"{'descr': " + descr.encode() + b", 'fortran_order': False, 'shape': (1,)}\n"
    path = tmp_path / "spelled.npy"
    path.write_bytes(_npy(header, 1, pickle.dumps(ShellPayload(), protocol=2)))
    _assert_runs_shell(_scan(path), None)


@pytest.mark.parametrize("header", [
    b"{'descr': '<f8', 'fortran_order': False}",
    b"{'descr': '<f8', 'fortran_order': False, 'shape': (2,), 'extra': 1}",
    b"{'descr': __import__('os'), 'fortran_order': False, 'shape': (2,)}",
    b"{'descr': 'mystery', 'fortran_order': False, 'shape': (2,)}",
    b"{'descr': '<f8', 'fortran_order': 'no', 'shape': (2,)}",
    b"not a dict",
], ids=["missing-key", "extra-key", "call", "unknown-dtype", "bad-order", "garbage"])
def test_malformed_header_is_inconclusive(tmp_path, header):
    path = tmp_path / "bad.npy"
    path.write_bytes(_npy(header + b"\n"))
    result = _scan(path)
    assert result.verdict == Verdict.INCONCLUSIVE
    assert any("npy header" in p.reason for p in result.problems)


def test_header_cut_short_is_inconclusive(tmp_path):
    path = tmp_path / "cut.npy"
    path.write_bytes(_npy(b"{'descr': '<f8', 'fortran_order': False, 'shape': (2,)}\n")[:30])
    assert _scan(path).verdict == Verdict.INCONCLUSIVE


def test_oversized_header_is_not_parsed(tmp_path):
    path = tmp_path / "huge.npy"
    padding = b" " * (2 << 20)
    path.write_bytes(_npy(b"{'descr': '<f8', 'fortran_order': False, 'shape': (2,)}" + padding + b"\n", 2))
    result = _scan(path)
    assert result.verdict == Verdict.INCONCLUSIVE
    assert any("kept_bytes" in p.reason for p in result.problems)


def test_a_header_written_by_python_2_is_read(tmp_path):
    header = b"{'descr': '<i8', 'fortran_order': False, 'shape': (2L, 2L), }"
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    path = tmp_path / "win64python2.npy"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + bytes(32))
    result = _scan(path)
    assert (result.format, str(result.verdict)) == ("npy", "clean")


def test_numpy_matrix_pickles_are_ordinary(tmp_path):
    import pickle

    path = tmp_path / "matrix.pkl"
    path.write_bytes(pickle.dumps({"m": np.matrix([[1, 2], [3, 4]])}))
    assert str(_scan(path).verdict) == "clean"


# -- joblib before 0.10: "ZF" + hex length padded with spaces + zlib ----------------------------
def _zf(payload: bytes, python2: bool = False) -> bytes:
    """A file as joblib 0.8/0.9 wrote it (Python 2 padded the length one byte wider)."""
    import zlib

    width = 20 if python2 else 19
    return b"ZF" + hex(len(payload)).encode().ljust(width) + zlib.compress(payload)


@pytest.mark.parametrize("python2", [False, True])
def test_old_joblib_compressed_pickle_with_a_payload_is_malicious(tmp_path, python2):
    path = tmp_path / "model_old.pkl"
    path.write_bytes(_zf(pickle.dumps(ShellPayload(), protocol=2), python2))
    result = _scan(path)
    assert result.format == "joblib_zf"
    assert result.verdict == Verdict.MALICIOUS
    assert any(f.location.member == "<joblib-zlib>" for f in result.findings)


@pytest.mark.parametrize("python2", [False, True])
def test_old_joblib_compressed_pickle_of_arrays_is_clean(tmp_path, python2):
    path = tmp_path / "model_old.pkl"
    path.write_bytes(_zf(pickle.dumps({"coef": np.arange(6.0).reshape(2, 3), "classes": [0, 1]}, protocol=2),
                         python2))
    result = _scan(path)
    assert result.format == "joblib_zf"
    _assert_clean(result)


def test_old_joblib_array_data_is_data_but_a_pickle_inside_is_read(tmp_path):
    data = tmp_path / "cache.pkl_01.npy.z"
    data.write_bytes(_zf(np.arange(32.0).tobytes()))
    _assert_clean(_scan(data))
    disguised = tmp_path / "cache.pkl_02.npy.z"
    disguised.write_bytes(_zf(pickle.dumps(ShellPayload(), protocol=2)))
    assert _scan(disguised).verdict == Verdict.MALICIOUS
    not_array = tmp_path / "cache.pkl"  # raw bytes are data only in an array's file
    not_array.write_bytes(_zf(np.arange(32.0).tobytes()))
    assert _scan(not_array).verdict == Verdict.INCONCLUSIVE


def test_old_joblib_file_cut_short_is_inconclusive(tmp_path):
    path = tmp_path / "model_old.pkl"
    path.write_bytes(_zf(pickle.dumps(list(range(1000)), protocol=2))[:40])
    assert _scan(path).verdict == Verdict.INCONCLUSIVE
