"""Builders of hostile inputs: bombs, deep nesting, crafted lengths.

Each builder writes one file into a folder and returns its path. Sizes are parameters, so
the tests use small versions of the same shapes and the benchmark the full ones. Everything
here is built from bytes or with writer libraries; nothing is ever loaded.
"""
from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from pathlib import Path

MIB = 1 << 20
GIB = 1 << 30
PAYLOAD = b"cos\nsystem\n(S'echo hostile'\ntR."  # protocol 0: os.system('echo hostile')


def _zeros_deflated(size: int) -> bytes:
    """Raw deflate of `size` zero bytes: one fully flushed block of 16 MiB repeated (a full
    flush forgets the history, so the same bytes are valid again), then the rest."""
    block_size = 16 * MIB
    whole, rest = divmod(size, block_size)
    parts = []
    if whole:
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        parts.append((compressor.compress(bytes(block_size)) + compressor.flush(zlib.Z_FULL_FLUSH)) * whole)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts.append(compressor.compress(bytes(rest)) + compressor.flush())
    return b"".join(parts)


def _crc32_zeros(size: int) -> int:
    crc, chunk = 0, bytes(16 * MIB)
    while size > 0:
        step = min(size, len(chunk))
        crc = zlib.crc32(memoryview(chunk)[:step], crc)
        size -= step
    return crc


def _zip_with_deflated(members: list[tuple[str, bytes, int]]) -> bytes:
    """A zip whose members are given as (name, raw deflate data, uncompressed size); crc 0."""
    out = io.BytesIO()
    central = []
    for name, data, size in members:
        encoded = name.encode()
        offset = out.tell()
        crc = 0
        out.write(struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(data),
                              min(size, 0xFFFFFFFF), len(encoded), 0))
        out.write(encoded)
        out.write(data)
        central.append(struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc,
                                   len(data), min(size, 0xFFFFFFFF), len(encoded), 0, 0, 0, 0, 0,
                                   offset) + encoded)
    start = out.tell()
    out.write(b"".join(central))
    out.write(struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(central), len(central),
                          out.tell() - start, start, 0))
    return out.getvalue()


def nested_zip_bomb(folder: Path, leaf_size: int = 64 * MIB, fanout: int = 16, levels: int = 5) -> Path:
    """42.zip: `levels` of zips, `fanout` members each, every leaf `leaf_size` zero bytes."""
    leaf = _zeros_deflated(leaf_size)
    current = _zip_with_deflated([("0.dat", leaf, leaf_size)])
    for _ in range(levels - 1):
        inner = zlib.compress(current, 9)[2:-4]
        current = _zip_with_deflated([(f"{i}.zip", inner, len(current)) for i in range(fanout)])
    path = folder / "nested_bomb.zip"
    path.write_bytes(current)
    return path


def overlapping_zip_bomb(folder: Path, kernel_size: int = 256 * MIB, entries: int = 10_000) -> Path:
    """Many central directory entries that all point at one deflated kernel of zeros."""
    kernel = _zeros_deflated(kernel_size)
    name = b"k"
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0, 0, len(kernel),
                        kernel_size, len(name), 0) + name
    body = local + kernel
    central = b"".join(
        struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, 0, len(kernel),
                    kernel_size, len(f"{i}.bin"), 0, 0, 0, 0, 0, 0) + f"{i}.bin".encode()
        for i in range(entries))
    count = min(entries, 0xFFFF)
    eocd = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, count, count, len(central), len(body), 0)
    path = folder / "overlap_bomb.zip"
    path.write_bytes(body + central + eocd)
    return path


def self_containing_zip(folder: Path, members: int = 400) -> Path:
    """Local headers only, stored, of unknown size: each member runs to the end of the file, so
    it is a zip of every member after it, nested as deep as a reader follows."""
    headers = (struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0x08, 0, 0, 0, 0, 0, 0, 5, 0)
               + b"m%04d" % index for index in range(members))
    path = folder / "self_containing.zip"
    path.write_bytes(b"".join(headers))
    return path


def sevenzip_bomb(folder: Path, size: int = 1 * GIB) -> Path:
    """A 7z archive with one member of `size` zero bytes (LZMA2 packs it to a few hundred KB)."""
    import py7zr

    path = folder / "bomb.7z"
    zeros = folder / "zeros.bin"
    with open(zeros, "wb") as f:
        f.truncate(size)  # a sparse file: nothing written to disk
    try:
        with py7zr.SevenZipFile(path, "w") as archive:
            archive.write(zeros, "zeros.bin")
    finally:
        zeros.unlink()
    return path



def gzip_bomb(folder: Path, size: int = 1 * GIB) -> Path:
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = struct.pack("<II", _crc32_zeros(size), size & 0xFFFFFFFF)
    path = folder / "bomb.gz"
    path.write_bytes(header + _zeros_deflated(size) + trailer)
    return path


