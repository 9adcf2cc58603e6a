"""Hostile inputs, full size: each scanned by the command line in a fresh process.

    .venv/bin/python bench/run_hostile.py [--small] [--keep DIR] [--cases a,b]

Prints a table (file, size, verdict, reason, wall seconds, CPU seconds, peak MB) and writes
bench/results/hostile.json. The targets: under 5 seconds and 256 MB each, never clean; the
2 GB sparse pickle: its payload found in under 100 MB. --small builds the versions the tests use.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "helpers"))

from hostile_inputs import CASES, scan_measured  # noqa: E402

TARGET_SECONDS = 5.0
TARGET_MB = {"sparse_pickle_payload_at_end": 100.0}
DEFAULT_MB = 256.0


def _reason(file: dict) -> str:
    hostile = [f["message"] for f in file["findings"] if f["rule"] == "hostile-shape"]
    others = [f["message"] for f in file["findings"] if f["rule"] != "hostile-shape"]
    limits = [p["reason"] for p in file["problems"] if "limit" in p["reason"]]
    return (hostile + limits + others + [p["reason"] for p in file["problems"]] + [""])[0]


def run(cases: list[str], small: bool, folder: Path) -> list[dict]:
    rows = []
    for name in cases:
        builder, small_args, full_args = CASES[name]
        started = time.perf_counter()
        path = builder(folder, **(small_args if small else full_args))
        built = time.perf_counter() - started
        measured = scan_measured(path, timeout=120)
        file = measured["file"] or {"verdict": "error", "findings": [], "problems": []}
        target_mb = TARGET_MB.get(name, DEFAULT_MB)
        rows.append({
            "case": name, "file": path.name, "size": path.stat().st_size,
            "disk_bytes": path.stat().st_blocks * 512, "build_seconds": round(built, 2),
            "verdict": file["verdict"], "reason": _reason(file),
            "seconds": round(measured["seconds"], 2), "cpu_seconds": round(measured["cpu_seconds"], 2),
            "peak_mb": round(measured["peak_mb"], 1), "timed_out": measured["timed_out"],
            "within_target": (file["verdict"] not in ("clean", "error") and measured["seconds"] < TARGET_SECONDS
                              and measured["peak_mb"] < target_mb),
        })
        path.unlink()
    return rows


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--keep", type=Path, default=None, help="build the files here (default: a temp folder)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "hostile.json")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="malhug-hostile-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        rows = run(args.cases.split(","), args.small, folder)
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"{'file':24} {'size':>9} {'verdict':12} {'wall s':>6} {'cpu s':>6} {'peak MB':>7}  reason")
    for row in rows:
        print(f"{row['file']:24} {_size(row['size']):>9} {row['verdict']:12} {row['seconds']:6.2f} "
              f"{row['cpu_seconds']:6.2f} {row['peak_mb']:7.1f}  {row['reason'][:90]}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "small": args.small, "rows": rows}, indent=2) + "\n")
    print(f"written {args.out}")
    return 0 if all(row["within_target"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
