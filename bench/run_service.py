"""The hub-scale service on a simulated mirror: monitor throughput with dedup, scan throughput,
new-commit-to-verdict latency, and the machines a full-hub backfill would need.

    .venv/bin/python bench/run_service.py [--repos 10000] [--distinct 300] [--workers 2] [--keep]

Builds a folder of git mirrors (`<root>/<models|datasets>/<org>/<name>`) of N repositories whose
files come from a pool of a few hundred distinct files (configs, READMEs, tokenizers, pickled
and safetensors weights, dataset files, a few pickles with an inert `os.system('id')` call). All
objects are written once with `git fast-import` into one shared object store, and each mirror
is a bare repository that borrows them (`objects/info/alternates`), so 10,000 repositories take
seconds to make, not 10,000 slow commits.

Then, with the embedded SQLite store and queue in a fresh state folder:
1. backfill: one monitor pass over every repository (no workers running): repositories
   recorded per minute, files referenced, files queued after dedup;
2. scan: N embedded worker processes drain the queue: distinct files scanned per minute;
3. latency: with the queue idle, the monitor watching and the workers waiting, a commit adds a
   malicious pickle to one repository: seconds until that repository's verdict is malicious.

Prints the figures and the extrapolation to 705K models + 176K datasets (the machines needed
to backfill them in 24 hours, under a stated distinct-file ratio), and writes
bench/results/service.json. The mirror is removed at the end unless --keep.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import shutil
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "src"))

WORK = BENCH / ".cache" / "service"
RESULTS = BENCH / "results"
HUB_MODELS = 705_000
HUB_DATASETS = 176_000
DAY_SECONDS = 24 * 3600
LATENCY_TIMEOUT = 300  # seconds
# the real hub shares far fewer files than the simulation: most weight files are unique to one
# repository, while configs, READMEs, tokenizers and licences repeat. The extrapolation assumes:
HUB_FILES_PER_REPO = 12.0
HUB_DISTINCT_RATIO = 0.5  # distinct (content, suffix) keys per referenced file
GIT_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid",
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}


class InertCall:
    """Pickled with a `__reduce__` naming os.system('id'): written, never loaded."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


# -- the pool of distinct files --------------------------------------------------------------------
def safetensors_bytes(rng: random.Random, floats: int) -> bytes:
    header = json.dumps({"weight": {"dtype": "F32", "shape": [floats], "data_offsets": [0, floats * 4]},
                         "__metadata__": {"format": "pt", "seed": str(rng.random())}}).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + bytes(floats * 4)


def file_pool(distinct: int, seed: int) -> dict[str, list[bytes]]:
    """Distinct contents by role; about 3% of the weights are malicious pickles."""
    rng = random.Random(seed)
    share = {"config": 0.22, "readme": 0.18, "tokenizer": 0.10, "pickle": 0.20, "safetensors": 0.15,
             "data": 0.15}
    pool: dict[str, list[bytes]] = {role: [] for role in share}
    for role, part in share.items():
        for number in range(max(2, int(distinct * part))):
            if role == "config":
                data = json.dumps({"model_type": rng.choice(["llama", "bert", "gpt2", "t5"]),
                                   "hidden_size": 64 * (number + 1), "layers": number % 48}).encode()
            elif role == "readme":
                data = (f"---\nlicense: apache-2.0\n---\n# Model card {number}\n\n" +
                        "Lorem ipsum dolor sit amet. " * rng.randint(5, 200)).encode()
            elif role == "tokenizer":
                vocab = {f"tok{i}_{number}": i for i in range(rng.randint(100, 3000))}
                data = json.dumps({"version": "1.0", "model": {"type": "BPE", "vocab": vocab}}).encode()
            elif role == "pickle":
                if number % 33 == 5:
                    data = pickle.dumps({"state": InertCall(f"id # {number}")}, protocol=2)
                else:
                    data = pickle.dumps({"layer.weight": [rng.random() for _ in range(rng.randint(10, 20000))],
                                         "step": number}, protocol=2)
            elif role == "safetensors":
                data = safetensors_bytes(rng, rng.randint(256, 250_000))
            else:
                data = "\n".join(json.dumps({"text": f"row {i} of {number}"})
                                 for i in range(rng.randint(10, 2000))).encode() + b"\n"
            pool[role].append(data)
    return pool


