"""Speed and memory: every tool on every fixture, side by side.

    python bench/run_speed.py [--tools malhug,picklescan,modelscan] [--repeat N] [--timeout S]

Reads bench/.cache/fixtures/manifest.json (write it with make_fixtures.py first). For each
fixture and tool: one fresh measured process per run (see _measure.py) giving the verdict,
wall seconds, peak resident memory of the scanner process and the bytes it read. The file is
read once beforehand so that every tool starts with it in the page cache (warm runs: timings
compare the scanners, not the disk). With --repeat N the median time and the largest peak are
kept. Then each tool scans the mixed folder once: files per second and MB per second.
Writes bench/results/speed.json and prints the tables.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import DEFAULT_TIMEOUT, RESULTS, TOOLS, Run, install_peers, run_tool, tool_versions  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / ".cache" / "fixtures"
BYTES_TARGET_MB = 100
# malhug's CLI hashes (sha256) every file up to this size: one sequential read of the whole
# file that is not part of the analysis. The growth check subtracts that pass.
MALHUG_HASH_MAX_BYTES = 512 * 1024 * 1024


def machine() -> dict:
    mem = None
    try:
        with open("/proc/meminfo") as stream:
            mem = round(int(stream.readline().split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "memory_gib": mem, "platform": platform.platform(),
            "python": platform.python_version(), "processor": platform.processor() or platform.machine()}


def warm(path: Path) -> None:
    with open(path, "rb") as stream:
        while stream.read(1 << 24):
            pass


def measure(tool: str, path: Path, repeat: int, timeout: float) -> Run:
    runs = [run_tool(tool, path, timeout=timeout) for _ in range(repeat)]
    best = runs[0]
    best.seconds = statistics.median(r.seconds for r in runs)
    best.peak_mb = max(r.peak_mb for r in runs)
    best.times = [round(r.seconds, 3) for r in runs]
    return best


def as_dict(run: Run) -> dict:
    data = run.to_dict()
    data["times"] = getattr(run, "times", [data["seconds"]])
    return data


def fmt_cell(run: dict) -> str:
    read = "-" if run.get("read_mb") is None else f"{run['read_mb']:.0f}"
    return f"{run['verdict']:<12} {run['seconds']:>7.2f}s {run['peak_mb']:>6.0f}MB {read:>6}MB"


def print_big_table(rows: list[dict], tools: list[str]) -> None:
    head = f"{'fixture':<34}{'size':>9}  " + "".join(f"{t:<42}" for t in tools)
    sub = f"{'':<34}{'':>9}  " + "".join(f"{'verdict':<12} {'time':>8} {'peak':>8} {'read':>8}   " for _ in tools)
    print(head)
    print(sub)
    print("-" * len(sub))
    for row in rows:
        line = f"{row['name']:<34}{row['bytes'] / 1e6:>8.0f}M  "
        line += "".join(f"{fmt_cell(row['runs'][t]):<42}" if t in row["runs"] else f"{'-':<42}" for t in tools)
        print(line)
    print("verdict = what the tool answered; time = wall seconds; peak = peak RSS of the scanner "
          "process; read = bytes it read (read() calls, incl. ~2-6 MB of interpreter start-up)")


def score_mixed(run: Run, labels: list[dict]) -> dict:
    malicious = {r["path"] for r in labels if r["label"] == "malicious"}
    benign = {r["path"] for r in labels if r["label"] == "benign"}
    flagged = {p for p, v in run.per_file.items() if v in ("malicious", "suspicious")}
    not_clean = {p for p, v in run.per_file.items() if v not in ("malicious", "suspicious", "clean")}
    return {"malicious_flagged": len(flagged & malicious), "malicious_total": len(malicious),
            "benign_flagged": len(flagged & benign), "benign_total": len(benign),
            "not_fully_read_or_error": len(not_clean),
            "malicious_missed": sorted(malicious - flagged), "benign_flagged_files": sorted(flagged & benign),
            "not_fully_read_or_error_files": sorted(not_clean)}


def analysis_read_mb(row: dict, run: dict) -> float:
    """Bytes malhug read, less the sha256 pass it makes over files up to 512 MiB."""
    hashed = row["bytes"] if row["bytes"] <= MALHUG_HASH_MAX_BYTES else 0
    return max(0.0, (run["read_mb"] or 0) - hashed / 1e6)


def check_targets(rows: list[dict]) -> list[dict]:
    """What the benchmark is there to show for malhug, checked on the measured numbers."""
    checks = []
    for row in rows:
        run = row["runs"].get("malhug")
        if run and row["kind"] == "bytes_pickle":
            ok = run["verdict"] == "malicious" and run["peak_mb"] < BYTES_TARGET_MB
            checks.append({"target": f"payload after a {row['nominal']} byte string found with peak < {BYTES_TARGET_MB} MB",
                           "ok": ok, "measured": f"{run['verdict']}, peak {run['peak_mb']:.0f} MB"})
    for kind in ("torch_zip", "torch_legacy"):
        for label in ("benign", "malicious"):
            sized = sorted((r for r in rows if r["kind"] == kind and r["label"] == label and "malhug" in r["runs"]),
                           key=lambda r: r["bytes"])
            if len(sized) < 2:
                continue
            small, large = sized[0], sized[-1]
            a, b = small["runs"]["malhug"], large["runs"]["malhug"]
            expected = "malicious" if label == "malicious" else "clean"
            grow_read = analysis_read_mb(large, b) - analysis_read_mb(small, a)
            grow_peak = b["peak_mb"] - a["peak_mb"]
            weights_grew = (large["bytes"] - small["bytes"]) / 1e6
            ok = (a["verdict"] == b["verdict"] == expected and grow_read < 0.01 * weights_grew + 5
                  and grow_peak < 0.01 * weights_grew + 20)
            checks.append({"target": f"{kind} {label}: {small['nominal']} -> {large['nominal']} without reading tensor data, verdict {expected}",
                           "ok": ok,
                           "measured": f"{a['verdict']}/{b['verdict']}, read for analysis {analysis_read_mb(small, a):.0f} -> "
                                       f"{analysis_read_mb(large, b):.0f} MB (all reads {a['read_mb']:.0f} -> {b['read_mb']:.0f} MB), "
                                       f"peak {a['peak_mb']:.0f} -> {b['peak_mb']:.0f} MB, "
                                       f"time {a['seconds']:.2f} -> {b['seconds']:.2f} s"})
    return checks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    parser.add_argument("--output", default=str(RESULTS / "speed.json"))
    args = parser.parse_args(argv)
    tools = [t for t in args.tools.split(",") if t]
    manifest_file = FIXTURES / "manifest.json"
    if not manifest_file.exists():
        print("no fixtures: run bench/make_fixtures.py first", file=sys.stderr)
        return 2
    manifest = json.loads(manifest_file.read_text())
    missing = [e["name"] for e in manifest["big"] if not Path(e["path"]).exists()]
    if missing:
        print(f"fixtures missing ({', '.join(missing)}): run bench/make_fixtures.py again", file=sys.stderr)
        return 2
    if any(t != "malhug" for t in tools):
        install_peers()

    rows = []
    for entry in manifest["big"]:
        path = Path(entry["path"])
        warm(path)
        row = dict(entry, runs={})
        for tool in tools:
            print(f"  {tool:<10} {entry['name']} ...", file=sys.stderr, end="", flush=True)
            run = measure(tool, path, args.repeat, args.timeout)
            row["runs"][tool] = as_dict(run)
            print(f" {run.verdict} {run.seconds:.2f}s {run.peak_mb:.0f}MB", file=sys.stderr, flush=True)
        rows.append(row)

    mixed = None
    if manifest.get("mixed"):
        info = manifest["mixed"]
        labels = [json.loads(line) for line in Path(info["labels"]).read_text().splitlines() if line.strip()]
        for path in Path(info["path"]).iterdir():
            warm(path)
        mixed = dict(info, runs={})
        baseline = {t: r["seconds"] for row in rows if row["kind"] == "baseline" for t, r in row["runs"].items()}
        for tool in tools:
            print(f"  {tool:<10} mixed corpus ...", file=sys.stderr, end="", flush=True)
            run = measure(tool, Path(info["path"]), args.repeat, args.timeout)
            data = as_dict(run)
            data.pop("per_file")
            data["files_per_second"] = round(info["files"] / run.seconds, 1)
            data["mb_per_second"] = round(info["bytes"] / 1e6 / run.seconds, 2)
            startup = baseline.get(tool)
            if startup is not None and run.seconds > startup:
                data["startup_seconds"] = startup
                data["files_per_second_after_startup"] = round(info["files"] / (run.seconds - startup), 1)
            data["score"] = score_mixed(run, labels)
            mixed["runs"][tool] = data
            print(f" {run.seconds:.2f}s", file=sys.stderr, flush=True)

    result = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine(),
              "versions": tool_versions(), "repeat": args.repeat, "fixtures": rows, "mixed": mixed,
              "targets": check_targets(rows)}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2))

    print(f"\nspeed and memory -- {result['date']}, {result['machine']['cpus']} cores, "
          f"{result['machine']['memory_gib']} GiB; " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()))
    print_big_table(rows, tools)
    if mixed:
        print(f"\nmixed corpus: {mixed['files']} files ({mixed['malicious']} malicious), "
              f"{mixed['bytes'] / 1e6:.1f} MB, one process per tool over the folder")
        print(f"{'tool':<12}{'seconds':>9}{'files/s':>10}{'MB/s':>8}{'files/s*':>10}{'peak MB':>9}"
              f"   flagged malicious   flagged benign   not read/error")
        for tool, run in mixed["runs"].items():
            s = run["score"]
            after = run.get("files_per_second_after_startup")
            print(f"{tool:<12}{run['seconds']:>9.2f}{run['files_per_second']:>10.1f}{run['mb_per_second']:>8.2f}"
                  f"{'-' if after is None else f'{after:.0f}':>10}"
                  f"{run['peak_mb']:>9.0f}   {s['malicious_flagged']:>3}/{s['malicious_total']:<14}"
                  f"{s['benign_flagged']:>3}/{s['benign_total']:<13}{s['not_fully_read_or_error']:>4}")
        print("files/s* = files per second once the tool has started (its time on tiny-benign.pkl subtracted)")
        for tool, run in mixed["runs"].items():
            missed = run["score"]["malicious_missed"]
            if missed:
                print(f"  {tool} missed: {', '.join(missed)}")
    if result["targets"]:
        print("\nmalhug targets:")
        for check in result["targets"]:
            print(f"  [{'ok' if check['ok'] else 'NOT MET'}] {check['target']}: {check['measured']}")
    print(f"\nwritten: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
