"""Each file read in a worker process held to resource limits; a worker that dies or overruns
turns its file `inconclusive` and the scan goes on.

The parent keeps everything that is not reading content: listing, layout, the verdict cache and
the memo. A worker gets a job (a local path and what the parent already knows of it), reads the
file with the same `scan_stream` as an in-process scan, and answers with the result as JSON:
the parent never unpickles anything a worker sends.

Each worker is a fresh interpreter (`python -c`, the parent's sys.path) started with
subprocess, never a re-run of the parent's `__main__` (which multiprocessing's spawn and
forkserver would do): a script calling `malhug.scan` needs no entry-point guard. A parent that
knows it runs nothing else, the command line, asks for `start="fork"`: its workers are forks of
it, made only while it runs a single thread (else fresh interpreters again); a fork keeps no
descriptor but its two pipes and ends with `os._exit`, never returning into the parent's code,
and skips an interpreter's start-up; its address-space limit comes on top of the address
space it inherits. A worker reads up to `TASKS_PER_WORKER` files, then
is replaced. In each worker: RLIMIT_AS (Limits.worker_address_space), RLIMIT_NOFILE
(worker_open_files), RLIMIT_CORE 0, and per file RLIMIT_CPU (seconds_per_file +
worker_cpu_margin of CPU on top of what the worker has used). The parent kills a worker still
busy seconds_per_file + worker_kill_grace after it was handed the file, and a new worker takes
the next file.

Local files and a hub repository's remote files are sent to workers. A remote file travels as
its URL, headers and what the parent knows of the server (whether it honours Range); the worker
makes the ranged reads itself and answers with the bytes it fetched, which the parent adds to
the repository's counters. Files a source opens any other way are read in the parent, as with
isolation turned off. Isolation needs POSIX; elsewhere files are read in the parent.
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from functools import partial
from multiprocessing.connection import Connection, wait
from typing import Any, Iterable, Iterator

from .findings import FileResult, Location, Problem, Verdict
from .limits import GIB, MIB, Limits

TASKS_PER_WORKER = 1000  # files a worker reads before it is replaced by a fresh one
RETIRE_RSS = 512 * MIB  # and a worker whose memory grew by this much since it was ready is replaced
START_SECONDS = 60.0  # for a new worker to report ready
RESULT_MAX_BYTES = 256 * MIB  # the largest answer a worker may send
OUT_OF_MEMORY = "out of memory while reading"
WORKER_PROBLEM = "worker "  # every reason a worker failure gives starts so

class IsolationError(Exception):
    """No worker process could be started."""


@dataclass(frozen=True)
class Job:
    display: str
    path: str  # "" for a remote file
    size: int | None
    sha256: str | None
    limits: Limits
    remote: dict | None = None  # a remote file: see remote_spec


def remote_spec(opener) -> dict | None:
    """What a worker needs to read a hub file itself, when the opener is a RemoteFile's
    (`partial(RemoteFile, url, size, headers=..., stats=..., name=...)`): its URL, size, headers,
    name, and the counters of the repository's FetchStats (so the worker knows whether the
    server honours Range). None for any other opener."""
    from .sources.remote_file import RemoteFile

    if not (isinstance(opener, partial) and opener.func is RemoteFile and len(opener.args) == 2):
        return None
    if set(opener.keywords) - {"headers", "stats", "name"}:
        return None
    stats = opener.keywords.get("stats")
    return {"url": opener.args[0], "size": int(opener.args[1]), "headers": dict(opener.keywords.get("headers") or {}),
            "name": opener.keywords.get("name"),
            "ranges_honoured": getattr(stats, "ranges_honoured", 0),
            "ranges_ignored": getattr(stats, "ranges_ignored", 0)}


def local_path(opener) -> str | None:
    """The path a RepoFile opener reads, when it is a plain local file (`partial(open, path, "rb")`)."""
    if isinstance(opener, partial) and opener.func is open and not opener.keywords and \
            len(opener.args) == 2 and opener.args[1] == "rb":
        path = opener.args[0]
        if isinstance(path, (str, os.PathLike)):
            return os.fspath(path)
    return None


def read_file(job: Job) -> dict:
    """What a worker does with a job: the file's result, as a dict (for a remote file, with the
    bytes and requests it took under "fetch")."""
    from .scanner import ScanOptions, scan_stream

    options = ScanOptions(limits=job.limits, cache=None, memo=None)
    if job.remote is None:
        result = scan_stream(job.display, partial(open, job.path, "rb"), options, size=job.size,
                             sha256=job.sha256)
        return result.to_dict()
    from .sources.remote_file import FetchStats, RemoteFile

    spec = job.remote
    stats = FetchStats(ranges_honoured=spec["ranges_honoured"], ranges_ignored=spec["ranges_ignored"])
    opener = partial(RemoteFile, spec["url"], spec["size"], headers=spec["headers"], stats=stats,
                     name=spec["name"])
    result = scan_stream(job.display, opener, options, size=job.size, sha256=job.sha256,
                         hash_max_bytes=spec.get("hash_max_bytes"))
    data = result.to_dict()
    data["fetch"] = {"bytes": stats.bytes, "requests": stats.requests,
                     "ranges_honoured": stats.ranges_honoured - spec["ranges_honoured"],
                     "ranges_ignored": stats.ranges_ignored - spec["ranges_ignored"]}
    return data


# The function workers run on each job; a reference to it travels with the job.
worker_task = read_file


def failed_result(job: Job, reason: str) -> dict:
    problem = Problem(reason, Location(job.display))
    return FileResult(job.display, "unknown", Verdict.INCONCLUSIVE, (), (problem,), (), job.sha256,
                      job.size).to_dict()


def available() -> bool:
    """Workers need POSIX pipes handed to a child (and rlimits to be worth much)."""
    return os.name == "posix" and bool(sys.executable)


# -- in the worker ---------------------------------------------------------------------------------
def serve(read_fd: int, write_fd: int, inherited: int = 0) -> None:
    """A worker's life: limits, the readers loaded, then one job after another until told to stop.
    inherited: the address space a fork starts with, which its limit comes on top of."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when a scan stops
    jobs = Connection(read_fd, writable=False)
    conn = Connection(write_fd, readable=False)
    _set_limits(jobs.recv(), inherited)
    _warm_up()
    baseline = _resident_memory()  # a fork starts with its parent's pages
    conn.send_bytes(b"ready")
    while True:
        try:
            message = jobs.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        task, job = message
        _cpu_budget(job.limits)
        retire = False
        try:
            data = task(job)
            retire = _out_of_memory(data, job.limits)
        except MemoryError:
            data, retire = failed_result(job, _memory_reason(job.limits)), True
        except BaseException as exc:  # anything a reader lets through is this file's problem only
            data = failed_result(job, f"worker error: {type(exc).__name__}: {exc}")
        retire = retire or _resident_memory() - baseline > RETIRE_RSS
        conn.send_bytes(json.dumps({"result": data, "retire": retire}).encode())
        if retire:  # a process that ran out of memory may be left in a poor state
            return


