"""Generic zip archives: tolerant reading, nesting, hidden members, limits."""
from __future__ import annotations

import io
import pickle
import zipfile

import pytest

import malhug
from malhug.formats.zipreader import list_entries
from malhug.formats.sniff import sniff
from zip_patching import RunsId, drop_central_record, set_field, without_central_directory

PAYLOAD = pickle.dumps(RunsId(), protocol=2)
NOT_A_FORMAT = bytes((i * 73 + 0xA7) % 256 for i in range(48))  # stands in for ciphertext


def make_zip(members: dict, compression=zipfile.ZIP_STORED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return out.getvalue()


def streamed_zip(members: dict, compression=zipfile.ZIP_DEFLATED) -> bytes:
    """Written to a non-seekable stream: local headers carry no sizes, data descriptors do."""

    class ForwardOnly(io.RawIOBase):
        def __init__(self):
            self.buffer = io.BytesIO()

        def writable(self):
            return True

        def write(self, data):
            return self.buffer.write(data)

    target = ForwardOnly()
    with zipfile.ZipFile(target, "w", compression) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return target.buffer.getvalue()


def scan_bytes(tmp_path, data: bytes, name="archive.zip", **options):
    path = tmp_path / name
    path.write_bytes(data)
    return malhug.scan(str(path), **options).files[0]


def payload_members(result) -> set:
    return {f.location.member for f in result.findings if f.rule == "pickle-dangerous-callable"}


def reasons(result) -> str:
    return " | ".join(p.reason for p in result.problems)


def test_not_a_format_fixture_sniffs_as_nothing():
    assert sniff(NOT_A_FORMAT, "x") == "unknown"


def test_benign_zip_is_clean(tmp_path):
    result = scan_bytes(tmp_path, make_zip({"readme.txt": "hello", "config.json": "{}"}, zipfile.ZIP_DEFLATED))
    assert (str(result.verdict), result.format) == ("clean", "zip")


def test_empty_zip_is_clean(tmp_path):
    assert str(scan_bytes(tmp_path, make_zip({})).verdict) == "clean"


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2,
                                         zipfile.ZIP_LZMA])
def test_payload_found_whatever_the_compression(tmp_path, compression):
    result = scan_bytes(tmp_path, make_zip({"notes.txt": "x", "model/config.pkl": PAYLOAD}, compression))
    assert str(result.verdict) == "malicious"
    assert payload_members(result) == {"model/config.pkl"}


def test_payload_found_by_content_not_name(tmp_path):
    result = scan_bytes(tmp_path, make_zip({"weights.txt": PAYLOAD}), name="model.bin")
    assert payload_members(result) == {"weights.txt"}


def test_nested_zips(tmp_path):
    inner = make_zip({"payload.pkl": PAYLOAD}, zipfile.ZIP_DEFLATED)
    middle = make_zip({"inner.zip": inner})
    outer = make_zip({"middle.zip": middle, "plain.txt": "x"}, zipfile.ZIP_DEFLATED)
    result = scan_bytes(tmp_path, outer)
    assert str(result.verdict) == "malicious"
    assert payload_members(result) == {"middle.zip:inner.zip:payload.pkl"}


def test_really_encrypted_member_is_inconclusive(tmp_path):
    data = set_field(make_zip({"secret.txt": NOT_A_FORMAT}), "secret.txt", "flags", 0x1, or_bits=True)
    result = scan_bytes(tmp_path, data)
    assert str(result.verdict) == "inconclusive"
    assert "encrypted member, cannot be read" in reasons(result)


def test_encrypted_and_compressed_member_is_inconclusive(tmp_path):
    data = set_field(make_zip({"secret.txt": NOT_A_FORMAT}), "secret.txt", "method", 8)
    data = set_field(data, "secret.txt", "flags", 0x1, or_bits=True)
    result = scan_bytes(tmp_path, data)
    assert str(result.verdict) == "inconclusive"
    assert "encrypted member" in reasons(result)


def test_unsupported_compression_is_inconclusive(tmp_path):
    data = set_field(make_zip({"model.pkl": PAYLOAD}), "model.pkl", "method", 93)
    result = scan_bytes(tmp_path, data)
    assert str(result.verdict) == "inconclusive"
    assert "compression method 93" in reasons(result)


def test_corrupt_deflate_data_is_reported(tmp_path):
    data = bytearray(make_zip({"notes.txt": "hello " * 1000}, zipfile.ZIP_DEFLATED))
    start = 30 + len("notes.txt")
    data[start:start + 8] = b"\xff" * 8
    result = scan_bytes(tmp_path, bytes(data))
    assert str(result.verdict) == "inconclusive"
    assert "compressed data broken" in reasons(result)


def test_member_names_are_only_labels(tmp_path):
    result = scan_bytes(tmp_path / "", make_zip({"../../escape.pkl": PAYLOAD, "/etc/evil.pkl": PAYLOAD}))
    assert payload_members(result) == {"../../escape.pkl", "/etc/evil.pkl"}
    assert not (tmp_path.parent.parent / "escape.pkl").exists()


