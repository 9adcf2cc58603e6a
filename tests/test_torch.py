"""PyTorch checkpoints: benign twins written by torch itself, and tampered copies of them."""
from __future__ import annotations

import io
import pickle
import tarfile
import zipfile

import pytest

torch = pytest.importorskip("torch")

import malhug  # noqa: E402
from malhug.formats import analyse, handlers  # noqa: E402
from malhug.formats.base import ScanContext  # noqa: E402
from zip_patching import (  # noqa: E402
    RunsId, corrupt_central_directory, drop_central_record, set_field, without_central_directory,
)

PAYLOAD = pickle.dumps(RunsId(), protocol=2)


class TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(3, 2)

    def forward(self, x):
        return self.layer(x)


def scan_one(path, **options):
    return malhug.scan(str(path), **options).files[0]


def payload_members(result) -> set:
    return {f.location.member for f in result.findings if f.rule == "pickle-dangerous-callable"}


def member(result, name):
    return next(m for m in result.members if m.name == name)


def saved(obj, **kwargs) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, **kwargs)
    return buffer.getvalue()


def rebuild(data: bytes, replace=None, add=None, rename=None, compression=zipfile.ZIP_STORED) -> bytes:
    """A copy of a zip written by zipfile, with members replaced, added or renamed."""
    replace, add, rename = replace or {}, add or {}, rename or (lambda name: name)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", compression) as target:
        for info in source.infolist():
            target.writestr(rename(info.filename), replace.get(info.filename, source.read(info.filename)))
        for name, content in add.items():
            target.writestr(name, content)
    return out.getvalue()


@pytest.fixture
def checkpoint() -> bytes:
    return saved(torch.nn.Linear(3, 2).state_dict())


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


# -- benign twins -----------------------------------------------------------------------------
def test_state_dict_checkpoint_is_clean_and_storages_are_not_read(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(3, 2).state_dict(), path)
    result = scan_one(path)
    assert (str(result.verdict), result.format) == ("clean", "torch_zip")
    assert member(result, "model/data.pkl").analysed
    storages = member(result, "<tensor storages>")
    assert not storages.analysed and storages.note.startswith("2 tensor storages")


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_legacy_checkpoint_is_clean(tmp_path, protocol):
    path = tmp_path / "model.bin"
    state = {"linear": torch.nn.Linear(3, 2).state_dict(), "steps": torch.arange(40.0)}
    torch.save(state, path, _use_new_zipfile_serialization=False, pickle_protocol=protocol)
    result = scan_one(path)
    assert (str(result.verdict), result.format) == ("clean", "torch_legacy")


def test_whole_builtin_module_is_clean(tmp_path):
    path = tmp_path / "linear.pt"
    torch.save(torch.nn.Linear(3, 2), path)
    assert str(scan_one(path).verdict) == "clean"


def test_whole_custom_module_is_suspicious_not_malicious(tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(TinyNet(), path)
    result = scan_one(path)
    assert str(result.verdict) == "suspicious"
    assert any("TinyNet" in f.message for f in result.findings)


def test_any_top_folder_name_is_a_checkpoint(tmp_path, checkpoint):
    renamed = rebuild(checkpoint, rename=lambda name: name.replace("archive/", "my-weights/", 1))
    result = scan_one(write(tmp_path, "weights.bin", renamed))
    assert (str(result.verdict), result.format) == ("clean", "torch_zip")
    assert not member(result, "<tensor storages>").analysed


@pytest.mark.parametrize("make", [torch.jit.script, lambda m: torch.jit.trace(m, torch.zeros(1, 3))],
                         ids=["script", "trace"])
def test_torchscript_archive_is_not_malicious(tmp_path, make):
    path = tmp_path / "scripted.pt"
    torch.jit.save(make(torch.nn.Linear(3, 2)), str(path))
    result = scan_one(path)
    assert result.format == "torchscript"
    assert str(result.verdict) == "clean", [f.message for f in result.findings]
    assert any(m.name.endswith(".py") and m.format == "torchscript_code" for m in result.members)
    assert not member(result, "<tensor storages>").analysed


class CountingStream:
    """A file seen through read/seek, counting the bytes actually read."""

    def __init__(self, stream):
        self._stream = stream
        self.bytes_read = 0

    def read(self, n=-1):
        data = self._stream.read(n)
        self.bytes_read += len(data)
        return data

    def seek(self, *args):
        return self._stream.seek(*args)

    def tell(self):
        return self._stream.tell()

    def seekable(self):
        return True


def test_large_tensor_data_is_never_read(tmp_path):
    path = tmp_path / "big.pt"
    torch.save({"weight": torch.zeros(50_000_000)}, path)  # 200 MB of storage
    ctx = ScanContext(str(path))
    with open(path, "rb") as raw:
        counting = CountingStream(raw)
        fmt = analyse(counting, ctx, None, name=str(path))
    assert fmt == "torch_zip"
    assert not ctx.findings and not ctx.problems
    assert counting.bytes_read < 1024 * 1024
    assert "200000000 bytes" in next(m.note for m in ctx.members if m.name == "<tensor storages>")


# -- tampered checkpoints -----------------------------------------------------------------------
def test_payload_written_by_torch_save(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(3), "extra": RunsId()}, path)
    result = scan_one(path)
    assert str(result.verdict) == "malicious"
    assert payload_members(result) == {"evil/data.pkl"}


def test_data_pkl_replaced_by_payload(tmp_path, checkpoint):
    result = scan_one(write(tmp_path, "model.pt", rebuild(checkpoint, replace={"archive/data.pkl": PAYLOAD})))
    assert str(result.verdict) == "malicious"
    assert payload_members(result) == {"archive/data.pkl"}


