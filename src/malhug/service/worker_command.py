"""`malhug worker`: scan queued files.

With the embedded queue (default) it runs a pool of worker processes over the SQLite job table;
with `--queue celery` it runs a Celery worker (prefork pool) consuming the broker's scan queue.
Each file is scanned in an isolated process with resource limits either way.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("worker")
    group.add_argument("--processes", type=_positive_int, default=max(1, os.cpu_count() or 1),
                       help="worker processes (default: one per CPU)")
    group.add_argument("--drain", action="store_true",
                       help="embedded queue: stop once nothing is queued or running")
    group.add_argument("--max-tasks-per-child", type=_positive_int, default=200,
                       help="recycle a worker process after this many jobs (default 200)")
    group.add_argument("--soft-time-limit", type=_positive_float, default=300.0,
                       help="seconds after which a job's attempt fails (default 300)")
    group.add_argument("--time-limit", type=_positive_float, default=360.0,
                       help="seconds after which the worker process is killed and the job "
                            "redelivered (default 360; must exceed the soft limit)")
    group.add_argument("--max-attempts", type=_positive_int,
                       help="the poison cap: attempts before a file is given up (MALHUG_MAX_ATTEMPTS, default 3)")
    group.add_argument("--lease-seconds", type=_positive_float,
                       help="embedded queue: how long a claimed job stays leased without a heartbeat "
                            "(MALHUG_LEASE_SECONDS, default 600)")
    group.add_argument("--handlers", default=None, metavar="MODULE:FUNCTION",
                       help="what handling a job means (default: scan it and store the result)")
    group.add_argument("--loglevel", default="INFO", help="log level (default INFO)")


def main(args, settings) -> int:
    import dataclasses
    import logging

    logging.basicConfig(level=args.loglevel.upper(), format="%(asctime)s %(process)d %(name)s: %(message)s")
    overrides = {name: value for name, value in (("max_attempts", args.max_attempts),
                                                 ("lease_seconds", args.lease_seconds)) if value is not None}
    settings = dataclasses.replace(settings, **overrides)
    if args.time_limit <= args.soft_time_limit:
        print("malhug: error: --time-limit must exceed --soft-time-limit", file=sys.stderr)
        return 3
    from .worker import DEFAULT_HANDLERS

    try:
        _check_handlers(args.handlers or DEFAULT_HANDLERS)
    except (ImportError, ValueError) as exc:
        print(f"malhug: error: --handlers: {exc}", file=sys.stderr)
        return 3
    if settings.queue == "celery":
        return _celery_worker(args, settings)
    return _embedded_pool(args, settings)


def _embedded_pool(args, settings) -> int:
    from .worker import DEFAULT_HANDLERS, PoolOptions, run_pool

    options = PoolOptions(handlers=args.handlers or DEFAULT_HANDLERS, soft_time_limit=args.soft_time_limit,
                          time_limit=args.time_limit, max_tasks_per_child=args.max_tasks_per_child)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda number, frame: stop.set())
    return run_pool(settings, args.processes, stop=stop, drain=args.drain, options=options)


def _celery_worker(args, settings) -> int:
    from .queue.celery_queue import QUEUE_NAME, make_app

    _preload(args.handlers)
    app = make_app(settings, handlers=args.handlers, soft_time_limit=args.soft_time_limit,
                   time_limit=args.time_limit, max_tasks_per_child=args.max_tasks_per_child)
    argv = ["worker", "--pool=prefork", f"--concurrency={args.processes}", f"--queues={QUEUE_NAME}",
            f"--loglevel={args.loglevel.upper()}", "--without-gossip", "--without-mingle",
            "--without-heartbeat", f"--hostname=malhug@{os.uname().nodename}.{os.getpid()}"]
    app.worker_main(argv=argv)
    return 0


def _check_handlers(spec: str) -> None:
    from .worker import handlers_factory

    handlers_factory(spec)


def _preload(handlers: str | None) -> None:
    """Import what handling needs before the pool forks, so that each worker process (and each
    one that replaces a process that died or was recycled) starts ready."""
    import importlib

    from .worker import DEFAULT_HANDLERS, PRELOAD

    for name in (*PRELOAD, (handlers or DEFAULT_HANDLERS).partition(":")[0]):
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value