def repo_files(rng: random.Random, pool: dict, kind: str) -> dict[str, bytes]:
    if kind == "dataset":
        files = {"README.md": rng.choice(pool["readme"]), "data/train.jsonl": rng.choice(pool["data"])}
        if rng.random() < 0.5:
            files["data/test.jsonl"] = rng.choice(pool["data"])
        return files
    files = {"config.json": rng.choice(pool["config"]), "README.md": rng.choice(pool["readme"])}
    if rng.random() < 0.6:
        files["tokenizer.json"] = rng.choice(pool["tokenizer"])
    if rng.random() < 0.5:
        files["pytorch_model.bin"] = rng.choice(pool["pickle"])
    else:
        files["model.safetensors"] = rng.choice(pool["safetensors"])
    return files


# -- the mirror --------------------------------------------------------------------------------------
def build_mirror(root: Path, repos: int, distinct: int, seed: int = 7) -> dict:
    """Every repository as a bare git mirror borrowing objects from one shared store."""
    started = time.monotonic()
    if root.exists():
        shutil.rmtree(root)
    shared = root / "shared.git"
    subprocess.run(["git", "init", "-q", "--bare", str(shared)], check=True, env=dict(os.environ, **GIT_ENV))
    pool = file_pool(distinct, seed)
    rng = random.Random(seed)
    marks: dict[bytes, int] = {}
    stream = bytearray()
    for contents in pool.values():
        for data in contents:
            if data not in marks:
                marks[data] = len(marks) + 1
                stream += b"blob\nmark :%d\ndata %d\n" % (marks[data], len(data)) + data + b"\n"
    layout = []
    referenced = set()
    for number in range(repos):
        kind = "dataset" if number % 5 == 4 else "model"
        name = f"org{number % 997:03d}/{kind}-{number:05d}"
        files = repo_files(rng, pool, kind)
        mark = len(marks) + 1 + number
        message = f"add {name}\n".encode()
        stream += (b"commit refs/heads/r%d\nmark :%d\ncommitter bench <bench@example.invalid> 1700000000 +0000\n"
                   b"data %d\n" % (number, mark, len(message)) + message)
        for path, data in sorted(files.items()):
            stream += b"M 100644 :%d %s\n" % (marks[data], path.encode())
            referenced.add((data, path.rsplit(".", 1)[-1]))
        stream += b"\n"
        layout.append((kind, name, mark, len(files)))
    marks_file = root / "marks"
    subprocess.run(["git", f"--git-dir={shared}", "fast-import", "--quiet", f"--export-marks={marks_file}"],
                   input=bytes(stream), check=True, env=dict(os.environ, **GIT_ENV))
    shas = {}
    for line in marks_file.read_text().splitlines():
        mark, sha = line.split()
        shas[int(mark[1:])] = sha
    objects = (shared / "objects").resolve()
    for kind, name, mark, _ in layout:
        gdir = root / f"{kind}s" / name
        (gdir / "refs" / "heads").mkdir(parents=True)
        (gdir / "objects" / "info").mkdir(parents=True)
        (gdir / "HEAD").write_text("ref: refs/heads/main\n")
        (gdir / "config").write_text("[core]\n\trepositoryformatversion = 0\n\tbare = true\n")
        (gdir / "refs" / "heads" / "main").write_text(shas[mark] + "\n")
        (gdir / "objects" / "info" / "alternates").write_text(f"{objects}\n")
    return {"seconds": time.monotonic() - started, "distinct_contents": len(marks),
            "distinct_keys": len(referenced), "files_referenced": sum(item[3] for item in layout),
            "repos": repos, "models": sum(1 for item in layout if item[0] == "model"),
            "datasets": sum(1 for item in layout if item[0] == "dataset")}


def commit_file(gdir: Path, path: str, data: bytes) -> str:
    """A new commit on the mirror's main adding one top-level file, with git plumbing."""
    env = dict(os.environ, **GIT_ENV)

    def git(*args, input=None):
        return subprocess.run(["git", f"--git-dir={gdir}", *args], input=input, capture_output=True,
                              check=True, env=env).stdout

    head = (gdir / "refs" / "heads" / "main").read_text().strip()
    blob = git("hash-object", "-w", "--stdin", input=data).decode().strip()
    tree = git("ls-tree", head) + f"100644 blob {blob}\t{path}\n".encode()
    new_tree = git("mktree", input=tree).decode().strip()
    sha = git("commit-tree", new_tree, "-p", head, "-m", f"add {path}").decode().strip()
    git("update-ref", "refs/heads/main", sha, head)
    return sha


