"""Compressed streams, tar and 7z: members are read as bounded streams and go back through analyse."""
from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import pickle
import tarfile
import zlib

import pytest

import malhug
from malhug.findings import Verdict
from malhug.formats.archives import gzip_inner_name
from malhug.formats.decompress import DecompressingStream
from malhug.limits import DEFAULT_LIMITS, LimitExceeded

BENIGN = pickle.dumps({"weights": [0.5, 1.5], "name": "tiny", "layers": (1, 2, 3)}, protocol=4)


class ShellPayload:
    def __reduce__(self):
        return (os.system, ("id",))


PAYLOAD = pickle.dumps(ShellPayload(), protocol=2)


def _scan(path, **options):
    return malhug.scan(str(path), **options).files[0]


def _shell_findings(result):
    return [f for f in result.findings if "system" in f.message]


def _lz4(data: bytes) -> bytes:
    lz4_frame = pytest.importorskip("lz4.frame")
    return lz4_frame.compress(data)


COMPRESSORS = {
    "gzip": lambda data: gzip.compress(data, mtime=0),
    "bz2": bz2.compress,
    "xz": lambda data: lzma.compress(data, format=lzma.FORMAT_XZ),
    "lzma": lambda data: lzma.compress(data, format=lzma.FORMAT_ALONE),
    "zlib": zlib.compress,
    "lz4": _lz4,
}


# -- single compressed streams ----------------------------------------------------------------

@pytest.mark.parametrize("codec", sorted(COMPRESSORS))
def test_compressed_benign_pickle_is_clean(tmp_path, codec):
    path = tmp_path / "data.bin"
    path.write_bytes(COMPRESSORS[codec](BENIGN))
    result = _scan(path)
    assert result.verdict == Verdict.CLEAN, (result.findings, result.problems)
    assert result.format == codec
    assert [m.name for m in result.members] == [f"<{codec}>", "(file)"]


@pytest.mark.parametrize("codec", sorted(COMPRESSORS))
def test_compressed_payload_is_found_in_the_member(tmp_path, codec):
    path = tmp_path / "data.bin"
    path.write_bytes(COMPRESSORS[codec](PAYLOAD))
    result = _scan(path)
    assert result.verdict == Verdict.MALICIOUS
    assert {f.location.member for f in _shell_findings(result)} == {f"<{codec}>"}


def test_gzip_member_is_named_from_its_header(tmp_path):
    path = tmp_path / "model.pkl.gz"
    with gzip.open(path, "wb") as target:
        target.write(PAYLOAD)
    result = _scan(path)
    assert result.verdict == Verdict.MALICIOUS
    assert {f.location.member for f in _shell_findings(result)} == {"model.pkl"}


def test_gzip_header_name_is_reduced_to_a_safe_base_name():
    header = b"\x1f\x8b\x08\x08\x00\x00\x00\x00\x00\x03../../etc/x:y\x07.pkl\x00"
    assert gzip_inner_name(header) == "xy.pkl"
    assert gzip_inner_name(b"\x1f\x8b\x08\x00" + bytes(6)) is None


def test_concatenated_gzip_members_are_all_read(tmp_path):
    path = tmp_path / "data.gz"
    path.write_bytes(gzip.compress(BENIGN, mtime=0) + gzip.compress(PAYLOAD, mtime=0))
    result = _scan(path)
    assert result.verdict == Verdict.MALICIOUS


