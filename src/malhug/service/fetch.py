"""Fetch the one file a scan job names from its source and scan it with malhug.

Sources (`ScanJob.source`):
- a hub endpoint URL (`http://...`, `https://...`): the file is read at the job's commit through
  ranged HTTP reads (`malhug.sources.remote_file`), so a reader that needs only a header fetches
  only that; the LFS sha256 the listing gave is passed on, so nothing is hashed again. As for
  `malhug scan hf://...`, remote files are read in the calling process (the queue's worker
  process), not in a further isolated child.
- a folder of git mirrors: the blob is read with git itself (`git cat-file`) into a private
  temporary file; an LFS pointer blob means the content is the object in the mirror's LFS store,
  which is scanned where it lies. Local files are scanned in an isolated reader process with
  resource limits (`ScanOptions(isolation=True)`, the default here); the reader is kept from one
  job to the next within a process.

Failures:
- Trouble that concerns the file (gone from the commit, a missing LFS object, a repository no
  longer mirrored, an HTTP 4xx) gives an `inconclusive` FileResult with the reason: fail closed,
  never clean, never an exception.
- Trouble that a later attempt may not meet raises `RetryableScanError`, so the worker fails
  the claim and the queue tries again, up to its poison cap (after which the file gets an
  inconclusive verdict and an alert): `TransientFetchError` for network errors, time-outs and
  HTTP 429/5xx answers; `ScanAttemptFailed` when the isolated reader died or ran out of memory
  (which says nothing lasting about the content, like the verdict cache's rule).
"""
from __future__ import annotations

import atexit
import os
import re
import tempfile
import threading
from functools import lru_cache, partial
from pathlib import Path

from ..findings import FileResult, Location, Problem, Verdict
from ..isolation import OUT_OF_MEMORY, WORKER_PROBLEM, Job, WorkerPool, available
from ..scanner import ScanOptions, scan_stream
from .jobs import ScanJob

DEFAULT_OPTIONS = ScanOptions(isolation=True)
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
API_TIMEOUT = 30.0
_HTTP_STATUS = re.compile(r"\bHTTP (\d{3})\b")
_TRANSIENT_WORDS = ("timed out", "cannot connect", "network error", "connection closed")


class RetryableScanError(Exception):
    """This attempt failed for a reason a later one may not meet: fail the claim, do not store."""


class TransientFetchError(RetryableScanError):
    """The source could not be reached, or answered with a temporary error (429, 5xx)."""


class ScanAttemptFailed(RetryableScanError):
    """The isolated reader died or ran out of memory while reading the file."""


