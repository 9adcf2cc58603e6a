"""Accuracy and time on Python sources: malhug, guarddog and bandit on labelled scripts.

    python bench/run_scripts.py [--tools malhug,guarddog,bandit] [--jobs 2] [--output FILE]

The scripts are the fixtures of tests/helpers/script_fixtures.py: dataset loading scripts,
trust_remote_code modules, hubconf.py files and plain scripts, malicious ones in ten threat
families (reverse shell, download-and-run, credential theft, host recon sent out, command
execution, file tampering, model tampering, persistence, crypto mining, proofs of concept),
each as a plain call, a call assembled over several statements, a call made from a helper that a
dataset builder or a model class runs, an obfuscated call and a call started in a thread; and
benign ones of the same kinds. They are written to bench/.cache/scripts/<label>/<name>.py and
scanned, never run. Every payload is inert (`id`, `whoami`, 127.0.0.1, example.invalid).

Each tool scans each file in its own process (bench/peers.py has the commands). Answers:
  malhug      malicious or suspicious = flagged; inconclusive = undecided (never clean)
  guarddog    any source-code rule match = flagged
  bandit      any issue of severity MEDIUM or HIGH = flagged (LOW-only = clean)
Other readings of the same runs, shown below the main table:
  bandit-any         any bandit issue, whatever its severity
  guarddog-threat    a match of a `threat-*` rule (the `capability-*` rules left out)
  guarddog-risk      guarddog's own risk label is `suspicious` or `high_risk`
Per tool: TP, FN, FP, TN, undecided (malicious+benign), recall (an undecided malicious file is
a miss), false-positive rate (an undecided benign file is not a false positive), recall per
family and per shape, the time of all runs added up, and every file answered against its label.
Then each tool scans the whole folder in one process (start-up paid once): seconds.
Writes bench/results/scripts.json.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from peers import CACHE, FLAGGED, RESULTS, SCRIPT_TOOLS, install_peers, run_tool, tool_versions  # noqa: E402

FIXTURES_MODULE = BENCH.parent / "tests" / "helpers" / "script_fixtures.py"
SCRIPTS = CACHE / "scripts"


def load_fixtures():
    spec = importlib.util.spec_from_file_location("script_fixtures", FIXTURES_MODULE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while building the class
    spec.loader.exec_module(module)
    return module


def write_fixtures(fixtures) -> dict[str, Path]:
    """Write every fixture to bench/.cache/scripts/<label>/<name>.py, clearing stale files."""
    shutil.rmtree(SCRIPTS, ignore_errors=True)
    paths = {}
    for fixture in fixtures:
        path = SCRIPTS / fixture.label / fixture.filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(fixture.source, encoding="utf-8")
        paths[fixture.name] = path
    return paths


# ---------------------------------------------------------------- readings of a run

def _main_reading(run: dict) -> str:
    if run["verdict"] in FLAGGED:
        return "flagged"
    return "clean" if run["verdict"] == "clean" else "undecided"


def _bandit_any(run: dict) -> str:
    if run["verdict"] in ("error", "timeout"):
        return "undecided"
    return "flagged" if run["extra"].get("issues") else "clean"


def _guarddog_threat(run: dict) -> str:
    if run["verdict"] in ("error", "timeout"):
        return "undecided"
    return "flagged" if any(r.startswith("threat-") for r in run["extra"].get("rules", [])) else "clean"


def _guarddog_risk(run: dict) -> str:
    if run["verdict"] in ("error", "timeout"):
        return "undecided"
    return "flagged" if run["extra"].get("risk_label") in ("suspicious", "high_risk") else "clean"


READINGS = {  # reading name -> (tool whose runs it reads, how)
    "bandit-any": ("bandit", _bandit_any),
    "guarddog-threat": ("guarddog", _guarddog_threat),
    "guarddog-risk": ("guarddog", _guarddog_risk),
}


def ratio(a: int, b: int):
    return round(a / b, 4) if b else None


def pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def score(rows: list[dict], tool: str, reading) -> dict:
    c = defaultdict(int)
    per_family = defaultdict(lambda: [0, 0])
    per_variant = defaultdict(lambda: [0, 0])
    seconds = 0.0
    for row in rows:
        run = row["runs"][tool]
        seconds += run["seconds"]
        got = reading(run)
        key = {("malicious", "flagged"): "TP", ("malicious", "clean"): "FN",
               ("malicious", "undecided"): "undecided_malicious", ("benign", "flagged"): "FP",
               ("benign", "clean"): "TN", ("benign", "undecided"): "undecided_benign"}[(row["label"], got)]
        c[key] += 1
        if row["label"] == "malicious":
            for table, name in ((per_family, row["family"]), (per_variant, row["variant"])):
                table[name][1] += 1
                table[name][0] += got == "flagged"
    positives = c["TP"] + c["FN"] + c["undecided_malicious"]
    negatives = c["FP"] + c["TN"] + c["undecided_benign"]
    return {
        "TP": c["TP"], "FN": c["FN"], "FP": c["FP"], "TN": c["TN"],
        "undecided_malicious": c["undecided_malicious"], "undecided_benign": c["undecided_benign"],
        "malicious": positives, "benign": negatives,
        "recall": ratio(c["TP"], positives),
        "precision": ratio(c["TP"], c["TP"] + c["FP"]),
        "false_positive_rate": ratio(c["FP"], negatives),
        "seconds": round(seconds, 2),
        "per_family_recall": {k: {"flagged": a, "total": n, "recall": ratio(a, n)}
                              for k, (a, n) in sorted(per_family.items())},
        "per_variant_recall": {k: {"flagged": a, "total": n, "recall": ratio(a, n)}
                               for k, (a, n) in sorted(per_variant.items())},
    }


# ---------------------------------------------------------------- printing

def print_scores(scores: dict) -> None:
    print(f"{'reading':<17}{'TP':>4}{'FN':>4}{'FP':>4}{'TN':>4}{'undecided':>11}{'recall':>9}"
          f"{'precision':>11}{'FPR':>8}{'seconds':>9}")
    for name, s in scores.items():
        undecided = f"{s['undecided_malicious']}+{s['undecided_benign']}"
        print(f"{name:<17}{s['TP']:>4}{s['FN']:>4}{s['FP']:>4}{s['TN']:>4}{undecided:>11}"
              f"{pct(s['recall']):>9}{pct(s['precision']):>11}{pct(s['false_positive_rate']):>8}"
              f"{s['seconds']:>9.1f}")


def print_breakdown(scores: dict, key: str, title: str) -> None:
    names = list(scores)
    rows = sorted({k for s in scores.values() for k in s[key]})
    print(f"\n{title}")
    print(f"{'':<18}" + "".join(f"{n:>17}" for n in names))
    for row in rows:
        cells = []
        for name in names:
            entry = scores[name][key].get(row)
            cells.append(f"{entry['flagged']}/{entry['total']}" if entry else "-")
        print(f"{row:<18}" + "".join(f"{c:>17}" for c in cells))


# ---------------------------------------------------------------- main

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tools", default=",".join(SCRIPT_TOOLS))
    parser.add_argument("--jobs", type=int, default=2, help="files scanned at once (default 2)")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--output", default=str(RESULTS / "scripts.json"))
    args = parser.parse_args(argv)
    tools = [t for t in args.tools.split(",") if t]
    unknown = [t for t in tools if t not in SCRIPT_TOOLS]
    if unknown:
        parser.error(f"unknown tools {unknown}; choose from {', '.join(SCRIPT_TOOLS)}")
    if any(t != "malhug" for t in tools):
        install_peers()

    module = load_fixtures()
    fixtures = list(module.FIXTURES)
    paths = write_fixtures(fixtures)
    rows = [dict(name=f.name, label=f.label, family=f.family, variant=f.variant, notes=f.notes,
                 path=str(paths[f.name].relative_to(SCRIPTS)), runs={}) for f in fixtures]

    started = time.perf_counter()
    jobs = [(row, tool) for row in rows for tool in tools]

    def work(job):
        row, tool = job
        data = run_tool(tool, SCRIPTS / row["path"], timeout=args.timeout).to_dict()
        for key in ("path", "per_file", "tool"):
            data.pop(key)
        row["runs"][tool] = data

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for done, _ in enumerate(pool.map(work, jobs), 1):
            if done % 50 == 0:
                print(f"  {done}/{len(jobs)} runs", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - started

    scores = {tool: score(rows, tool, _main_reading) for tool in tools}
    for name, (tool, reading) in READINGS.items():
        if tool in tools:
            scores[name] = score(rows, tool, reading)

    folder_runs = {}
    for tool in tools:
        run = run_tool(tool, SCRIPTS, timeout=args.timeout * 10)
        flagged = defaultdict(int)
        for rel, verdict in run.per_file.items():
            if verdict in FLAGGED:
                flagged[Path(rel).parts[0] if Path(rel).parts else rel] += 1
        folder_runs[tool] = {"verdict": run.verdict, "seconds": round(run.seconds, 3),
                             "peak_mb": round(run.peak_mb, 1), "files": len(rows),
                             "flagged_by_label": dict(flagged)}

    def wrong(row, name):
        tool, reading = (name, _main_reading) if name in tools else READINGS[name]
        got = reading(row["runs"][tool])
        return got != ("flagged" if row["label"] == "malicious" else "clean")

    misses = {name: [{"name": r["name"], "label": r["label"], "family": r["family"], "variant": r["variant"],
                      "verdict": r["runs"][name]["verdict"], "detail": r["runs"][name]["detail"]}
                     for r in rows if wrong(r, name)]
              for name in tools}
    n_mal = sum(r["label"] == "malicious" for r in rows)
    result = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "fixtures": str(SCRIPTS), "files": len(rows),
              "malicious": n_mal, "benign": len(rows) - n_mal, "versions": tool_versions(tools),
              "seconds": round(elapsed, 1), "mapping": {
                  "malhug": "malicious or suspicious = flagged; inconclusive/error = undecided",
                  "guarddog": "any source-code rule match = flagged",
                  "bandit": "any issue of severity MEDIUM or HIGH = flagged",
                  "bandit-any": "any bandit issue = flagged",
                  "guarddog-threat": "any threat-* rule match = flagged",
                  "guarddog-risk": "guarddog risk label suspicious or high_risk = flagged"},
              "scores": scores, "folder_runs": folder_runs, "misses": misses, "files_detail": rows}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2))

    print(f"\nPython scripts {SCRIPTS} -- {len(rows)} files ({n_mal} malicious, {len(rows) - n_mal} benign), "
          f"one process per file and tool; {result['date']}")
    print_scores(scores)
    print("undecided = malicious+benign files not answered (inconclusive, tool error); seconds = all "
          "per-file runs added up")
    print_breakdown(scores, "per_family_recall", "per-family recall (malicious files flagged / files of that family)")
    print_breakdown(scores, "per_variant_recall", "per-shape recall (malicious files flagged / files of that shape)")
    print("\nwhole folder in one process per tool")
    for tool, f in folder_runs.items():
        counts = ", ".join(f"{k} {v}" for k, v in sorted(f["flagged_by_label"].items())) or "none"
        print(f"  {tool:<10} {f['seconds']:>7.2f}s  peak {f['peak_mb']:>6.1f} MB  flagged: {counts}  "
              f"(verdict {f['verdict']})")
    for tool in tools:
        if misses[tool]:
            print(f"\n{tool}: {len(misses[tool])} files not answered as labelled")
            for miss in misses[tool]:
                print(f"  {miss['label']:<9} {miss['verdict']:<12} {miss['name']:<34} {miss['detail'][:90]}")
    print(f"\nwritten: {args.output} ({elapsed:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