def test_local_and_central_names_that_disagree(tmp_path):
    data = make_zip({"data.pkl": PAYLOAD})
    local = data.find(b"data.pkl")
    data = data[:local] + b"datap.kl" + data[local + 8:]
    result = scan_bytes(tmp_path, data)
    assert payload_members(result) == {"data.pkl"}
    assert any(f.rule == "zip-header-mismatch" for f in result.findings)


def test_member_hidden_from_the_central_directory(tmp_path):
    data = drop_central_record(make_zip({"a.txt": "x", "hidden.pkl": PAYLOAD, "b.txt": "y"}), "hidden.pkl")
    result = scan_bytes(tmp_path, data)
    assert str(result.verdict) == "malicious"
    assert payload_members(result) == {"hidden.pkl"}


def test_descriptor_only_zip_without_central_directory(tmp_path):
    data = without_central_directory(streamed_zip({"a.txt": "x" * 5000, "payload.pkl": PAYLOAD, "z.txt": "z"}))
    result = scan_bytes(tmp_path, data)
    assert str(result.verdict) == "malicious"
    assert payload_members(result) == {"payload.pkl"}
    assert {m.name for m in result.members} >= {"a.txt", "payload.pkl", "z.txt"}


def test_zip64_records_are_read(tmp_path):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        with archive.open("payload.pkl", "w", force_zip64=True) as member:
            member.write(PAYLOAD)
    entries = list_entries(io.BytesIO(out.getvalue())).entries
    assert [(e.name, e.compressed_size) for e in entries] == [("payload.pkl", len(PAYLOAD))]
    assert payload_members(scan_bytes(tmp_path, out.getvalue())) == {"payload.pkl"}


def _deflated_bomb_pickle(size: int) -> bytes:
    """A pickle holding `size` zero bytes: compresses about a thousand times."""
    return b"\x80\x04\x8e" + size.to_bytes(8, "little") + bytes(size) + b"."


def test_compression_ratio_beyond_the_limit_is_hostile(tmp_path):
    data = make_zip({"bomb.pkl": _deflated_bomb_pickle(32 * 1024 * 1024)}, zipfile.ZIP_DEFLATED)
    result = scan_bytes(tmp_path, data, limits={"max_ratio": 100, "ratio_floor": 16 << 20})
    assert str(result.verdict) == "suspicious"
    assert any(f.rule == "hostile-shape" and f.location.member == "bomb.pkl" for f in result.findings)


def test_member_size_limit(tmp_path):
    data = make_zip({"big.pkl": _deflated_bomb_pickle(4 * 1024 * 1024)}, zipfile.ZIP_DEFLATED)
    result = scan_bytes(tmp_path, data, limits={"max_member_size": 1024 * 1024})
    assert str(result.verdict) == "inconclusive"
    assert "max_member_size" in reasons(result)


def test_member_count_limit(tmp_path):
    result = scan_bytes(tmp_path, make_zip({f"f{i}.txt": "x" for i in range(20)}), limits={"max_members": 5})
    assert str(result.verdict) == "inconclusive"
    assert "max_members" in reasons(result)


def test_npz_layout(tmp_path):
    np = pytest.importorskip("numpy")
    path = tmp_path / "arrays.npz"
    np.savez(path, a=np.arange(3), b=np.zeros(2))
    assert malhug.scan(str(path)).files[0].format == "npz"


class CountingBytesIO(io.BytesIO):
    bytes_read = 0

    def read(self, n=-1):
        data = super().read(n)
        self.bytes_read += len(data)
        return data


def test_listing_members_does_not_read_their_data():
    stream = CountingBytesIO(make_zip({"big.bin": bytes(16 * 1024 * 1024), "payload.pkl": PAYLOAD}))
    entries = list_entries(stream).entries
    assert [e.name for e in entries] == ["big.bin", "payload.pkl"]
    assert stream.bytes_read < 128 * 1024


def test_end_record_lookalike_in_the_comment(tmp_path):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("payload.pkl", PAYLOAD)
        archive.comment = b"PK\x05\x06" + b"\xff" * 18
    result = scan_bytes(tmp_path, out.getvalue())
    assert payload_members(result) == {"payload.pkl"}
    assert not result.problems


def test_entries_sharing_data_are_read_once(tmp_path):
    data = make_zip({"a.pkl": PAYLOAD})
    start = data.find(b"PK\x01\x02")
    end = data.find(b"PK\x05\x06")
    copies = [data[start:end].replace(b"a.pkl", f"{i:05d}".encode()) for i in range(50)]
    eocd = bytearray(data[end:])
    eocd[8:12] = (51).to_bytes(2, "little") * 2
    eocd[12:16] = (len(copies[0]) * 51).to_bytes(4, "little")
    eocd[16:20] = start.to_bytes(4, "little")
    result = scan_bytes(tmp_path, data[:end] + b"".join(copies) + bytes(eocd))
    assert payload_members(result) == {"a.pkl"}
    assert sum(m.note == "same data as a.pkl" for m in result.members) == 50
