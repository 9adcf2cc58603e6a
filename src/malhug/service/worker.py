"""Workers: take a job from the queue, handle it, and record how it went.

`process_claim` is the one piece both backends share: a claimed job is handled, then completed,
or failed (queued again, or poisoned after the maximum attempts: the file gets an inconclusive
result and an alert). A delivery whose attempt number is already past the cap means the earlier
attempts all died with their worker (killed, crashed, past the hard time limit): it is poisoned
without running the handler again.

`work` is the embedded worker's loop (claim, handle, complete or fail; a heartbeat keeps the
lease alive while a scan runs; SIGTERM stops it after the current job) and `run_pool` keeps a
number of such worker processes running over the SQLite queue, replacing any that dies.

What handling a job means is given by a handlers factory, named "module:function" so that
worker processes (spawned, or Celery's) can load it: it is called with the ServiceSettings and
returns `Handlers`. The default scans the file in an isolated process and stores the result
(malhug.service.handle).
"""
from __future__ import annotations

import dataclasses
import importlib
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from .jobs import ScanJob
from .queue.base import Claim, Disposition, JobQueue

log = logging.getLogger(__name__)

DEFAULT_HANDLERS = "malhug.service.handle:service_handlers"
POLL_SECONDS = 0.5  # an idle worker asks the queue again after this long
HARD_LIMIT_EXIT = 70  # exit status of a worker process that ended a job past its hard time limit
RECYCLED_EXIT = 75  # exit status of a worker process that handled its max_tasks_per_child


class SoftTimeLimitExceeded(Exception):
    """A job ran past its soft time limit: this attempt fails (and is retried or poisoned)."""


@dataclass
class Handlers:
    """handle(job) scans and stores a result; poison(job, error) gives the job up (an
    inconclusive result and an alert); close() releases what they hold.

    postpone_on: exceptions that say nothing about the file (the results store is down): the
    job is put back for `postpone_seconds` without counting the attempt, so an outage does
    not poison every file that happened to be in flight."""

    handle: Callable[[ScanJob], Any]
    poison: Callable[[ScanJob, str], Any]
    close: Callable[[], None] = lambda: None
    postpone_on: tuple = ()
    postpone_seconds: float = 5.0


def handlers_factory(spec: str) -> Callable[[Any], Handlers]:
    """The factory named by "module:function" (checked before any worker process starts)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"handlers must be named module:function, not {spec!r}")
    factory = getattr(importlib.import_module(module_name), attribute, None)
    if not callable(factory):
        raise ValueError(f"{spec!r} names no function")
    return factory


def load_handlers(spec: str, settings) -> Handlers:
    """Build the handlers named by "module:function" (a factory taking the settings)."""
    return handlers_factory(spec)(settings)


def worker_name(pid: int | None = None) -> str:
    """How a worker process signs its leases: host and process id."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


# -- one claimed job -------------------------------------------------------------------------------
def process_claim(queue: JobQueue, claim: Claim, handlers: Handlers, max_attempts: int) -> str:
    """Handle one claimed job and settle it with the queue: "done", "retry", "postponed" or
    "poisoned"."""
    job = claim.job
    if claim.attempt > max_attempts:
        error = (f"{claim.attempt - 1} attempts ended without a result: the worker handling the file "
                 "was lost (killed, crashed or past its hard time limit)")
        return _failed(queue, claim, handlers, error)
    try:
        handlers.handle(job)
    except handlers.postpone_on as exc:
        postpone = getattr(queue, "postpone", None)
        reason = f"postponed: {type(exc).__name__}: {exc}"
        if postpone is not None:
            log.warning("job %s (%s %s) %s", job.key, job.repo_id, job.path, reason)
            postpone(claim, handlers.postpone_seconds, reason)
            return "postponed"
        return _failed(queue, claim, handlers, f"attempt {claim.attempt} of {max_attempts} failed: {reason}")
    except Exception as exc:  # noqa: BLE001 - any failure of one file is that attempt's failure
        error = f"attempt {claim.attempt} of {max_attempts} failed: {type(exc).__name__}: {exc}"
        log.warning("job %s (%s %s) %s", job.key, job.repo_id, job.path, error)
        return _failed(queue, claim, handlers, error)
    queue.complete(claim)
    return "done"


def _failed(queue: JobQueue, claim: Claim, handlers: Handlers, error: str) -> str:
    disposition = queue.fail(claim, error)
    if disposition is Disposition.POISONED:
        log.error("job %s (%s %s) poisoned: %s", claim.job.key, claim.job.repo_id, claim.job.path, error)
        try:
            handlers.poison(claim.job, error)
        except Exception:  # noqa: BLE001 - the file stays without a result: the monitor asks again
            log.exception("job %s: the poisoned result could not be stored", claim.job.key)
        return "poisoned"
    return "retry"


