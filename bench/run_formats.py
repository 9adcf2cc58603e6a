"""Metadata-only formats at two sizes: does a scan touch the tensor data?

    python3 bench/run_formats.py [--sizes 20M,2G] [--repeat 3] [--keep]

Writes, for each size S, a safetensors file, a GGUF file, an ONNX model with its weights
embedded as raw_data and an ONNX model with its weights in an external file -- each with one
tensor of S bytes, written as a sparse file (the header, then a seek over the data), so 2 GB
fixtures cost no disk space -- and scans each with malhug in a fresh process, measured by
bench/_measure.py: wall time, peak RSS, bytes read through read(). The scan runs with
`--limit hash_max_bytes=0` (no sha256 pass) and `--no-cache`, so bytes read are those the
analysis needs. Fixtures live in bench/.cache/formats and are deleted at the end unless
--keep. Results go to bench/results/formats.json. Standard library only; the fixtures are
written by hand from the formats' specifications.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = HERE / ".cache" / "formats"
RESULTS = HERE / "results"
PYTHON = os.environ.get("MALHUG_PYTHON", str(ROOT / ".venv" / "bin" / "python"))
UNITS = {"K": 10**3, "M": 10**6, "G": 10**9}


def parse_size(text: str) -> int:
    text = text.strip().upper()
    return int(float(text[:-1]) * UNITS[text[-1]]) if text[-1] in UNITS else int(text)


def sparse_write(path: Path, head: bytes, data_size: int, tail: bytes = b"") -> None:
    """head, then data_size zero bytes that take no disk space, then tail."""
    with open(path, "wb") as stream:
        stream.write(head)
        stream.seek(len(head) + data_size)
        stream.write(tail)
        stream.truncate(len(head) + data_size + len(tail))


# -- safetensors -------------------------------------------------------------------------------

def write_safetensors(path: Path, size: int) -> None:
    header = {"__metadata__": {"format": "pt"},
              "model.embed.weight": {"dtype": "F32", "shape": [size // 4], "data_offsets": [0, size // 4 * 4]}}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    sparse_write(path, struct.pack("<Q", len(text)) + text, size // 4 * 4)


# -- GGUF (version 3) --------------------------------------------------------------------------

def _gguf_string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def write_gguf(path: Path, size: int) -> None:
    alignment = 32
    kvs = [("general.architecture", 8, _gguf_string("llama")), ("general.name", 8, _gguf_string("bench")),
           ("general.alignment", 4, struct.pack("<I", alignment))]
    head = b"GGUF" + struct.pack("<IQQ", 3, 1, len(kvs))
    for key, kind, value in kvs:
        head += _gguf_string(key) + struct.pack("<I", kind) + value
    elements = size // 4
    head += _gguf_string("token_embd.weight") + struct.pack("<IQIQ", 1, elements, 0, 0)  # F32, offset 0
    head += b"\0" * (-len(head) % alignment)
    sparse_write(path, head, elements * 4)


# -- ONNX (protobuf written field by field) ----------------------------------------------------

def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _uint(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _onnx_parts(tensor: bytes, raw_size: int) -> tuple[bytes, bytes]:
    """(bytes before the raw data, bytes after it) of a ModelProto with one MatMul node whose
    weight tensor ends with a raw_data field of raw_size bytes (0: no raw_data)."""
    raw_key = (_varint(9 << 3 | 2) + _varint(raw_size)) if raw_size else b""
    tensor_message = tensor + raw_key
    initializer_key = _varint(5 << 3 | 2) + _varint(len(tensor_message) + raw_size)
    graph_head = (_field(1, _field(1, b"x") + _field(1, b"w") + _field(2, b"y") + _field(4, b"MatMul"))
                  + _field(2, b"bench") + _field(11, _field(1, b"x")) + _field(12, _field(1, b"y")))
    graph_length = len(graph_head) + len(initializer_key) + len(tensor_message) + raw_size
    head = (_uint(1, 8) + _field(2, b"bench") + _field(8, _uint(2, 17))
            + _varint(7 << 3 | 2) + _varint(graph_length) + graph_head + initializer_key + tensor_message)
    tail = _field(14, _field(1, b"note") + _field(2, b"written by bench/run_formats.py"))
    return head, tail


def write_onnx_embedded(path: Path, size: int) -> None:
    elements = size // 4
    tensor = _uint(1, elements) + _uint(2, 1) + _field(8, b"w")
    head, tail = _onnx_parts(tensor, elements * 4)
    sparse_write(path, head, elements * 4, tail)


def write_onnx_external(path: Path, size: int) -> None:
    elements = size // 4
    data_name = path.name + ".data"
    entries = b"".join(_field(13, _field(1, k.encode()) + _field(2, v.encode()))
                       for k, v in (("location", data_name), ("offset", "0"), ("length", str(elements * 4))))
    tensor = _uint(1, elements) + _uint(2, 1) + _field(8, b"w") + entries + _uint(14, 1)
    head, tail = _onnx_parts(tensor, 0)
    path.write_bytes(head + tail)
    sparse_write(path.with_name(data_name), b"", elements * 4)


FIXTURES = {
    "safetensors": ("model-{size}.safetensors", write_safetensors),
    "gguf": ("model-{size}.gguf", write_gguf),
    "onnx-embedded": ("embedded-{size}.onnx", write_onnx_embedded),
    "onnx-external": ("external-{size}.onnx", write_onnx_external),
}


# -- measuring ---------------------------------------------------------------------------------

def scan(path: Path, timeout: float) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        command = [sys.executable, str(HERE / "_measure.py"), "--out", str(scratch / "m.json"),
                   "--stdout", str(scratch / "out.json"), "--stderr", str(scratch / "err.txt"),
                   "--timeout", str(timeout), "--",
                   PYTHON, "-m", "malhug", "scan", str(path), "--format", "json", "--no-cache",
                   "--limit", "hash_max_bytes=0"]
        subprocess.run(command, check=True)
        measured = json.loads((scratch / "m.json").read_text())
        try:
            report = json.loads((scratch / "out.json").read_text())
            files = report.get("files", [])
            verdict = files[0]["verdict"] if files else report.get("summary", {}).get("verdict", "?")
            fmt = files[0]["format"] if files else "?"
        except (ValueError, KeyError, IndexError):
            verdict, fmt = "error", "?"
    return {"verdict": verdict, "format": fmt, "seconds": measured["seconds"],
            "peak_mb": measured["peak_rss_kib"] / 1024,
            "read_mb": None if measured["read_bytes"] is None else measured["read_bytes"] / 1e6,
            "exit_code": measured["exit_code"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="20M,2G")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--keep", action="store_true", help="keep the fixtures")
    args = parser.parse_args(argv)
    sizes = [s.strip() for s in args.sizes.split(",")]
    CACHE.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for kind, (pattern, writer) in FIXTURES.items():
            for label in sizes:
                path = CACHE / pattern.format(size=label)
                writer(path, parse_size(label))
                runs = [scan(path, args.timeout) for _ in range(args.repeat)]
                row = {"fixture": kind, "size": label, "bytes": path.stat().st_size, **runs[0],
                       "seconds": statistics.median(r["seconds"] for r in runs),
                       "peak_mb": max(r["peak_mb"] for r in runs), "times": [round(r["seconds"], 3) for r in runs]}
                rows.append(row)
                print(f"{kind:<14} {label:>5} {row['format']:<12} {row['verdict']:<12} {row['seconds']:6.2f}s "
                      f"{row['peak_mb']:6.1f} MB peak {row['read_mb']:7.2f} MB read", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(CACHE, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "formats.json").write_text(json.dumps({"sizes": sizes, "repeat": args.repeat, "rows": rows}, indent=2))
    print_table(rows, sizes)
    return 0 if all(r["verdict"] == "clean" for r in rows) else 1


def print_table(rows: list[dict], sizes: list[str]) -> None:
    print("\n| fixture | " + " | ".join(f"{s}: verdict | time s | peak MB | read MB" for s in sizes) + " |")
    print("|---|" + "---|---:|---:|---:|" * len(sizes))
    for kind in FIXTURES:
        cells = []
        for size in sizes:
            row = next(r for r in rows if r["fixture"] == kind and r["size"] == size)
            cells.append(f"{row['verdict']} | {row['seconds']:.2f} | {row['peak_mb']:.0f} | {row['read_mb']:.2f}")
        print(f"| {kind} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