def is_hub_source(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def display_path(job: ScanJob) -> str:
    """How reports name the file: `hf://<kind prefix><repo>@<commit>/<path>` for a hub endpoint,
    `<mirrors>/<kind>s/<repo>@<commit>/<path>` for a folder of git mirrors."""
    short = job.revision[:12]
    if is_hub_source(job.source):
        return f"hf://{URL_PREFIXES.get(job.repo_type, '')}{job.repo_id}@{short}/{job.path}"
    return f"{job.source.rstrip('/')}/{job.repo_type}s/{job.repo_id}@{short}/{job.path}"


def scan_job(job: ScanJob, options: ScanOptions | None = None, *,
             pool: WorkerPool | None = None) -> FileResult:
    """The scan result of the job's file; `pool` lets a long-lived worker reuse its readers."""
    options = options or DEFAULT_OPTIONS
    display = display_path(job)
    if is_hub_source(job.source):
        result = _scan_hub_file(job, display, options)
    else:
        result = _scan_mirror_file(job, display, options, pool)
    failed = _attempt_failure(result)
    if failed:
        raise ScanAttemptFailed(f"{display}: {failed}")
    return result


def inconclusive(display: str, reason: str, size: int | None = None) -> FileResult:
    return FileResult(display, "unknown", Verdict.INCONCLUSIVE, (), (Problem(reason, Location(display)),),
                      (), None, size)


def _attempt_failure(result: FileResult) -> str | None:
    for problem in result.problems:
        if problem.reason.startswith((WORKER_PROBLEM, OUT_OF_MEMORY)):
            return problem.reason
    return None


# -- hub endpoints ----------------------------------------------------------------------------------
def _scan_hub_file(job: ScanJob, display: str, options: ScanOptions) -> FileResult:
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    from .. import __version__
    from ..sources.hub import REMOTE_HASH_MAX_BYTES, _token
    from ..sources.remote_file import FetchStats

    endpoint = job.source.rstrip("/")
    token = _token()
    headers = build_hf_headers(token=token or False, library_name="malhug", library_version=__version__)
    url = hf_hub_url(job.repo_id, job.path, repo_type=job.repo_type, revision=job.revision,
                     endpoint=endpoint)
    size = job.size
    if size is None:
        size = _remote_size(url, token, display)
        if isinstance(size, FileResult):
            return size
    errors: list = []
    opener = partial(_TrackedRemoteFile, errors, url, size, headers=headers, stats=FetchStats(),
                     name=display)
    result = scan_stream(display, opener, options, size=size, sha256=job.sha256,
                         hash_max_bytes=REMOTE_HASH_MAX_BYTES)
    for error in errors:
        if _transient(str(error)):
            raise TransientFetchError(str(error))
    return result


def _remote_size(url: str, token: str | None, display: str):
    """The file's size from a HEAD request, or an inconclusive result when the hub refuses it."""
    import httpx2
    from huggingface_hub import errors, get_hf_file_metadata

    try:
        return get_hf_file_metadata(url, token=token or False, timeout=API_TIMEOUT).size
    except errors.HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status is None or status == 429 or status >= 500:
            raise TransientFetchError(f"{display}: the hub answered HTTP {status}") from None
        return inconclusive(display, f"cannot fetch: the hub answered HTTP {status}")
    except (httpx2.HTTPError, OSError) as exc:
        raise TransientFetchError(f"{display}: cannot reach the hub: {exc}") from None


def _transient(message: str) -> bool:
    match = _HTTP_STATUS.search(message)
    if match:
        status = int(match.group(1))
        return status == 429 or status >= 500
    return any(word in message for word in _TRANSIENT_WORDS)


@lru_cache(maxsize=1)
def _tracked_remote_file_class():
    from ..sources.remote_file import RemoteFile, RemoteReadError

    class TrackedRemoteFile(RemoteFile):
        """A remote file that remembers why a read failed, so the caller can tell a network
        hiccup (retry) from a missing file (inconclusive)."""

        def __init__(self, errors: list, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._errors = errors

        def _read_range(self, start: int, end: int) -> bytes:
            try:
                return super()._read_range(start, end)
            except RemoteReadError as exc:
                self._errors.append(exc)
                raise

    return TrackedRemoteFile


def _TrackedRemoteFile(errors: list, *args, **kwargs):
    return _tracked_remote_file_class()(errors, *args, **kwargs)


# -- folders of git mirrors ---------------------------------------------------------------------------
def _scan_mirror_file(job: ScanJob, display: str, options: ScanOptions,
                      pool: WorkerPool | None) -> FileResult:
    from .monitor import gitmirror

    try:
        gdir = gitmirror.git_dir(gitmirror.repo_folder(job.source, job.repo_type, job.repo_id))
    except gitmirror.GitError as exc:
        return inconclusive(display, f"cannot fetch: {exc}", job.size)
    if gdir is None:
        return inconclusive(display, "cannot fetch: the repository is no longer in the mirror", job.size)
    try:
        entry = gitmirror.entry_at(gdir, job.revision, job.path)
    except gitmirror.GitError as exc:
        return inconclusive(display, f"cannot fetch: commit {job.revision[:12]} is not in the mirror "
                            f"({exc})", job.size)
    if entry is None:
        return inconclusive(display, f"cannot fetch: commit {job.revision[:12]} has no file {job.path!r}",
                            job.size)
    with tempfile.TemporaryDirectory(prefix="malhug-fetch-") as scratch:  # mode 0700: private
        try:
            path, size, sha256 = _materialise(gdir, entry, Path(scratch), display)
        except _Unavailable as exc:
            return inconclusive(display, f"cannot fetch: {exc}", job.size)
        except gitmirror.GitError as exc:
            return inconclusive(display, f"cannot fetch: {exc}", job.size)
        except OSError as exc:
            raise TransientFetchError(f"{display}: cannot copy the blob: {exc}") from None
        return _scan_local(display, str(path), size, sha256 or job.sha256, options, pool)


class _Unavailable(Exception):
    """The content is not in the mirror (a missing LFS object)."""


def _materialise(gdir: Path, entry, scratch: Path, display: str) -> tuple[Path, int, str | None]:
    """A local file with the content: the LFS object itself, or the blob copied out of git."""
    from .monitor import gitmirror

    if entry.size <= gitmirror.POINTER_MAX_BYTES:
        data = gitmirror.read_blobs(gdir, [entry.blob_id]).get(entry.blob_id)
        if data is None:
            raise _Unavailable(f"blob {entry.blob_id} is missing from the mirror")
        pointer = gitmirror.lfs_pointer(data)
        if pointer is not None:
            return _lfs_content(gdir, pointer)
        target = scratch / "blob"
        target.write_bytes(data)
        return target, len(data), None
    target = scratch / "blob"
    size = gitmirror.copy_blob(gdir, entry.blob_id, target)
    return target, size, None


def _lfs_content(gdir: Path, pointer) -> tuple[Path, int, str]:
    from .monitor import gitmirror

    path = gitmirror.lfs_object(gdir, pointer.sha256)
    try:
        size = path.stat().st_size
    except OSError:
        raise _Unavailable(f"LFS object sha256:{pointer.sha256} ({pointer.size} bytes) is not in the "
                           "mirror's LFS store") from None
    if size != pointer.size:
        raise _Unavailable(f"LFS object sha256:{pointer.sha256} in the mirror's store has {size} "
                           f"bytes, its pointer says {pointer.size}")
    return path, size, pointer.sha256


def _scan_local(display: str, path: str, size: int, sha256: str | None, options: ScanOptions,
                pool: WorkerPool | None) -> FileResult:
    """Read a local file: in an isolated worker (the pool given, this process's shared pool, or
    a new one when the shared pool is busy in another thread) or, without isolation, here."""
    if not (options.isolation and not options.keep_traces and available()):
        return scan_stream(display, partial(open, path, "rb"), options, size=size, sha256=sha256)
    job = Job(display, path, size, sha256, options.limits)
    if pool is not None:
        return _run_in(pool, job)
    shared, lock = _shared_pool(options.limits)
    if lock.acquire(blocking=False):
        try:
            return _run_in(shared, job)
        finally:
            lock.release()
    with WorkerPool(options.limits, 1) as own:
        return _run_in(own, job)


def _run_in(pool: WorkerPool, job: Job) -> FileResult:
    for _, data in pool.run([(0, job)]):
        return FileResult.from_dict(data)
    return inconclusive(job.display, f"{WORKER_PROBLEM}gave no result", job.size)


_POOLS: dict = {}
_POOLS_LOCK = threading.Lock()


def _shared_pool(limits) -> tuple[WorkerPool, threading.Lock]:
    """One isolated reader per process and limits, kept from one job to the next: a worker
    process handles many jobs, and starting a reader for each would cost about 0.2 s a file.
    Keyed by process id too, so a forked child never uses its parent's pipes."""
    key = (os.getpid(), limits)
    with _POOLS_LOCK:
        entry = _POOLS.get(key)
        if entry is None:
            entry = _POOLS[key] = (WorkerPool(limits, 1), threading.Lock())
            atexit.register(entry[0].close)
        return entry