def _warm_up() -> None:
    """Load the readers and the knowledge base before the first file's clock starts."""
    import io

    from .scanner import ScanOptions, scan_stream

    scan_stream("warm-up.pkl", lambda: io.BytesIO(b"\x80\x04K\x01."), ScanOptions(cache=None, memo=None))


def _statm(field: int) -> int | None:
    """One field of /proc/self/statm in bytes (0: address space, 1: resident); None without /proc."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[field]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _address_space() -> int:
    """This process's mapped address space (0 where /proc is missing)."""
    return _statm(0) or 0


def _resident_memory() -> int:
    """This process's resident memory now (its peak where /proc is missing). Not the peak on
    Linux: a process inherits the peak of the one that forked it, even across exec, so a worker
    started by a large process would look grown from its first file."""
    resident = _statm(1)
    if resident is not None:
        return resident
    try:
        import resource
    except ImportError:
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def _set_limits(limits: Limits, inherited: int = 0) -> None:
    try:
        import resource
    except ImportError:  # no rlimits on this platform: the wall-clock kill still holds
        return
    _lower(resource, resource.RLIMIT_CORE, 0)
    if limits.worker_address_space:
        _lower(resource, resource.RLIMIT_AS, limits.worker_address_space + inherited)
    if limits.worker_open_files:
        _lower(resource, resource.RLIMIT_NOFILE, limits.worker_open_files)


def _lower(resource, which: int, value: int) -> None:
    """Soft and hard limit both to `value`, or to the hard limit already lower than it."""
    soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    try:
        resource.setrlimit(which, (value, value))
    except (ValueError, OSError):
        pass