def test_payload_in_a_second_pickle_member(tmp_path, checkpoint):
    result = scan_one(write(tmp_path, "model.pt", rebuild(checkpoint, add={"archive/extra.pkl": PAYLOAD})))
    assert str(result.verdict) == "malicious"
    assert payload_members(result) == {"archive/extra.pkl"}


def test_payload_in_a_deflated_member(tmp_path, checkpoint):
    data = rebuild(checkpoint, replace={"archive/data.pkl": PAYLOAD}, compression=zipfile.ZIP_DEFLATED)
    result = scan_one(write(tmp_path, "model.pt", data))
    assert payload_members(result) == {"archive/data.pkl"}


@pytest.mark.parametrize("bits", [0x1, 0x20, 0x40])
def test_odd_flag_bits_on_a_plain_payload(tmp_path, checkpoint, bits):
    data = rebuild(checkpoint, replace={"archive/data.pkl": PAYLOAD})
    data = set_field(data, "archive/data.pkl", "flags", bits, or_bits=True)
    result = scan_one(write(tmp_path, "model.pt", data))
    assert str(result.verdict) == "malicious"
    assert payload_members(result) == {"archive/data.pkl"}


def test_bad_crc_is_ignored_like_torch_does(tmp_path, checkpoint):
    data = rebuild(checkpoint, replace={"archive/data.pkl": PAYLOAD})
    data = set_field(data, "archive/data.pkl", "crc", 0xDEADBEEF)
    result = scan_one(write(tmp_path, "model.pt", data))
    assert payload_members(result) == {"archive/data.pkl"}


@pytest.mark.parametrize("breakage", [without_central_directory, corrupt_central_directory])
def test_broken_central_directory_still_finds_the_payload(tmp_path, breakage):
    # torch writes data descriptors: local headers carry no sizes, so this walks descriptors
    data = breakage(saved({"weight": torch.zeros(1000), "extra": RunsId()}))
    result = scan_one(write(tmp_path, "model.pt", data))
    assert str(result.verdict) == "malicious"
    assert payload_members(result) == {"archive/data.pkl"}
    assert any("central directory" in p.reason for p in result.problems)
    assert not member(result, "<tensor storages>").analysed


def test_member_only_in_local_headers(tmp_path, checkpoint):
    data = drop_central_record(rebuild(checkpoint, add={"archive/extra.pkl": PAYLOAD}), "archive/extra.pkl")
    assert "archive/extra.pkl" not in zipfile.ZipFile(io.BytesIO(data)).namelist()
    result = scan_one(write(tmp_path, "model.pt", data))
    assert str(result.verdict) == "malicious"
    assert payload_members(result) == {"archive/extra.pkl"}
    assert any(f.rule == "zip-local-only-member" for f in result.findings)


def test_suffix_does_not_matter(tmp_path, checkpoint):
    data = rebuild(checkpoint, replace={"archive/data.pkl": PAYLOAD})
    result = scan_one(write(tmp_path, "pytorch_model.bin", data))
    assert (str(result.verdict), result.format) == ("malicious", "torch_zip")


def test_payload_in_torchscript_constants(tmp_path):
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(3, 2)), str(path))
    data = rebuild(path.read_bytes(), replace={"scripted/constants.pkl": PAYLOAD})
    result = scan_one(write(tmp_path, "evil.pt", data))
    assert (str(result.verdict), result.format) == ("malicious", "torchscript")
    assert payload_members(result) == {"scripted/constants.pkl"}


@pytest.mark.parametrize("injected, rule, category", [
    ("import os\n", "torchscript-import", "code_exec"),
    ("os.system('id')\n", "torchscript-command-exec", "command_exec"),
    ("torch.ops.load_library('/tmp/ops.so')\n", "torchscript-command-exec", "command_exec"),
])
def test_code_added_to_torchscript_sources_is_found(tmp_path, injected, rule, category):
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(3, 2)), str(path))
    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if n.endswith("/code/__torch__/torch/nn/modules/linear.py"))
        source = archive.read(name)
    data = rebuild(path.read_bytes(), replace={name: injected.encode() + source})
    result = scan_one(write(tmp_path, "evil.pt", data))
    found = [f for f in result.findings if f.rule == rule]
    assert found and found[0].category == category and found[0].location.member == name
    assert found[0].severity >= malhug.Severity.MEDIUM


def test_legacy_checkpoint_with_payload_in_the_main_pickle(tmp_path):
    path = tmp_path / "legacy.bin"
    torch.save({"weight": torch.zeros(1000), "extra": RunsId()}, path, _use_new_zipfile_serialization=False)
    result = scan_one(path)
    assert (str(result.verdict), result.format) == ("malicious", "torch_legacy")
    assert payload_members(result) == {None}


def test_checkpoint_nested_in_a_zip(tmp_path):
    evil = saved({"weight": torch.zeros(3), "extra": RunsId()})
    outer = io.BytesIO()
    with zipfile.ZipFile(outer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("models/model.pt", evil)
        archive.writestr("README.txt", "weights")
    result = scan_one(write(tmp_path, "bundle.zip", outer.getvalue()))
    assert str(result.verdict) == "malicious"
    assert payload_members(result) == {"models/model.pt:archive/data.pkl"}


@pytest.mark.skipif("tar" not in handlers(), reason="no tar handler registered")
def test_tar_based_legacy_checkpoint(tmp_path):
    path = tmp_path / "ancient.tar"
    members = {"sys_info": pickle.dumps({"protocol_version": 1000}, protocol=2),
               "pickle": PAYLOAD, "storages": pickle.dumps(0, protocol=2), "tensors": pickle.dumps(0, protocol=2)}
    with tarfile.open(path, "w") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    result = scan_one(path)
    assert str(result.verdict) == "malicious"
    assert payload_members(result) == {"pickle"}