def billion_laughs_pickle(folder: Path, levels: int = 40, width: int = 10) -> Path:
    """Each level is a list of `width` memo references to the level below: width**levels leaves."""
    out = bytearray(b"\x80\x02")
    out += b"U\x04lol!" + b"q\x00"  # SHORT_BINSTRING 'lol!', BINPUT 0
    for level in range(1, levels + 1):
        ref = b"h" + bytes([level - 1]) if level - 1 < 256 else b"j" + struct.pack("<I", level - 1)
        out += b"(" + ref * width + b"l"
        out += b"q" + bytes([level]) if level < 256 else b"r" + struct.pack("<I", level)
    out += b"."
    path = folder / "billion_laughs.pkl"
    path.write_bytes(bytes(out))
    return path


def deep_list_pickle(folder: Path, depth: int = 100_000) -> Path:
    """[[[[...]]]] `depth` deep: MARK * depth, then LIST * depth."""
    path = folder / "deep_list.pkl"
    path.write_bytes(b"\x80\x02" + b"(" * depth + b"l" * depth + b".")
    return path


def gguf_huge_array(folder: Path, count: int = 10**9) -> Path:
    """A GGUF header whose first metadata value claims an array of `count` uint32 values."""
    key = b"general.huge"
    body = b"GGUF" + struct.pack("<IQQ", 3, 0, 1)
    body += struct.pack("<Q", len(key)) + key + struct.pack("<I", 9)  # GGUF_TYPE_ARRAY
    body += struct.pack("<IQ", 4, count)  # of UINT32
    body += bytes(64)
    path = folder / "huge_array.gguf"
    path.write_bytes(body)
    return path


def hdf5_cyclic_group(folder: Path) -> Path:
    """An HDF5 file whose group `a` contains itself (a hard link), and a soft link cycle."""
    import h5py

    path = folder / "cyclic.h5"
    with h5py.File(path, "w") as f:
        group = f.create_group("a")
        group.attrs["note"] = "cycle"
        f["a/b"] = f["a"]
        f["a/c"] = h5py.SoftLink("/a")
        f.attrs["keras_version"] = "2.15.0"
        f.attrs["backend"] = "tensorflow"
    return path


def sparse_pickle_payload_at_end(folder: Path, hole: int = 2 * GIB) -> Path:
    """PROTO 4, BINBYTES8 of `hole` bytes that are a hole in a sparse file, POP, then a payload."""
    path = folder / "sparse_2g.pkl"
    with open(path, "wb") as f:
        f.write(b"\x80\x04\x8e" + struct.pack("<Q", hole))
        f.seek(hole, os.SEEK_CUR)
        f.write(b"0" + PAYLOAD)
    return path


# name -> (builder, keyword arguments of the small version the tests use, of the full one)
CASES = {
    "nested_zip_bomb": (nested_zip_bomb, {}, {}),
    "overlapping_zip_bomb": (overlapping_zip_bomb, {}, {"kernel_size": 1 * GIB, "entries": 65_535}),
    "self_containing_zip": (self_containing_zip, {"members": 40}, {"members": 4000}),
    "sevenzip_bomb": (sevenzip_bomb, {"size": 300 * MIB}, {}),
    "gzip_bomb": (gzip_bomb, {}, {"size": 10 * GIB}),
    "billion_laughs_pickle": (billion_laughs_pickle, {}, {}),
    "deep_list_pickle": (deep_list_pickle, {}, {}),
    "gguf_huge_array": (gguf_huge_array, {}, {}),
    "hdf5_cyclic_group": (hdf5_cyclic_group, {}, {}),
    "sparse_pickle_payload_at_end": (sparse_pickle_payload_at_end, {}, {}),
}


_MEASURE = r"""
import json, resource, subprocess, sys, time
timeout = float(sys.argv[1])
started = time.perf_counter()
child = subprocess.Popen(sys.argv[2:], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL)
try:
    out, err = child.communicate(timeout=timeout)
    timed_out = False
except subprocess.TimeoutExpired:
    child.kill()
    out, err = child.communicate()
    timed_out = True
seconds = time.perf_counter() - started
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
peak_kib = usage.ru_maxrss
json.dump({"returncode": child.returncode, "timed_out": timed_out, "seconds": seconds,
           "cpu_seconds": usage.ru_utime + usage.ru_stime,
           "peak_mb": peak_kib / 1024, "stdout": out.decode("utf-8", "replace"),
           "stderr": err.decode("utf-8", "replace")[-4000:]}, sys.stdout)
"""


def scan_measured(path: Path, timeout: float = 60.0, python: str | None = None) -> dict:
    """`python -m malhug scan --format json --no-cache PATH` in a fresh helper process, whose
    RUSAGE_CHILDREN then covers exactly that one scan (and the workers it waited for): wall and
    CPU seconds, peak RSS, the file result."""
    import json
    import subprocess
    import sys

    python = python or sys.executable
    command = [python, "-c", _MEASURE, str(timeout), python, "-m", "malhug", "scan", "--format", "json",
               "--no-cache", "--no-progress", str(path)]
    done = subprocess.run(command, capture_output=True, check=True, timeout=timeout + 30)
    measured = json.loads(done.stdout)
    measured["file"] = None
    try:
        report = json.loads(measured["stdout"])
        measured["file"] = report["files"][0]
    except (ValueError, KeyError, IndexError, TypeError):
        pass
    return measured