# -- the embedded worker loop ----------------------------------------------------------------------
class _Lease:
    """While a job runs: renew its lease every third of the lease time, and end the worker
    process when the hard time limit passes (the lease is released first, so the job is taken
    up again at once, and counted as a failed attempt)."""

    def __init__(self, queue, claim: Claim, lease_seconds: float, hard_limit: float | None):
        self.queue, self.claim, self.lease_seconds, self.hard_limit = queue, claim, lease_seconds, hard_limit
        self.started = time.monotonic()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="lease-heartbeat", daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.done.set()
        self.thread.join(timeout=5)

    def _run(self) -> None:
        renew_every = max(self.lease_seconds / 3.0, 0.05)
        tick = min(renew_every, 1.0, max((self.hard_limit or 1.0) / 10.0, 0.05))
        renewed = time.monotonic()
        while not self.done.wait(tick):
            now = time.monotonic()
            if self.hard_limit and now - self.started > self.hard_limit:
                error = f"hard time limit of {self.hard_limit:g} s exceeded"
                log.error("job %s: %s; ending this worker process", self.claim.job.key, error)
                try:
                    self.queue.release(self.claim, error)
                finally:
                    os._exit(HARD_LIMIT_EXIT)
            if now - renewed < renew_every:
                continue
            renewed = now
            try:
                if not self.queue.extend(self.claim, self.lease_seconds):
                    log.warning("job %s: lease lost to another worker", self.claim.job.key)
            except Exception:  # noqa: BLE001 - a missed heartbeat only shortens the lease
                log.exception("lease heartbeat failed")