def _cpu_budget(limits: Limits) -> None:
    """The CPU a worker may still use: what it has used so far plus this file's share."""
    try:
        import resource
    except ImportError:
        return
    usage = resource.getrusage(resource.RUSAGE_SELF)
    budget = math.ceil(usage.ru_utime + usage.ru_stime + limits.seconds_per_file + limits.worker_cpu_margin)
    soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        budget = min(budget, hard)
    try:
        resource.setrlimit(resource.RLIMIT_CPU, (budget, hard))
    except (ValueError, OSError):
        pass


def _memory_reason(limits: Limits) -> str:
    if limits.worker_address_space:
        return f"worker out of memory: address space limit ({_size(limits.worker_address_space)}) reached"
    return "worker out of memory"


def _out_of_memory(data: dict, limits: Limits) -> bool:
    """Name the worker's limit in a result whose reading ran out of memory."""
    hit = False
    for problem in data.get("problems", ()):
        if problem.get("reason") == OUT_OF_MEMORY:
            problem["reason"] = _memory_reason(limits)
            hit = True
    return hit


def _size(count: int) -> str:
    if count % GIB == 0:
        return f"{count // GIB} GiB"
    if count % MIB == 0:
        return f"{count // MIB} MiB"
    return f"{count} bytes"


# -- in the parent ---------------------------------------------------------------------------------
class _Worker:
    """A fresh interpreter (`python -c`) or a fork of this process, spoken to over two pipes:
    jobs go in pickled (the parent is trusted), results come back as JSON (the worker is not)."""

    def __init__(self, limits: Limits, start: str = "exec"):
        if not sys.executable and start != "fork":
            raise IsolationError("cannot start a worker process: no Python executable known")
        to_child, to_worker = os.pipe()
        to_parent, from_worker = os.pipe()
        code = (f"import sys; sys.path[:] = {sys.path!r}; "
                f"from malhug.isolation import serve; serve({to_child}, {from_worker})")
        try:
            if start == "fork" and _can_fork():
                self.process = _ForkedWorker(to_child, from_worker)
            else:
                self.process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL,
                                                pass_fds=(to_child, from_worker), close_fds=True)
        except OSError as exc:
            for fd in (to_worker, to_parent):
                os.close(fd)
            raise IsolationError(f"cannot start a worker process: {exc}") from exc
        finally:
            os.close(to_child)
            os.close(from_worker)
        self.sender = Connection(to_worker, readable=False)
        self.conn = Connection(to_parent, writable=False)
        self.done = 0
        self.retiring = False
        self.key: Any = None
        self.job: Job | None = None
        self.deadline = 0.0
        self.allowed = 0.0
        self.ready = False
        self.sender.send(limits)

    def await_ready(self) -> None:
        """Workers start side by side; each is waited for when first given a job."""
        try:
            if self.conn.poll(START_SECONDS) and self.conn.recv_bytes(16) == b"ready":
                self.ready = True
                return
        except (EOFError, OSError):
            pass
        self.kill()
        raise IsolationError(f"a worker process did not start (exit code {self.process.returncode})")

    def give(self, key: Any, job: Job, task) -> None:
        if not self.ready:
            self.await_ready()
        self.key, self.job = key, job
        self.allowed = job.limits.seconds_per_file + job.limits.worker_kill_grace
        self.deadline = time.monotonic() + self.allowed
        self.sender.send((task, job))

    def answer(self) -> tuple[str, dict | None]:
        """("result", the result dict), ("dead", None) or ("busy", None)."""
        try:
            if not self.conn.poll():
                return "busy", None
            answer = json.loads(self.conn.recv_bytes(RESULT_MAX_BYTES))
            self.retiring = bool(answer["retire"])
            return "result", answer["result"]
        except (EOFError, OSError, ValueError, KeyError, TypeError):
            return "dead", None

    def death(self) -> str:
        self.kill()
        return _death_reason(self.process.returncode, self.job.limits)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        try:
            self.sender.send(None)
            self.process.wait(1.0)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass
        self.kill()

    def kill(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.wait(0.2)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5.0)
        self.sender.close()
        self.conn.close()


def _can_fork() -> bool:
    return hasattr(os, "fork") and threading.active_count() == 1


class _ForkedWorker:
    """A fork of this process serving jobs, with the part of Popen's interface workers use."""

    def __init__(self, read_fd: int, write_fd: int):
        self.returncode: int | None = None
        self.pid = os.fork()
        if self.pid == 0:  # the worker: never returns into the code that made it
            code = 1
            try:
                _keep_only_descriptors(read_fd, write_fd)
                serve(read_fd, write_fd, _address_space())
                code = 0
            finally:
                os._exit(code)

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        expires = None if timeout is None else time.monotonic() + timeout
        delay = 0.0005
        while self.poll() is None:
            if expires is not None and time.monotonic() >= expires:
                raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout)
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _keep_only_descriptors(*keep: int) -> None:
    """Close every descriptor of a forked worker but stdio and its own pipes (not the verdict
    cache, not other workers' pipes)."""
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, _max_descriptors())


