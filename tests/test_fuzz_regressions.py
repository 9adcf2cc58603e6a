"""Inputs the fuzzers found that once broke a reader, kept as they were minimised."""
from __future__ import annotations

import ast
import io
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fuzz"))

from targets import TARGETS  # noqa: E402

from malhug.pickle.decompile import Renderer  # noqa: E402
from malhug.pickle.machine import PickleMachine  # noqa: E402
from malhug.pickle.reader import ByteReader  # noqa: E402

# (target, input)
CRASHES = [
    # a method called on a constant rendered as `2.append({})`, which is not Python
    ("pickle", b"(lp0\nI0\naI1\naI2\n\x80\x04\x95(\x00\x00\x00\x00\x00\x00\x00}\x94aI6(\x8c\x01"),
]


@pytest.mark.parametrize("target, data", CRASHES, ids=[f"{t}-{i}" for i, (t, _) in enumerate(CRASHES)])
def test_fuzz_crash_stays_fixed(target, data):
    TARGETS[target](data)


def test_methods_on_constants_render_as_python():
    trace = PickleMachine(ByteReader(io.BytesIO(b"I2\n}a."))).run()
    source = Renderer().program(trace, 1 << 20).source
    ast.parse(source)
    assert "(2).append({})" in source


def _scan_encoded(tmp_path, name: str, encoded: str, compressed: bool = False, **options):
    """Write a kept input (base64, zlib-compressed when `compressed`) and scan it: the file's
    result and the seconds the scan took."""
    import base64
    import time
    import zlib

    import malhug

    data = base64.b64decode(encoded)
    path = tmp_path / name
    path.write_bytes(zlib.decompress(data) if compressed else data)
    started = time.monotonic()
    result = malhug.scan(path, **options).files[0]
    return result, time.monotonic() - started


# An 8 KiB HDF5 file the hdf5 target found on which the HDF5 library spins for as long as it is
# allowed: the reader's time limit must stop it and name itself (kept zlib-compressed).
SPINNING_HDF5 = (
    "eNrr9HBx4+WS4mIAAQ4OBhYGAQZk8B8KBBRQ+TD5BCjNCKU7oPQKJpg4C1hOAiouADVfgRnC3wEVDwlydQWp/o8GYPbMYIPQHAyjYCQ"
    "CD1fHABAdAeXD0tMJJlR1ufkpqTnx5amZ6RklxUjp0oFMewWh6RU9XfMweEDTNy+DCDBVQuxNzs9Ly0wHiUsyMoJ1CsDdwIGST+qREj"
    "Mjinl8YPOyU4sSi+PLUouKM/PziDCPDck8JrA4I0q+g/kDmB0h+Y+NuHx3QGo0343mO0S+g9UODmyo6lLQ6gEPCu0N9vN3AaVgWLq7w"
    "YxqPno6HgXkAXdnfx9GpIhFKZ+AoFopOSexeDSljaa0UTCIAK7qXQMq4CFFXPUuITtavY9W75iFboYUqjpgczQvNYd2hS4sIcPMR0/H"
    "o4CiwoIVErCMMD4kdBkZGeH9BWSaGSgPkhFUsIdGkAODCTeDyX9ozcgKFAXJMzExMUIKD4h5zIwMCqjJiAFtVGBwAPTExzGcc/Jo82k"
    "kNdSL4/MSc1OVrBSUglMLS1PzSjITc5R0FJQgAxNA8WolmIJckHhOYmVqUTGQG42u3yU1rzgVh9YUkHhpXmYJSKdRbW1sbS288IBFs5"
    "GeoameAVL65B+Nw1EwCkY7EqNgtCMx2pEY7SMMrT6CzGgaGQXDFXywh/UWAS5AyM8="
)


# 128 bytes of gzip the gzip target found: a pickle whose GLOBAL names have thousands of dotted
# parts; every lookup tried every tail and every alias prefix (cubic), 70 s for 66 globals.
LONG_DOTTED_GLOBALS_GZ = (
    "H4sIAIbdAWsC/+3NQQrCMBSE4bfOKbprVyW2Id5DT1BioNCWiC+C3t6QjdC9Ivh/mxlmNiH+uiJ+AABBAAAAAABp3u3uJtOtXMr/////"
    "//////////////9/AQAKSY0+MsfNdOym46U1+dQLAQAAAAAA0c1056bjpTX51AsoAAA="
)


def test_globals_with_thousands_of_dotted_parts_are_judged_quickly(tmp_path):
    result, seconds = _scan_encoded(tmp_path, "weights.gz", LONG_DOTTED_GLOBALS_GZ)
    assert seconds < 10
    assert str(result.verdict) == "suspicious"  # unknown globals, and the gzip is cut short
    assert any(f.rule == "pickle-unknown-global" for f in result.findings)


# 641 bytes of gzip: a 384 KB pickle calling 900 globals whose single names run to 100,000s of
# characters; rendering each call's evidence and trying every glob on those names took 12 s.
HUGE_NAMED_GLOBALS_GZ = (
    "H4sIAIbdAWsC/+3NQQrCMBSE4bfOKbprVyW2Id5DT1BioNCWiC+C3t6QjdC9Ivh/mxlmMyH+uqxLAAAAAAAAAGn+/v7+AAAAAAAA"
    "AAAEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    "AAAAAAAAAAAAAAAAAAAJAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABOAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    "AAkAAAAAAAAAAAAAAAAACAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAQAAAAAAAAoAAAAAAAAAAAAA1Av//wAAAAoAAAAAAAAA"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAaf7+/v4AAAAAAAAA"
    "AAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAANQL"
    "/2YAAAAKAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA4QAoAAA="
)


