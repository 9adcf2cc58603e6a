"""safetensors, Git LFS pointers, Python sources and notebooks, plain data files."""
import json
import struct

import numpy as np
import pytest
from safetensors.numpy import save_file

import malhug


def only(path):
    report = malhug.scan(path)
    assert len(report.files) == 1
    return report.files[0]


def test_safetensors_from_the_library_is_clean(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"weight": np.zeros((4, 4), dtype=np.float32)}, str(path), metadata={"format": "np"})
    result = only(path)
    assert result.format == "safetensors"
    assert str(result.verdict) == "clean"


def test_safetensors_with_broken_header_is_inconclusive(tmp_path):
    path = tmp_path / "model.safetensors"
    header = b'{"weight": {"dtype": "F32", "shape": [4], "data_offsets": [8, 0]}}'
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    result = only(path)
    assert str(result.verdict) == "inconclusive"
    assert "data_offsets" in result.problems[0].reason


def test_lfs_pointer_is_never_clean(tmp_path):
    path = tmp_path / "pytorch_model.bin"
    path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "a" * 64 + "\nsize 42\n")
    result = only(path)
    assert result.format == "lfs_pointer"
    assert str(result.verdict) == "inconclusive"
    assert "not downloaded" in result.problems[0].reason


def test_python_source_running_a_command_is_malicious(tmp_path):
    path = tmp_path / "loader.py"
    path.write_text("import subprocess as sp\nfrom os import system\n\nsystem('id')\nsp.check_output(['echo', 'hi'])\n")
    result = only(path)
    assert str(result.verdict) == "malicious"
    commands = sorted((f.location.line, f.category, f.rule) for f in result.findings)
    assert commands == [(4, "command_exec", "python-command-exec"), (5, "command_exec", "python-command-exec")]
    assert "`id` (os.system)" in result.findings[0].message


def test_python_source_reading_data_is_clean(tmp_path):
    path = tmp_path / "dataset.py"
    path.write_text("import csv, json, os\n\ndef rows(path):\n    with open(os.path.join(path, 'a.csv')) as f:\n"
                    "        yield from csv.reader(f)\n")
    assert str(only(path).verdict) == "clean"


def test_python_source_that_does_not_parse_is_inconclusive(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("print 'python 2'\n")
    result = only(path)
    assert str(result.verdict) == "inconclusive"
    assert "does not parse" in result.problems[0].reason


@pytest.mark.parametrize("cell, verdict", [
    (["import os\n", "os.system('id')\n"], "malicious"),
    (["!echo hi\n"], "suspicious"),
    (["import numpy as np\n", "x = np.zeros(3)\n"], "clean"),
])
def test_notebook_code_cells(tmp_path, cell, verdict):
    path = tmp_path / "demo.ipynb"
    path.write_text(json.dumps({"cells": [{"cell_type": "markdown", "source": ["# os.system('id')"]},
                                          {"cell_type": "code", "source": cell}], "nbformat": 4}))
    assert str(only(path).verdict) == verdict


def test_plain_text_and_images_are_clean(tmp_path):
    (tmp_path / "README.md").write_text("# a model card\n")
    (tmp_path / "pixel.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 32)
    report = malhug.scan(tmp_path)
    assert {str(f.verdict) for f in report.files} == {"clean"}


def test_unrecognised_binary_is_inconclusive(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(bytes(range(256)) * 4)
    result = only(path)
    assert str(result.verdict) == "inconclusive"
    assert "unrecognised" in result.problems[0].reason


def test_links_inside_are_scanned_links_leaving_are_reported(tmp_path):
    import os
    import pickle

    class Payload:
        def __reduce__(self):
            return (os.system, ("id",))

    repo = tmp_path / "models--acme--tiny"
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / "abc123").write_bytes(pickle.dumps(Payload()))
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "pytorch_model.bin").symlink_to(repo / "blobs" / "abc123")
    (snapshot / "missing.bin").symlink_to(repo / "blobs" / "nothing-here")
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("not part of the repository\n")
    (snapshot / "notes.txt").symlink_to(outside)
    report = malhug.scan(snapshot)
    verdicts = {os.path.basename(f.path): str(f.verdict) for f in report.files}
    assert verdicts == {"pytorch_model.bin": "malicious", "missing.bin": "inconclusive",
                        "notes.txt": "inconclusive"}
    leaving = [f for f in report.files if f.path.endswith("notes.txt")][0]
    assert "leaves the repository" in leaving.problems[0].reason


def test_a_reader_crash_makes_the_file_inconclusive_not_the_scan_fail(tmp_path, monkeypatch):
    from malhug import formats

    def explode(stream, ctx, member, depth):
        raise KeyError("boom")

    monkeypatch.setitem(formats._HANDLERS, "safetensors", explode)
    path = tmp_path / "model.safetensors"
    save_file({"w": np.zeros(2, dtype=np.float32)}, str(path))
    (tmp_path / "notes.txt").write_text("fine\n")
    report = malhug.scan(tmp_path)
    verdicts = {f.format: str(f.verdict) for f in report.files}
    assert verdicts["text"] == "clean"
    broken = [f for f in report.files if f.path.endswith(".safetensors")][0]
    assert str(broken.verdict) == "inconclusive"
    assert "internal error" in broken.problems[0].reason


def test_hashing_is_bounded_by_a_limit(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("x" * 100)
    assert malhug.scan(path).files[0].sha256 is not None
    assert malhug.scan(path, limits={"hash_max_bytes": 99}).files[0].sha256 is None


@pytest.mark.parametrize("name, source, fmt", [
    ("model.py", "class Model:\n    pass\n", "python"),
    ("notes.txt", "copy this\nfile over\n(and more\n", "text"),
])
def test_text_that_starts_like_a_protocol_0_opcode_is_not_a_pickle(tmp_path, name, source, fmt):
    path = tmp_path / name
    path.write_text(source)
    result = only(path)
    assert (result.format, str(result.verdict)) == (fmt, "clean")