def test_truncated_gzip_is_inconclusive(tmp_path):
    path = tmp_path / "data.gz"
    data = gzip.compress(BENIGN * 50, mtime=0)
    path.write_bytes(data[: len(data) // 2])
    result = _scan(path)
    assert result.verdict == Verdict.INCONCLUSIVE
    assert any("truncated" in p.reason for p in result.problems)


def test_truncated_gzip_still_reports_the_payload_before_the_damage(tmp_path):
    path = tmp_path / "data.gz"
    data = gzip.compress(PAYLOAD + os.urandom(200_000), mtime=0)
    path.write_bytes(data[:-5000])
    result = _scan(path)
    assert result.verdict == Verdict.MALICIOUS
    assert any("truncated" in p.reason for p in result.problems)


def test_corrupt_bz2_is_inconclusive(tmp_path):
    path = tmp_path / "data.bz2"
    data = bytearray(bz2.compress(BENIGN * 20))
    data[20:40] = bytes(20)
    path.write_bytes(bytes(data))
    result = _scan(path)
    assert result.verdict == Verdict.INCONCLUSIVE
    assert any("corrupt" in p.reason for p in result.problems)


def _zeros_gzip(path, megabytes: int) -> None:
    deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1 << 20)
    with open(path, "wb") as target:
        for _ in range(megabytes):
            target.write(deflate.compress(chunk))
        target.write(deflate.flush())


def test_gzip_bomb_is_stopped_by_ratio_or_member_size(tmp_path):
    path = tmp_path / "bomb.gz"
    _zeros_gzip(path, 200)
    result = _scan(path, limits={"ratio_floor": 16 << 20})
    assert result.verdict == Verdict.SUSPICIOUS
    assert any(f.rule == "hostile-shape" and "max_ratio" in f.message for f in result.findings)
    result = _scan(path, limits={"max_member_size": 32 << 20, "max_ratio": 10**6})
    assert result.verdict == Verdict.INCONCLUSIVE
    assert any("max_member_size" in p.reason for p in result.problems)


def test_bz2_bomb_is_a_hostile_shape(tmp_path):
    path = tmp_path / "bomb.bz2"
    path.write_bytes(bz2.compress(bytes(24 << 20)))
    result = _scan(path, limits={"ratio_floor": 16 << 20})
    assert result.verdict == Verdict.SUSPICIOUS
    assert any(f.rule == "hostile-shape" and "max_ratio" in f.message for f in result.findings)


def test_decompressing_stream_is_bounded_and_forward_only():
    data = bytes(range(256)) * 4000
    raw = io.BytesIO(zlib.compress(data))
    stream = DecompressingStream(raw, "zlib", DEFAULT_LIMITS.with_overrides(max_member_size=500_000))
    assert not stream.seekable()
    first = stream.read(100_000)
    assert first == data[: len(first)] and 0 < len(first) <= 100_000
    with pytest.raises(LimitExceeded):
        stream.drain()
    with pytest.raises(LimitExceeded):
        stream.read(10)


# -- tar ---------------------------------------------------------------------------------------

def _tar(path, members: dict, mode: str = "w:gz", links: dict | None = None) -> None:
    with tarfile.open(path, mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            archive.addfile(info)


def test_tar_gz_of_plain_data_is_clean(tmp_path):
    path = tmp_path / "bundle.tar.gz"
    _tar(path, {"model/data.pkl": BENIGN, "model/README.txt": b"plain text\n"})
    result = _scan(path)
    assert result.verdict == Verdict.CLEAN, (result.findings, result.problems)
    names = [m.name for m in result.members]
    assert "bundle.tar:model/data.pkl" in names


def test_payload_in_tar_gz_is_found_in_its_member(tmp_path):
    path = tmp_path / "bundle.tar.gz"
    _tar(path, {"ok.pkl": BENIGN, "nested/evil.pkl": PAYLOAD})
    result = _scan(path)
    assert result.verdict == Verdict.MALICIOUS
    assert {f.location.member for f in _shell_findings(result)} == {"bundle.tar:nested/evil.pkl"}


@pytest.mark.parametrize("mode", ["w", "w:bz2", "w:xz"])
def test_payload_in_other_tar_flavours_is_found(tmp_path, mode):
    path = tmp_path / "bundle.tar"
    _tar(path, {"evil.pkl": PAYLOAD}, mode=mode)
    result = _scan(path)
    assert result.verdict == Verdict.MALICIOUS
    assert all(f.location.member.endswith("evil.pkl") for f in _shell_findings(result))


def test_tar_links_are_listed_not_followed(tmp_path):
    path = tmp_path / "bundle.tar"
    _tar(path, {"data.pkl": BENIGN}, mode="w", links={"escape": "/etc/passwd"})
    result = _scan(path)
    assert result.verdict == Verdict.CLEAN
    link = next(m for m in result.members if m.name == "escape")
    assert not link.analysed and "symlink" in link.note


def test_tar_member_over_the_size_limit_is_not_read(tmp_path):
    path = tmp_path / "bundle.tar"
    _tar(path, {"big.bin": bytes(300_000), "evil.pkl": PAYLOAD}, mode="w")
    result = _scan(path, limits={"max_member_size": 100_000})
    assert result.verdict == Verdict.MALICIOUS
    assert any("max_member_size" in p.reason and p.location.member == "big.bin" for p in result.problems)


def test_huge_extended_tar_header_is_refused(tmp_path):
    path = tmp_path / "bundle.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo("data.pkl")
        info.size = len(BENIGN)
        info.pax_headers = {"comment": "x" * (2 << 20)}
        archive.addfile(info, io.BytesIO(BENIGN))
    result = _scan(path)
    assert result.verdict == Verdict.SUSPICIOUS
    assert any("tar_extended_header" in p.reason for p in result.problems)


def test_truncated_tar_is_inconclusive(tmp_path):
    path = tmp_path / "bundle.tar"
    _tar(path, {"data.pkl": BENIGN * 40}, mode="w")
    path.write_bytes(path.read_bytes()[:2000])
    assert _scan(path).verdict == Verdict.INCONCLUSIVE


def test_tar_inside_tar_is_followed(tmp_path):
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w:gz") as archive:
        info = tarfile.TarInfo("deep.pkl")
        info.size = len(PAYLOAD)
        archive.addfile(info, io.BytesIO(PAYLOAD))
    path = tmp_path / "outer.tar"
    _tar(path, {"inner.tgz": inner.getvalue()}, mode="w")
    result = _scan(path)
    assert result.verdict == Verdict.MALICIOUS
    assert {f.location.member for f in _shell_findings(result)} == {"inner.tgz:<gzip>:deep.pkl"}


# -- 7z ----------------------------------------------------------------------------------------

def _seven_zip(path, members: dict, **options) -> None:
    py7zr = pytest.importorskip("py7zr")
    with py7zr.SevenZipFile(path, "w", **options) as archive:
        for name, data in members.items():
            archive.writestr(data, name)


def test_7z_of_plain_data_is_clean(tmp_path):
    path = tmp_path / "bundle.7z"
    _seven_zip(path, {"data.pkl": BENIGN, "notes.txt": b"hello\n"})
    result = _scan(path)
    assert result.verdict == Verdict.CLEAN, (result.findings, result.problems)
    assert {"data.pkl", "notes.txt"} <= {m.name for m in result.members}


def test_payload_in_7z_is_found_in_its_member(tmp_path):
    path = tmp_path / "bundle.7z"
    _seven_zip(path, {"ok.pkl": BENIGN, "sub/evil.pkl": PAYLOAD})
    result = _scan(path)
    assert result.verdict == Verdict.MALICIOUS
    assert {f.location.member for f in _shell_findings(result)} == {"sub/evil.pkl"}


def test_7z_inside_gzip_is_followed(tmp_path):
    inner = tmp_path / "inner.7z"
    _seven_zip(inner, {"evil.pkl": PAYLOAD})
    path = tmp_path / "outer.gz"
    path.write_bytes(gzip.compress(inner.read_bytes(), mtime=0))
    result = _scan(path)
    assert result.verdict == Verdict.MALICIOUS
    assert {f.location.member for f in _shell_findings(result)} == {"<gzip>:evil.pkl"}


@pytest.mark.parametrize("header_encryption", [False, True])
def test_encrypted_7z_is_inconclusive(tmp_path, header_encryption):
    path = tmp_path / "locked.7z"
    try:
        _seven_zip(path, {"data.pkl": BENIGN}, password="secret", header_encryption=header_encryption)
    except Exception as exc:  # AES support is an optional py7zr extra
        pytest.skip(f"py7zr cannot write encrypted archives here: {exc}")
    result = _scan(path)
    assert result.verdict == Verdict.INCONCLUSIVE
    assert any("encrypted" in p.reason for p in result.problems)


def test_7z_member_is_refused_on_its_declared_size(tmp_path):
    path = tmp_path / "big.7z"
    _seven_zip(path, {"zeros.bin": bytes(2 << 20), "evil.pkl": PAYLOAD})
    result = _scan(path, limits={"max_member_size": 1 << 20})
    assert result.verdict == Verdict.MALICIOUS
    assert any("max_member_size" in p.reason and p.location.member == "zeros.bin" for p in result.problems)


def test_7z_bomb_is_refused_before_decompressing(tmp_path):
    path = tmp_path / "bomb.7z"
    _seven_zip(path, {"zeros.bin": bytes(40 << 20)})
    result = _scan(path, limits={"ratio_floor": 16 << 20})
    assert result.verdict == Verdict.SUSPICIOUS
    assert any("max_ratio" in p.reason for p in result.problems)


def test_broken_7z_is_inconclusive(tmp_path):
    path = tmp_path / "broken.7z"
    _seven_zip(path, {"data.pkl": BENIGN * 30})
    data = bytearray(path.read_bytes())
    data[40:60] = bytes(20)
    path.write_bytes(bytes(data))
    result = _scan(path)
    assert result.verdict == Verdict.INCONCLUSIVE