def test_globals_with_huge_names_are_rendered_and_judged_quickly(tmp_path):
    result, seconds = _scan_encoded(tmp_path, "weights.gz", HUGE_NAMED_GLOBALS_GZ)
    assert seconds < 10
    assert str(result.verdict) in ("suspicious", "malicious")
    assert all(len(f.evidence) <= 2 * 400 for f in result.findings)


def test_a_long_attribute_chain_still_ends_in_the_callable_it_reaches():
    """`pathlib.os.path.os.path ... os.system` resolves to os.system however long it is."""
    from malhug.rules import knowledge_base

    chain = ".".join(["os", "path"] * 40 + ["os", "system"])
    found = knowledge_base().classify("pathlib", chain)
    assert found.kind == "dangerous" and found.matched == "os.system"


def test_hdf5_that_spins_the_library_is_stopped_by_its_time_limit(tmp_path):
    result, seconds = _scan_encoded(tmp_path, "model.h5", SPINNING_HDF5, compressed=True,
                                    limits={"hdf5_seconds": 2})
    assert seconds < 30
    assert str(result.verdict) == "inconclusive"
    assert any("hdf5_seconds" in problem.reason for problem in result.problems)


def _local_header(name: bytes, flags: int) -> bytes:
    import struct

    return struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, flags, 0, 0, 0, 0, 0, 0, len(name), 0) + name


def test_a_zip_that_contains_itself_is_read_in_linear_work(tmp_path):
    """Found by the sniff target: stored members of unknown size run to the end of the file, so
    each is a zip of the members after it, and reading them all multiplies with every level."""
    import malhug

    path = tmp_path / "nested.zip"
    path.write_bytes(b"".join(_local_header(b"m%02d" % i, 0x08) for i in range(24)))
    result = malhug.scan(path, limits={"max_members": 5000}).files[0]
    assert str(result.verdict) == "suspicious"
    assert not any("max_members" in problem.reason for problem in result.problems)
    assert any(f.rule == "hostile-shape" and "contains itself" in f.message for f in result.findings)
    assert len(result.members) < 24 * 24


def test_a_stored_zip_inside_a_stored_zip_is_read_as_an_ordinary_archive(tmp_path):
    import pickle
    import zipfile

    import malhug

    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("a.pkl", pickle.dumps({"weights": [1.0, 2.0]}))
        archive.writestr("b.pkl", pickle.dumps([3, 4]))
    path = tmp_path / "outer.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("inner.zip", inner.getvalue())
        archive.writestr("c.pkl", pickle.dumps("text"))
    result = malhug.scan(path).files[0]
    assert str(result.verdict) == "clean"
    assert not result.findings
    analysed = {m.name for m in result.members if m.analysed}
    assert {"inner.zip:a.pkl", "inner.zip:b.pkl", "c.pkl"} <= analysed


# An 8 KiB HDF5 file the hdf5 target found on which the HDF5 library itself crashes (SIGSEGV
# with h5py 3.x): the child process that reads it dies, and the file is inconclusive, named.
CRASHING_HDF5 = (
    "eNrtmM1Kw0AQx3cTLaFareBBi0LISUREpV68WLHVHERFPQgiNbSrhqYpNlWRUrzqG/gIPoJHjz6CTyG+Qd3N7mo2UCuKH+D8LsPO7s4m"
    "m/9MYK7t/EoqmUkihmGgHpRGUdqCtKmO5fyBsFjYK2FvNenvCedGhD8t4ps6H98J/85WocBWt2PIc24S3BoI+I/YhaVNZnfFWOrpQVPX"
    "VWtl4hXPiXt03Agiusx98twhode4rvuRLfSdQsNUlfzcUu3p0D1i/lGMw53p12cwlDy5jIgZK/EGwngVUneC4hmpB27NZ/Em34+XiMTT"
    "Qj9W8k6+B01Hnn+Jj+XdfQbyDvLuLe/k3yGXUNeVY/8B+4vnbq9v5JmCpe4edTV+XMfA51hd3ljDkQ+r1CdK0yp5ThAUfadKrAXT2iYn"
    "p8RvuI5nTZlWqebTekf9TUsuqDK/51zQykWHe/H9eeIHpMPWMvOf+m6D7ZxttfZbLaRF6xtlbnp2fnomos9B+IYAAAAAAAAAAAAA0I1O"
    "fcIJ4bBF/69bn3BknFvoE/5POvUJjzPqugqp+8T7vj6hFLKMH9cx0KkO9PI7w3LMLw5j7pB9OGl1Os9mhsxFcfc5lO1D2bbo0/ZSL5vX"
    "NA3zusDj6RiZqkIkV3/qPuK6MsZ+4tQcCBH4BZ4XpQBfADhBnpg="
)


def test_hdf5_that_crashes_the_library_leaves_the_file_inconclusive(tmp_path):
    result, _ = _scan_encoded(tmp_path, "model.h5", CRASHING_HDF5, compressed=True)
    assert str(result.verdict) == "inconclusive"
    assert any(problem.reason.startswith("HDF5 ") for problem in result.problems), result.problems