# -- the measurements ------------------------------------------------------------------------------------
def verdict_of(store, source: str, kind: str, name: str):
    from sqlalchemy import select

    from malhug.service.store.models import Repo

    with store.session() as session:
        return session.scalar(select(Repo.verdict).where(Repo.source == source, Repo.kind == kind,
                                                         Repo.name == name))


def verdict_counts(store) -> dict:
    from sqlalchemy import func, select

    from malhug.service.store.models import Repo

    with store.session() as session:
        rows = session.execute(select(Repo.verdict, func.count()).group_by(Repo.verdict)).all()
    return {str(verdict): count for verdict, count in rows}


def run(args) -> dict:
    from malhug.service.monitor.monitor import check_once, watch
    from malhug.service.monitor.sources import GitMirrorsSource
    from malhug.service.queue import open_queue
    from malhug.service.settings import ServiceSettings
    from malhug.service.store.store import Store
    from malhug.service.worker import run_pool

    root = WORK / "mirror"
    print(f"building a mirror of {args.repos} repositories from ~{args.distinct} distinct files ...", flush=True)
    built = build_mirror(root, args.repos, args.distinct)
    print(f"  built in {built['seconds']:.1f}s: {built['files_referenced']} files referenced, "
          f"{built['distinct_keys']} distinct", flush=True)
    state = WORK / "state"
    if state.exists():
        shutil.rmtree(state)
    settings = ServiceSettings.from_env({}, state_dir=state, lease_seconds=120.0)
    store = Store(settings.store_url)
    queue = open_queue(settings)
    source = GitMirrorsSource(root)

    print("backfill: one monitor pass ...", flush=True)
    started = time.monotonic()
    backfill = check_once(source, store, queue, kinds=("model", "dataset"))
    monitor_seconds = time.monotonic() - started
    print(f"  {backfill.repos_checked} repositories in {monitor_seconds:.1f}s, {backfill.files_queued} files "
          f"queued of {backfill.files_referenced} referenced, {backfill.errors} errors", flush=True)

    print(f"scan: {args.workers} embedded workers drain the queue ...", flush=True)
    started = time.monotonic()
    run_pool(settings, args.workers, drain=True)
    scan_seconds = time.monotonic() - started
    counts = verdict_counts(store)
    print(f"  {backfill.files_queued} files in {scan_seconds:.1f}s; repository verdicts {counts}", flush=True)

    print("latency: new commit to verdict with an idle queue ...", flush=True)
    stop = threading.Event()
    passes = []
    pool = threading.Thread(target=run_pool, args=(settings, args.workers), kwargs={"stop": stop}, daemon=True)
    monitor = threading.Thread(target=watch, args=(source, store, queue),
                               kwargs={"interval": args.interval, "stop": stop, "backfill": False,
                                       "on_pass": passes.append}, daemon=True)
    pool.start()
    monitor.start()
    latency = None
    try:
        time.sleep(3.0)  # the workers are up and the watch loop is in its rhythm
        target = ("model", "org000/model-00000")
        committed = time.monotonic()
        commit_file(root / "models" / target[1], "payload.pkl",
                    pickle.dumps(InertCall("id # new commit"), protocol=2))
        while time.monotonic() - committed < LATENCY_TIMEOUT:
            if verdict_of(store, source.location, *target) == "malicious":
                latency = time.monotonic() - committed
                break
            time.sleep(0.05)
    finally:
        stop.set()
        monitor.join(timeout=300)
        pool.join(timeout=120)
    idle_passes = [p.seconds for p in passes if p.revisions_new == 0]
    print(f"  {latency:.1f}s" if latency is not None else f"  no verdict within {LATENCY_TIMEOUT}s", flush=True)
    queue.close()
    store.dispose()
    if not args.keep:
        shutil.rmtree(WORK)
    return summarise(args, built, backfill, monitor_seconds, scan_seconds, counts, latency, idle_passes)


