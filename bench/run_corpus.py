"""Accuracy on the public picklescan regression samples, every tool on every labelled file.

    python bench/run_corpus.py [--corpus ../shared/corpus/picklescan] [--tools ...] [--jobs 2]

The corpus is read in place (it is never copied into the project). labels.jsonl gives, per
line, `path` (relative to the corpus folder), `label` (malicious / benign), `format` and
`technique`. Each tool scans each file in its own process, so that one file cannot spoil the
answer for another (a crash in a folder run would hide every later file).

Per file a tool's answer is one of: flagged (malicious or suspicious), clean, or not decided
(malhug inconclusive, modelscan "nothing scanned", an error, a time-out). Per tool:
  TP / FN       malicious files flagged / said clean
  FP / TN       benign files flagged / said clean
  errors        files not decided (malicious and benign counted apart)
  recall        TP / all malicious          (an undecided malicious file is a miss)
  precision     TP / (TP + FP)
  FPR           FP / all benign
  recall, not clean   (all malicious - FN) / all malicious: what a gate that blocks anything
                      not reported clean would stop
Writes bench/results/corpus.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import FLAGGED, RESULTS, TOOLS, install_peers, run_tool, tool_versions  # noqa: E402

# shared/ sits beside the checkout
DEFAULT_CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus" / "picklescan"


def outcome(verdict: str) -> str:
    if verdict in FLAGGED:
        return "flagged"
    if verdict == "clean":
        return "clean"
    return "undecided"


def ratio(a: int, b: int):
    return round(a / b, 4) if b else None


def score(rows: list[dict], tool: str) -> dict:
    c = defaultdict(int)
    per_format = defaultdict(lambda: [0, 0])
    for row in rows:
        got = outcome(row["runs"][tool]["verdict"])
        key = {("malicious", "flagged"): "TP", ("malicious", "clean"): "FN", ("malicious", "undecided"): "errors_malicious",
               ("benign", "flagged"): "FP", ("benign", "clean"): "TN", ("benign", "undecided"): "errors_benign"}[(row["label"], got)]
        c[key] += 1
        if row["label"] == "malicious":
            per_format[row["format"]][1] += 1
            per_format[row["format"]][0] += got == "flagged"
    positives = c["TP"] + c["FN"] + c["errors_malicious"]
    negatives = c["FP"] + c["TN"] + c["errors_benign"]
    return {
        "TP": c["TP"], "FP": c["FP"], "FN": c["FN"], "TN": c["TN"],
        "errors": c["errors_malicious"] + c["errors_benign"],
        "errors_malicious": c["errors_malicious"], "errors_benign": c["errors_benign"],
        "malicious": positives, "benign": negatives,
        "recall": ratio(c["TP"], positives),
        "precision": ratio(c["TP"], c["TP"] + c["FP"]),
        "false_positive_rate": ratio(c["FP"], negatives),
        "recall_not_clean": ratio(positives - c["FN"], positives),
        "per_format_recall": {fmt: {"flagged": a, "total": n, "recall": ratio(a, n)}
                              for fmt, (a, n) in sorted(per_format.items())},
    }


def pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--jobs", type=int, default=2, help="files scanned at once (default 2)")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--output", default=str(RESULTS / "corpus.json"))
    args = parser.parse_args(argv)
    corpus = Path(args.corpus)
    labels_file = corpus / "labels.jsonl"
    if not labels_file.exists():
        print(f"no corpus at {corpus} (labels.jsonl missing): nothing to do", file=sys.stderr)
        return 0
    tools = [t for t in args.tools.split(",") if t]
    if any(t != "malhug" for t in tools):
        install_peers()
    labels = [json.loads(line) for line in labels_file.read_text().splitlines() if line.strip()]
    rows = [dict(path=l["path"], label=l["label"], format=l["format"], technique=l["technique"], runs={})
            for l in labels]

    started = time.perf_counter()
    jobs = [(row, tool) for row in rows for tool in tools]

    def work(job):
        row, tool = job
        run = run_tool(tool, corpus / row["path"], timeout=args.timeout)
        data = run.to_dict()
        for key in ("path", "per_file", "tool"):
            data.pop(key)
        row["runs"][tool] = data

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for done, _ in enumerate(pool.map(work, jobs), 1):
            if done % 50 == 0:
                print(f"  {done}/{len(jobs)} runs", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - started

    scores = {tool: score(rows, tool) for tool in tools}
    misses = {tool: [{"path": r["path"], "label": r["label"], "format": r["format"], "technique": r["technique"],
                      "verdict": r["runs"][tool]["verdict"], "detail": r["runs"][tool]["detail"]}
                     for r in rows
                     if outcome(r["runs"][tool]["verdict"]) != ("flagged" if r["label"] == "malicious" else "clean")]
              for tool in tools}
    result = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "corpus": str(corpus), "files": len(rows),
              "versions": tool_versions(), "seconds": round(elapsed, 1), "scores": scores,
              "misses": misses, "files_detail": rows}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2))

    n_mal = sum(r["label"] == "malicious" for r in rows)
    print(f"\ncorpus {corpus} -- {len(rows)} files ({n_mal} malicious, {len(rows) - n_mal} benign), "
          f"one process per file and tool; {result['date']}")
    print(f"{'tool':<12}{'TP':>5}{'FN':>5}{'FP':>5}{'TN':>5}{'errors':>9}{'recall':>9}{'precision':>11}"
          f"{'FPR':>8}{'recall, not clean':>20}")
    for tool, s in scores.items():
        errors = f"{s['errors_malicious']}+{s['errors_benign']}"
        print(f"{tool:<12}{s['TP']:>5}{s['FN']:>5}{s['FP']:>5}{s['TN']:>5}{errors:>9}{pct(s['recall']):>9}"
              f"{pct(s['precision']):>11}{pct(s['false_positive_rate']):>8}{pct(s['recall_not_clean']):>20}")
    print("errors = undecided files, malicious+benign (inconclusive, nothing scanned, tool error)")
    formats = sorted({f for s in scores.values() for f in s["per_format_recall"]})
    print(f"\nper-format recall (malicious files flagged / malicious files of that format)")
    print(f"{'format':<16}" + "".join(f"{t:>14}" for t in tools))
    for fmt in formats:
        cells = []
        for tool in tools:
            entry = scores[tool]["per_format_recall"].get(fmt)
            cells.append(f"{entry['flagged']}/{entry['total']}" if entry else "-")
        print(f"{fmt:<16}" + "".join(f"{c:>14}" for c in cells))
    for tool in tools:
        if misses[tool]:
            print(f"\n{tool}: {len(misses[tool])} files not answered as labelled")
            for miss in misses[tool]:
                print(f"  {miss['label']:<9} {miss['verdict']:<12} {miss['path']}  {miss['detail'][:100]}")
    print(f"\nwritten: {args.output} ({elapsed:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
