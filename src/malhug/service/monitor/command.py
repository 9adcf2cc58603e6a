"""`malhug monitor`: keep the verdicts of a hub endpoint's, a mirror's or a list's repositories current.

Imports only the standard library at module level (the scanner's own commands must start fast).
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

DEFAULT_INTERVAL = 300.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_argument_group("source (one of)")
    where.add_argument("--endpoint", default=None,
                       help="a Hugging Face compatible endpoint (default $HF_ENDPOINT, else "
                            "https://huggingface.co); repositories are listed through its API, or "
                            "taken from --repos / --repos-file")
    where.add_argument("--mirrors", metavar="DIR",
                       help="a folder of git mirrors: DIR/<models|datasets|spaces>/<org>/<name>")
    where.add_argument("--repos", nargs="+", metavar="ID",
                       help="only these repositories of the endpoint (org/name, datasets/org/name ...)")
    where.add_argument("--repos-file", metavar="FILE",
                       help="repository ids one a line: the endpoint's list when its API lists none")
    parser.add_argument("--kinds", default="model,dataset",
                        help="repository kinds to watch, comma-separated: model,dataset,space "
                             "(default model,dataset)")
    parser.add_argument("--sort", choices=("downloads", "lastModified", "likes"), default="downloads",
                        help="order of the endpoint's API listing (default downloads)")
    parser.add_argument("--limit", type=int, default=None,
                        help="list at most this many repositories of each kind from the endpoint's API")
    parser.add_argument("--once", action="store_true",
                        help="one pass, then exit (with --workers: after the queue is drained)")
    parser.add_argument("--backfill", action="store_true",
                        help="check every repository at backfill priority (below new commits); the "
                             "first pass over a source the store does not know backfills by itself")
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL, metavar="SECONDS",
                        help=f"seconds between passes (default {DEFAULT_INTERVAL:g})")
    parser.add_argument("--workers", type=int, default=0, metavar="N",
                        help="also run N local workers of the embedded queue in this command")


def main(args, settings) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        kinds = _kinds(args.kinds)
        source = _source(args)
    except (ValueError, OSError) as exc:
        print(f"malhug monitor: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from .sources import SourceError

        if isinstance(exc, SourceError):
            print(f"malhug monitor: error: {exc}", file=sys.stderr)
            return 2
        raise
    if args.workers and settings.queue != "sqlite":
        print("malhug monitor: error: --workers runs workers of the embedded (sqlite) queue; "
              "start `malhug worker` for the celery queue", file=sys.stderr)
        return 2
    from ..queue import open_queue
    from ..store.store import Store
    from .monitor import check_once, watch

    settings.state_dir.mkdir(parents=True, exist_ok=True)
    store = Store(settings.store_url)
    queue = open_queue(settings)
    stop = threading.Event()
    _stop_on_signals(stop)
    try:
        if args.once:
            result = check_once(source, store, queue, kinds=kinds, backfill=True if args.backfill else None,
                                stop=stop)
            _report(result)
            if args.workers:
                from ..worker import run_pool

                run_pool(settings, args.workers, stop=stop, drain=True)
            return 1 if result.errors and not result.repos_checked else 0
        workers = None
        if args.workers:
            workers = threading.Thread(target=_run_workers, args=(settings, args.workers, stop),
                                       name="malhug-workers", daemon=True)
            workers.start()
        watch(source, store, queue, interval=args.interval, stop=stop, kinds=kinds,
              backfill=True if args.backfill else None, on_pass=_report)
        stop.set()
        if workers is not None:
            workers.join(timeout=60)
        return 0
    finally:
        queue.close()
        store.dispose()


def _run_workers(settings, processes: int, stop: threading.Event) -> None:
    from ..worker import run_pool

    run_pool(settings, processes, stop=stop, drain=False)


def _kinds(text: str) -> tuple:
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in ("model", "dataset", "space")]
    if unknown or not kinds:
        raise ValueError(f"--kinds takes model, dataset and space, not {','.join(unknown) or 'nothing'}")
    return kinds


def _source(args):
    from .sources import GitMirrorsSource, HubEndpointSource, RepoListSource, read_list_file

    if args.mirrors:
        if args.repos or args.repos_file:
            raise ValueError("--mirrors takes no --repos or --repos-file")
        return GitMirrorsSource(args.mirrors)
    endpoint = (args.endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    if not endpoint.startswith(("http://", "https://")):
        raise ValueError(f"--endpoint must be an http(s) URL, not {endpoint!r}")
    if args.repos:
        return RepoListSource(endpoint, args.repos)
    if args.repos_file:
        read_list_file(args.repos_file)  # an unreadable file is an error now, not at the first pass
    return HubEndpointSource(endpoint, list_file=args.repos_file, sort=args.sort, limit=args.limit)


def _report(result) -> None:
    print(f"monitor pass ({result.mode}): {result.repos_checked} repositories checked, "
          f"{result.repos_unchanged} unchanged, {result.revisions_new} new revisions, "
          f"{result.files_queued} files queued, {result.files_known} known, "
          f"{result.files_rescan} re-scans, {result.repos_gone} gone, {result.errors} errors "
          f"in {result.seconds:.1f}s", flush=True)


def _stop_on_signals(stop: threading.Event) -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