def summarise(args, built, backfill, monitor_seconds, scan_seconds, counts, latency, idle_passes) -> dict:
    repos = built["repos"]
    total = monitor_seconds + scan_seconds
    per_repo = monitor_seconds / repos  # listing, diffing, recording, queueing on this machine
    per_file = scan_seconds / max(1, backfill.files_queued)  # fetch + isolated scan, `workers` at once
    hub_repos = HUB_MODELS + HUB_DATASETS
    measured_rate = repos / total * 60
    machines_measured = hub_repos / (measured_rate * 60 * 24)
    hub_distinct = hub_repos * HUB_FILES_PER_REPO * HUB_DISTINCT_RATIO
    hub_seconds = hub_repos * per_repo + hub_distinct * per_file
    figures = {
        "machine": {"cores": os.cpu_count(), "workers": args.workers},
        "mirror": built,
        "backfill": {"repos": backfill.repos_checked, "errors": backfill.errors,
                     "files_referenced": backfill.files_referenced, "files_queued": backfill.files_queued,
                     "files_known": backfill.files_known, "monitor_seconds": round(monitor_seconds, 2),
                     "monitor_repos_per_minute": round(repos / monitor_seconds * 60)},
        "scan": {"files_scanned": backfill.files_queued, "seconds": round(scan_seconds, 2),
                 "files_per_minute": round(backfill.files_queued / scan_seconds * 60, 1),
                 "repository_verdicts": counts},
        "end_to_end": {"seconds": round(total, 2), "repos_per_minute": round(measured_rate),
                       "files_scanned_per_referenced": round(backfill.files_queued /
                                                             max(1, backfill.files_referenced), 4)},
        "latency": {"new_commit_to_verdict_seconds": None if latency is None else round(latency, 2),
                    "watch_interval_seconds": args.interval,
                    "idle_pass_seconds": round(sum(idle_passes) / len(idle_passes), 2) if idle_passes else None},
        "extrapolation": {
            "hub_models": HUB_MODELS, "hub_datasets": HUB_DATASETS,
            "at_measured_rate": {"days_one_machine": round(hub_repos / measured_rate / 60 / 24, 2),
                                 "machines_for_24h": max(1, round(machines_measured + 0.4999))},
            "at_assumed_hub_sharing": {
                "files_per_repo": HUB_FILES_PER_REPO, "distinct_ratio": HUB_DISTINCT_RATIO,
                "distinct_files": int(hub_distinct), "seconds_per_repo": round(per_repo, 5),
                "seconds_per_distinct_file": round(per_file, 4),
                "machine_days": round(hub_seconds / DAY_SECONDS, 1),
                "machines_for_24h": max(1, round(hub_seconds / DAY_SECONDS + 0.4999)),
                "note": "the simulated files are small (up to ~1 MB); real weight files are larger, "
                        "though malhug reads only the header of a safetensors file and streams pickles "
                        "once; scale seconds_per_distinct_file by the measured per-GB speed for a "
                        "byte-heavy estimate"},
        },
    }
    return figures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repos", type=int, default=10_000)
    parser.add_argument("--distinct", type=int, default=300, help="distinct files in the pool (about)")
    parser.add_argument("--workers", type=int, default=2, help="embedded worker processes")
    parser.add_argument("--interval", type=float, default=1.0, help="watch interval for the latency run")
    parser.add_argument("--keep", action="store_true", help="keep the mirror and the state folder")
    parser.add_argument("--output", type=Path, default=RESULTS / "service.json")
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING)
    figures = run(args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(figures, indent=2) + "\n")
    e2e, ext = figures["end_to_end"], figures["extrapolation"]
    print(f"\nrepos per minute (monitor + scan, with dedup): {e2e['repos_per_minute']}")
    print(f"files scanned / referenced: {figures['scan']['files_scanned']} / "
          f"{figures['backfill']['files_referenced']}")
    print(f"new commit to verdict, idle queue: {figures['latency']['new_commit_to_verdict_seconds']} s")
    print(f"705K models + 176K datasets: {ext['at_measured_rate']['machines_for_24h']} machine(s) for 24 h at "
          f"the measured rate; {ext['at_assumed_hub_sharing']['machines_for_24h']} at "
          f"{HUB_FILES_PER_REPO:g} files per repository, {HUB_DISTINCT_RATIO:.0%} distinct")
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