def _max_descriptors() -> int:
    try:
        return os.sysconf("SC_OPEN_MAX")
    except (OSError, ValueError):
        return 65536


def _death_reason(exitcode: int | None, limits: Limits) -> str:
    if exitcode is None:
        return "worker killed: did not stop"
    if exitcode < 0:
        number = -exitcode
        if number == getattr(signal, "SIGXCPU", None):
            cpu = limits.seconds_per_file + limits.worker_cpu_margin
            return f"worker killed: CPU time limit ({cpu:g} s) reached"
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        if number == signal.SIGKILL:
            return f"worker killed by {name} (out of memory or killed from outside)"
        return f"worker killed by {name}"
    return f"worker exited unexpectedly (exit code {exitcode})"


class WorkerPool:
    """Up to `workers` processes reading one file each; the pool outlives the repositories of a scan."""

    def __init__(self, limits: Limits, workers: int = 1, tasks_per_worker: int = TASKS_PER_WORKER,
                 start: str = "exec"):
        """start: "exec" (a fresh interpreter per worker) or "fork" (a fork of this process
        while it runs one thread; for a process that runs nothing but the scan)."""
        if start not in ("exec", "fork"):
            raise ValueError(f"worker start must be 'exec' or 'fork', not {start!r}")
        self.limits = limits
        self.start = start
        self.workers = max(1, int(workers))
        self.tasks_per_worker = max(1, tasks_per_worker)
        self._idle: list[_Worker] = []

    def prestart(self) -> "WorkerPool":
        """Start the workers now, so that their start-up overlaps the caller's listing and
        hashing (a failure to start shows when the first file is given, as without this)."""
        try:
            while len(self._idle) < self.workers:
                self._idle.append(_Worker(self.limits, self.start))
        except IsolationError:
            pass
        return self

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        while self._idle:
            worker = self._idle.pop()
            if worker.ready:
                worker.stop()
            else:
                worker.kill()

    def run(self, jobs: Iterable[tuple[Any, Job]]) -> Iterator[tuple[Any, dict]]:
        """(key, result dict) for each (key, job), in the order they finish. Jobs are taken from
        the iterable only when a worker is free for them."""
        pending = iter(jobs)
        busy: list[_Worker] = []
        exhausted = False
        try:
            while True:
                while not exhausted and len(busy) < self.workers:
                    item = next(pending, None)
                    if item is None:
                        exhausted = True
                        break
                    busy.append(self._give(item[0], item[1], len(busy)))
                if not busy:
                    return
                timeout = max(0.0, min(w.deadline for w in busy) - time.monotonic())
                wait([w.conn for w in busy], timeout)
                for worker in list(busy):
                    outcome = self._outcome(worker)
                    if outcome is not None:
                        busy.remove(worker)
                        yield worker.key, outcome
        finally:
            for worker in busy:
                worker.kill()

    def _outcome(self, worker: _Worker) -> dict | None:
        state, data = worker.answer()
        if state == "result":
            worker.done += 1
            self._release(worker)
            return data
        if state == "dead":
            return failed_result(worker.job, worker.death())
        if time.monotonic() >= worker.deadline:
            worker.kill()
            return failed_result(worker.job, f"worker timed out after {worker.allowed:g} s")
        return None

    def _release(self, worker: _Worker) -> None:
        if worker.retiring or worker.done >= self.tasks_per_worker or not worker.alive():
            worker.stop()
            return
        self._idle.append(worker)

    def _give(self, key: Any, job: Job, busy: int) -> _Worker:
        worker = self._take(busy)
        try:
            worker.give(key, job, worker_task)
        except (OSError, ValueError):  # it died while idle: a fresh one takes the job
            worker.kill()
            worker = self._take(busy)
            worker.give(key, job, worker_task)
        return worker

    def _take(self, busy: int) -> _Worker:
        while self._idle:
            worker = self._idle.pop(0)
            if worker.alive():
                return worker
            worker.kill()
        self._idle = [_Worker(self.limits, self.start) for _ in range(max(1, self.workers - busy) - 1)]
        return _Worker(self.limits, self.start)