def _with_soft_limit(handle: Callable[[ScanJob], Any], seconds: float | None) -> Callable[[ScanJob], Any]:
    """`handle`, interrupted by SoftTimeLimitExceeded after `seconds` (a timer signal, so only
    in the main thread); the timer is off again before the job is settled with the queue."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        return handle

    def expired(signum, frame):
        raise SoftTimeLimitExceeded(f"soft time limit of {seconds:g} s exceeded")

    def limited(job: ScanJob):
        previous = signal.signal(signal.SIGALRM, expired)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            return handle(job)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    return limited


def work(queue, handlers: Handlers, *, max_attempts: int, lease_seconds: float,
         stop: Callable[[], bool] = lambda: False, drain: bool = False,
         soft_time_limit: float | None = None, time_limit: float | None = None,
         max_jobs: int | None = None, poll_seconds: float = POLL_SECONDS) -> int:
    """Claim and handle jobs until `stop()`, until `max_jobs` were handled, or (drain) until the
    queue has nothing queued or running. Returns how many jobs this worker settled."""
    name = worker_name()
    limited = dataclasses.replace(handlers, handle=_with_soft_limit(handlers.handle, soft_time_limit))
    settled = 0
    while not stop() and (max_jobs is None or settled < max_jobs):
        claim = queue.claim(name, lease_seconds)
        if claim is None:
            if drain:
                depth = queue.depth()
                if depth.get("queued", 0) == 0 and depth.get("running", 0) == 0:
                    break
            _sleep_unless(stop, poll_seconds)
            continue
        with _Lease(queue, claim, lease_seconds, time_limit):
            outcome = process_claim(queue, claim, limited, max_attempts)
        log.info("job %s (%s %s): %s", claim.job.key, claim.job.repo_id, claim.job.path, outcome)
        settled += 1
    return settled


def _sleep_unless(stop: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not stop() and time.monotonic() < deadline:
        time.sleep(min(0.05, seconds))


# -- a local pool of worker processes --------------------------------------------------------------
@dataclass(frozen=True)
class PoolOptions:
    """How each worker process of the embedded pool runs (see `malhug worker --help`)."""

    handlers: str = DEFAULT_HANDLERS
    soft_time_limit: float | None = None
    time_limit: float | None = None
    max_tasks_per_child: int | None = None
    poll_seconds: float = POLL_SECONDS


def _pool_child(settings, options: PoolOptions, stop_event, drain: bool) -> None:
    """One worker process: its own queue connection and handlers; SIGTERM ends it after the
    current job; it exits 0 when told to stop, when drained, or when recycled."""
    from .queue import open_queue

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s: %(message)s")
    terminated = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: terminated.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the pool's parent decides when to stop
    queue = open_queue(settings)
    handlers = _load_until_ready(options.handlers, settings, lambda: terminated.is_set() or stop_event.is_set())
    if handlers is None:
        queue.close()
        return
    try:
        settled = work(queue, handlers, max_attempts=settings.max_attempts,
                       lease_seconds=settings.lease_seconds,
                       stop=lambda: terminated.is_set() or stop_event.is_set(), drain=drain,
                       soft_time_limit=options.soft_time_limit, time_limit=options.time_limit,
                       max_jobs=options.max_tasks_per_child, poll_seconds=options.poll_seconds)
    finally:
        handlers.close()
        queue.close()
    if options.max_tasks_per_child and settled >= options.max_tasks_per_child:
        raise SystemExit(RECYCLED_EXIT)


def _load_until_ready(spec: str, settings, stop: Callable[[], bool], retry_seconds: float = 2.0):
    """The handlers, once what they need (the results store) can be reached; None if stopped
    first. A worker waits out an outage instead of dying and being restarted in a loop."""
    while not stop():
        try:
            return load_handlers(spec, settings)
        except (ImportError, AttributeError, ValueError, TypeError):
            raise  # a wrong name or a broken factory: no use trying again
        except Exception:  # noqa: BLE001
            log.exception("cannot start the job handlers; trying again in %g s", retry_seconds)
            _sleep_unless(stop, retry_seconds)
    return None


def run_pool(settings, processes: int, *, stop: threading.Event | None = None, drain: bool = False,
             options: PoolOptions | None = None, grace_seconds: float | None = None) -> int:
    """Run `processes` worker processes over the embedded queue until `stop` is set (or, with
    drain, until the queue is empty). A worker that dies (killed, crashed, past its hard time
    limit) is replaced, and one that reached max_tasks_per_child is recycled; its job's lease
    expires and the job runs again. Returns 0, or 1 when workers had to be killed at shutdown."""
    if processes < 1:
        raise ValueError("a pool needs at least one process")
    options = options or PoolOptions()
    handlers_factory(options.handlers)  # a wrong name fails here, not in every worker process
    stop = stop or threading.Event()
    context = _process_context(options.handlers)
    stop_event = context.Event()
    grace = settings.lease_seconds if grace_seconds is None else grace_seconds

    def start(slot: int):
        process = context.Process(target=_pool_child, args=(settings, options, stop_event, drain),
                                  name=f"malhug-worker-{slot}", daemon=False)
        process.start()
        return process

    slots = {slot: start(slot) for slot in range(processes)}
    finished: set[int] = set()
    try:
        while len(finished) < processes:
            if stop.is_set():
                stop_event.set()
            for slot, process in list(slots.items()):
                if slot in finished or process.is_alive():
                    continue
                process.join()
                if stop_event.is_set() or (process.exitcode == 0 and drain):
                    finished.add(slot)
                else:  # recycled after max_tasks_per_child, or died (exit status or signal)
                    if process.exitcode != RECYCLED_EXIT:
                        log.warning("worker process %s ended with status %s; starting another",
                                    process.pid, process.exitcode)
                        _release_leases(settings, process)
                    slots[slot] = start(slot)
            stop.wait(0.1)
    finally:
        stop_event.set()
        status = _join_all(list(slots.values()), grace)
    return status


# imported once by the fork server, so that a worker process (and each replacement of one that
# died) starts without importing them again
PRELOAD = ("malhug.service.worker", "malhug.service.queue.sqlite_queue", "malhug.service.handle",
           "malhug.service.store", "malhug.service.alerts", "malhug.service.fetch")


def _process_context(handlers: str):
    """Worker processes are forked from a clean fork server (no threads, locks or connections
    of the calling process) that has already imported the service's modules."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([*PRELOAD, handlers.partition(":")[0]])
    return context


def _release_leases(settings, process) -> None:
    """A dead worker's job is taken up now rather than when its lease expires (the attempt
    still counts toward the poison cap)."""
    from .queue.sqlite_queue import SqliteQueue

    if settings.queue != "sqlite":
        return
    queue = SqliteQueue(settings.queue_file, max_attempts=settings.max_attempts,
                        lease_seconds=settings.lease_seconds)
    try:
        how = f"signal {-process.exitcode}" if process.exitcode < 0 else f"status {process.exitcode}"
        queue.release_worker(worker_name(process.pid), f"the worker process ended with {how}")
    finally:
        queue.close()


def _join_all(processes, grace: float) -> int:
    deadline = time.monotonic() + grace
    for process in processes:
        process.join(timeout=max(0.0, deadline - time.monotonic()))
    status = 0
    for process in processes:
        if process.is_alive():
            log.error("worker process %s did not stop within %g s; killing it", process.pid, grace)
            process.kill()
            process.join(timeout=10)
            status = 1
    return status
