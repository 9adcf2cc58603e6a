"""Remote scanning: a sharded PyTorch checkpoint served by a local hub, scanned as hf://.

    .venv/bin/python bench/run_remote.py [--quick] [--keep]

Writes a repository of zero-weight shards (quick: ~200 MB in 2 shards; full: ~5 GB in 5 shards)
with its index and config as a git repository, serves it on 127.0.0.1 twice — through olah
(which answers Range requests for mirrored files with the whole body) and through the small
range-capable hub of tests/helpers/hub_server.py (revision, tree and /resolve/ endpoints, LFS
sha256 for large files, as the real hub lists them) — and runs `malhug scan hf://acme/sharded`
in a fresh process against each. Reports verdict, seconds and the bytes malhug downloaded
against the repository's size. Needs the project's virtualenv (torch writes the shards, olah
serves them). The fixtures are removed at the end unless --keep. Results land in
bench/results/remote.json (remote-quick.json with --quick).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "tests" / "helpers"))

from hub_server import MiniHub, Olah, make_git_repo  # noqa: E402

WORK = BENCH / ".cache" / "remote"
RESULTS = BENCH / "results"
REPO_ID = "acme/sharded"
TENSORS_PER_SHARD = 4
SCAN_TIMEOUT = 1800
MODES = {"quick": (2, 100 * 10**6), "full": (5, 1000 * 10**6)}  # shards, bytes per shard


def write_shards(folder: Path, shards: int, shard_bytes: int) -> list[Path]:
    """torch.save of zero float32 tensors, one file per shard, and the index that maps them."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    weight_map, paths = {}, []
    each = shard_bytes // 4 // TENSORS_PER_SHARD
    for number in range(1, shards + 1):
        name = f"pytorch_model-{number:05d}-of-{shards:05d}.bin"
        state = {}
        for index in range(TENSORS_PER_SHARD):
            key = f"layers.{(number - 1) * TENSORS_PER_SHARD + index}.weight"
            state[key] = torch.zeros(each)
            weight_map[key] = name
        torch.save(state, folder / name)
        del state
        paths.append(folder / name)
    index = {"metadata": {"total_size": shards * each * 4 * TENSORS_PER_SHARD},
             "weight_map": weight_map}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index, indent=1))
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 4096}))
    paths += [folder / "pytorch_model.bin.index.json", folder / "config.json"]
    return paths


def build_repo(mirrors: Path, scratch: Path, shards: int, shard_bytes: int) -> tuple[Path, str]:
    files = write_shards(scratch, shards, shard_bytes)
    repo = mirrors / "models" / REPO_ID
    (sha,) = make_git_repo(repo, [{f.name: f for f in files}])
    return repo, sha


def scan(endpoint: str, target: str) -> dict:
    env = dict(os.environ, HF_ENDPOINT=endpoint)
    for name in ("HF_TOKEN", "HF_HUB_OFFLINE"):
        env.pop(name, None)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "malhug", "scan", target, "--format", "json"],
                          env=env, capture_output=True, text=True, timeout=SCAN_TIMEOUT)
    seconds = time.perf_counter() - started
    try:
        report = json.loads(done.stdout)
    except ValueError:
        return {"error": (done.stderr or done.stdout)[-2000:], "exit": done.returncode,
                "seconds": round(seconds, 2)}
    repository = (report.get("repositories") or [{}])[0]
    fetched, total = repository.get("fetched_bytes"), repository.get("total_bytes")
    return {
        "verdict": report.get("summary", {}).get("verdict") or repository.get("verdict"),
        "exit": done.returncode,
        "seconds": round(seconds, 2),
        "fetched_bytes": fetched,
        "total_bytes": total,
        "fetched_percent": round(100.0 * fetched / total, 3) if fetched is not None and total else None,
        "revision": repository.get("revision"),
        "files": len(report.get("files", [])),
        "errors": report.get("summary", {}).get("errors") or report.get("errors"),
        "warnings": [line for line in done.stderr.splitlines() if line.strip()][-3:],
    }


def check_disk(needed: int) -> None:
    WORK.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(WORK.parent).free
    print(f"disk: {free / 1e9:.1f} GB free in {WORK.parent}, about {needed / 1e9:.1f} GB needed")
    if free < needed:
        sys.exit("not enough free disk space for the fixtures")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="~200 MB in 2 shards instead of ~5 GB in 5")
    parser.add_argument("--keep", action="store_true", help="keep the fixtures in bench/.cache/remote")
    args = parser.parse_args()
    mode = "quick" if args.quick else "full"
    shards, shard_bytes = MODES[mode]
    # the working tree, olah's temporary copies and one shard kept by malhug for the olah run
    check_disk(shards * shard_bytes + 2 * shard_bytes + (1 << 30))
    if WORK.exists():
        shutil.rmtree(WORK)
    results = {"mode": mode, "shards": shards, "shard_bytes": shard_bytes, "runs": {}}
    try:
        olah = Olah(WORK)
        started = time.perf_counter()
        repo, sha = build_repo(olah.mirrors, WORK / "scratch", shards, shard_bytes)
        print(f"repository written in {time.perf_counter() - started:.1f}s: {repo} @ {sha[:12]}")
        target = f"hf://{REPO_ID}"
        with olah:
            results["runs"]["olah"] = scan(olah.endpoint, target)
            print("olah:", json.dumps(results["runs"]["olah"]))
        hub = MiniHub(honour_range=True)
        hub.add("model", REPO_ID, repo)
        with hub:
            results["runs"]["range_hub"] = scan(hub.endpoint, target)
            results["runs"]["range_hub"]["server_body_bytes"] = hub.body_bytes
            print("range hub:", json.dumps(results["runs"]["range_hub"]))
    finally:
        if not args.keep:
            shutil.rmtree(WORK, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("remote-quick.json" if args.quick else "remote.json")
    out.write_text(json.dumps(results, indent=2) + "\n")
    print()
    print("| server | verdict | seconds | fetched | repository | share |")
    print("|---|---|---:|---:|---:|---:|")
    for name, run in results["runs"].items():
        if "error" in run:
            print(f"| {name} | error: {run['error'][:80]} | {run['seconds']} | | | |")
            continue
        print(f"| {name} | {run['verdict']} | {run['seconds']:.2f} | {_mb(run['fetched_bytes'])} | "
              f"{_mb(run['total_bytes'])} | {run['fetched_percent']}% |")
    print(f"\nwritten {out}")


def _mb(value) -> str:
    return "-" if value is None else f"{value / 1e6:.2f} MB"


if __name__ == "__main__":
    main()
