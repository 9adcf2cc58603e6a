"""Scan files and folders: one ScanContext per file, judged into a FileResult."""
from __future__ import annotations

import hashlib
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

from . import __version__
from .cache import ResultMemo, VerdictCache, is_storable, memo_key, rebase
from .findings import FileResult, Location, Problem, Report, RepositoryResult, Verdict, worst
from .formats import analyse
from .formats.base import ScanContext
from .isolation import OUT_OF_MEMORY, WORKER_PROBLEM, Job, WorkerPool, available, local_path, remote_spec
from .judge import verdict_for
from .sources.base import Repository
from .sources.layout import analyse_layout
from .sources.local import folder_repository
from .limits import DEFAULT_LIMITS, Deadline, LimitExceeded, Limits


@dataclass(frozen=True)
class ScanOptions:
    limits: Limits = DEFAULT_LIMITS
    follow_symlinks: bool = False  # into linked folders; linked files are always scanned
    # scan the other hub repositories whose code a repository runs (auto_map "org/repo--x.Y"):
    # None follows them for hub targets only, True also for local folders, False never
    follow_remote_code: bool | None = None
    keep_traces: bool = False  # keep pickle traces on results (for explain)
    cache: VerdictCache | None = None  # verdicts kept across runs, by content
    memo: ResultMemo | None = field(default_factory=ResultMemo, compare=False, repr=False)  # within a run
    # told (display path, size or None) before each file is scanned, to show progress
    progress: Callable[[str, int | None], None] | None = field(default=None, compare=False, repr=False)
    # which files of a folder or repository are scanned (malhug.policy.globs): a file matching
    # `exclude`, or matching none of `include` when it is given, is left out of the report
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    max_file_size: int | None = None  # larger files are reported not analysed (inconclusive)
    # read each local file in a worker process with resource limits (malhug.isolation). The
    # command line turns it on unless --no-isolation; through the API it is asked for, since a
    # scan call pays for starting a worker (a fresh interpreter, about 0.1 s) and an embedding
    # process may rather read in-process.
    isolation: bool = False
    workers: int = 1  # files read at once, each in its own worker (with isolation)
    worker_start: str = "exec"  # "fork" for a process that runs nothing but the scan (the CLI)


def scan_paths(targets: Iterable, options: ScanOptions | None = None) -> Report:
    """Scan each target: a file, a folder (as a repository), a hub reference, or a Repository
    a source already opened (the local hub cache)."""
    options = options or ScanOptions()
    files: list[FileResult] = []
    repositories: list[RepositoryResult] = []
    errors: list[str] = []
    names: list[str] = []
    with _worker_pool(options) as pool:
        _scan_targets(targets, options, pool, files, repositories, errors, names)
    return Report(tuple(files), __version__, tuple(names), tuple(errors), tuple(repositories))


def _scan_targets(targets: Iterable, options: ScanOptions, pool: WorkerPool | None, files: list,
                  repositories: list, errors: list, names: list) -> None:
    for target in targets:
        if isinstance(target, Repository):
            names.append(target.location)
            repo_result, repo_files = scan_repository(target, options, pool)
            repositories.append(repo_result)
            files.extend(repo_files)
            continue
        names.append(str(target))
        try:
            repo = open_target(str(target), options)
        except SourceError as exc:
            errors.append(f"{target}: {exc}")
            continue
        if repo is None:
            files.append(scan_file(target, options, pool))
            continue
        pending = [repo]
        while pending and len(repositories) < MAX_REPOSITORIES_PER_TARGET + len(names):
            current = pending.pop(0)
            repo_result, repo_files = scan_repository(current, options, pool)
            repositories.append(repo_result)
            files.extend(repo_files)
            pending.extend(_referenced(repo_result, current, options, repositories, errors))


MAX_REPOSITORIES_PER_TARGET = 8  # a chain of repositories pointing at each other stops here


def _referenced(result: RepositoryResult, repo: Repository, options: ScanOptions,
                done: list, errors: list) -> list:
    """The repositories whose code this one would run, opened when remote code is followed."""
    follow = options.follow_remote_code
    is_hub = repo.id is not None and not repo.location.startswith("hf-cache:")
    if follow is False or (follow is None and not is_hub):
        return []
    seen = {r.id for r in done if r.id}
    opened = []
    for reference in result.references:
        if reference in seen:
            continue
        seen.add(reference)
        try:
            target = open_target(f"hf://{reference}", options)
        except SourceError as exc:
            errors.append(f"hf://{reference} (code used by {result.id or result.location}): {exc}")
            continue
        if target is not None:
            opened.append(target)
    return opened


class SourceError(Exception):
    """A target that cannot be scanned at all (missing, private, unreachable)."""


def open_target(target: str, options: ScanOptions) -> Repository | None:
    """The repository a target names, or None when it is a single local file."""
    if target.startswith(("hf://", "https://huggingface.co/", "http://huggingface.co/")) or \
            _is_endpoint_url(target):
        from .sources.hub import HubError, open_hub_repository

        try:
            return open_hub_repository(target, options)
        except HubError as exc:
            raise SourceError(str(exc)) from exc
    path = Path(target)
    if path.is_dir():
        return folder_repository(path, options.follow_symlinks)
    if not path.exists() and not path.is_symlink():
        raise SourceError("no such file or folder")
    return None


def _is_endpoint_url(target: str) -> bool:
    endpoint = os.environ.get("HF_ENDPOINT", "").rstrip("/")
    return bool(endpoint) and target.startswith(endpoint + "/")


def scan_repository(repo: Repository, options: ScanOptions,
                    pool: WorkerPool | None = None) -> tuple[RepositoryResult, list[FileResult]]:
    """Listing and layout are read here; each file's content in a worker of `pool` (one is made
    for this repository when isolation is on and none is given)."""
    layout = analyse_layout(repo)
    with _worker_pool(options, pool) as workers:
        results = _scan_entries(_repository_entries(repo, options), options, workers)
    problems = [Problem(reason, Location(repo.location if path is None else repo.display_path(path)))
                for path, reason in list(repo.problems) + list(layout.problems)]
    verdicts = [r.verdict for r in results] + [verdict_for(list(layout.findings), problems)]
    result = RepositoryResult(
        location=repo.location, id=repo.id, type=layout.type or repo.type, revision=repo.revision,
        verdict=worst(verdicts), files=tuple(r.path for r in results),
        roles=tuple(sorted(layout.roles.items())), findings=tuple(layout.findings),
        problems=tuple(problems), total_bytes=repo.total_bytes,
        fetched_bytes=repo.fetched_bytes() if repo.fetched_bytes else None,
        notes=tuple(repo.notes() if repo.notes else ()),
        references=tuple(layout.cross_repo),
    )
    return result, results


def _repository_entries(repo: Repository, options: ScanOptions) -> Iterator[FileResult | _Entry]:
    for file in repo.files:
        display = repo.display(file)
        if not _selected(file.path, options):
            continue
        _progress(options, display, file.size)
        if file.problem:
            yield _unreadable(display, file.problem, file.size)
        elif _too_large(file.size, options):
            yield _unreadable(display, _too_large_reason(file.size, options), file.size)
        else:
            yield _Entry(display, file.open, file.size, file.sha256, file.hash_max_bytes)


def scan_file(path: str | os.PathLike, options: ScanOptions | None = None,
              pool: WorkerPool | None = None) -> FileResult:
    options = options or ScanOptions()
    try:
        size = os.path.getsize(path)
    except OSError:
        size = None
    _progress(options, str(path), size)
    if _too_large(size, options):
        return _unreadable(str(path), _too_large_reason(size, options), size)
    entry = _Entry(str(path), partial(open, path, "rb"), size)
    with _worker_pool(options, pool) as workers:
        return _scan_entries([entry], options, workers)[0]


@dataclass(frozen=True)
class _Entry:
    """A file to read: how reports name it, how to open it, what its source knows of it."""

    display: str
    opener: Callable[[], BinaryIO]
    size: int | None = None
    sha256: str | None = None
    hash_max_bytes: int | None = None


def _worker_pool(options: ScanOptions, pool: WorkerPool | None = None):
    """The pool to read files in: the one given, a new one (closed on exit), or None when files
    are read in this process (isolation off, or traces kept: they do not travel as dicts)."""
    isolated = options.isolation and not options.keep_traces and available()
    if pool is not None or not isolated:
        return nullcontext(pool if isolated else None)
    return WorkerPool(options.limits, options.workers, start=options.worker_start).prestart()


def _scan_entries(entries: Iterable, options: ScanOptions, pool: WorkerPool | None) -> list[FileResult]:
    """Each entry's result, in order: local files read by the pool, the rest here."""
    if pool is None:
        return [entry if isinstance(entry, FileResult) else _scan_here(entry, options) for entry in entries]
    results: list[FileResult | None] = []
    fetch_stats = {}  # index -> the FetchStats of a remote file's repository

    def jobs():
        for entry in entries:
            index = len(results)
            results.append(entry if isinstance(entry, FileResult) else None)
            if isinstance(entry, FileResult):
                continue
            job = _job(entry, options)
            if isinstance(job, FileResult):
                results[index] = job
            else:
                if job.remote is not None:
                    fetch_stats[index] = entry.opener.keywords.get("stats")
                yield index, job

    for index, data in pool.run(jobs()):
        fetched = data.pop("fetch", None)
        stats = fetch_stats.pop(index, None)
        if fetched and stats is not None:
            stats.merge(fetched)
        result = FileResult.from_dict(data)
        results[index] = result
        _remember(options, result)
    return results


def _scan_here(entry: _Entry, options: ScanOptions) -> FileResult:
    return scan_stream(entry.display, entry.opener, options, size=entry.size, sha256=entry.sha256,
                       hash_max_bytes=entry.hash_max_bytes)


def _job(entry: _Entry, options: ScanOptions) -> Job | FileResult:
    """What a worker is sent for a local file, or the result known already (in this run or the
    cache, found by the hash taken here). Files without a local path are read here."""
    path = local_path(entry.opener)
    if path is None:
        remote = remote_spec(entry.opener)
        if remote is None:
            return _scan_here(entry, options)
        known = _known_result(options, entry.sha256, entry.display, entry.size, time.monotonic())
        if known is not None:
            return known
        remote["hash_max_bytes"] = entry.hash_max_bytes
        return Job(entry.display, "", entry.size, entry.sha256, options.limits, remote=remote)
    started = time.monotonic()
    digest = entry.sha256
    hash_limit = options.limits.hash_max_bytes if entry.hash_max_bytes is None else \
        min(entry.hash_max_bytes, options.limits.hash_max_bytes)
    if digest is None and entry.size is not None and entry.size <= hash_limit and os.path.isfile(path):
        digest = _hash_path(path)
    known = _known_result(options, digest, entry.display, entry.size, started)
    if known is not None:
        return known
    return Job(entry.display, path, entry.size, digest, options.limits)


def _hash_path(path: str) -> str | None:
    """Hashing reads bytes and interprets none of them: it is done here, for the cache."""
    try:
        with open(path, "rb") as stream:
            return _sha256(stream)
    except OSError:
        return None


def _selected(path: str, options: ScanOptions) -> bool:
    """--include/--exclude, matched against the path inside the folder or repository (never
    against the folders above it, which would let `exclude = ["data"]` drop all of /data/x)."""
    if not options.include and not options.exclude:
        return True
    from .policy.globs import any_match

    if options.include and not any_match(options.include, path):
        return False
    return not (options.exclude and any_match(options.exclude, path))


def _too_large(size: int | None, options: ScanOptions) -> bool:
    return options.max_file_size is not None and size is not None and size > options.max_file_size


def _too_large_reason(size: int, options: ScanOptions) -> str:
    return f"not analysed: {size} bytes is over max_file_size ({options.max_file_size} bytes)"


def _progress(options: ScanOptions, display: str, size: int | None) -> None:
    if options.progress is not None:
        options.progress(display, size)


def scan_stream(display: str, opener: Callable[[], BinaryIO], options: ScanOptions | None = None,
                size: int | None = None, sha256: str | None = None,
                hash_max_bytes: int | None = None) -> FileResult:
    """Scan one file's content, opened through `opener` (a local file, a remote one ...).

    hash_max_bytes: hash no larger file (a remote file would be downloaded whole to hash it)."""
    options = options or ScanOptions()
    hash_limit = options.limits.hash_max_bytes if hash_max_bytes is None else \
        min(hash_max_bytes, options.limits.hash_max_bytes)
    started = time.monotonic()
    known = _known_result(options, sha256, display, size, started)
    if known is not None:
        return known
    ctx = ScanContext(display, options.limits, Deadline(options.limits.seconds_per_file))
    fmt = "unknown"
    digest = sha256
    try:
        with opener() as stream:
            if digest is None and size is not None and size <= hash_limit and _seekable(stream):
                digest = _sha256(stream)
                stream.seek(0)
                known = _known_result(options, digest, display, size, started)
                if known is not None:
                    return known
                ctx.deadline = Deadline(options.limits.seconds_per_file)
            fmt = analyse(stream, ctx, None, name=display)
            if digest is None and size is not None and size <= hash_limit:
                digest = _sha256(stream)
    except LimitExceeded as exc:
        ctx.limit_hit(None, exc)
    except OSError as exc:
        ctx.add_problem(None, f"cannot read: {exc.strerror or exc}")
    except RecursionError:
        ctx.add_problem(None, "input nested too deeply to read")
    except MemoryError:
        ctx.add_problem(None, OUT_OF_MEMORY)
    except Exception as exc:  # a reader bug must not pass a file as clean, nor stop the scan
        ctx.add_problem(None, f"internal error while reading: {type(exc).__name__}: {exc}")
    result = FileResult(
        path=display,
        format=fmt,
        verdict=verdict_for(ctx.findings, ctx.problems),
        findings=tuple(ctx.findings),
        problems=tuple(ctx.problems),
        members=tuple(ctx.members),
        sha256=digest,
        size=size,
        seconds=time.monotonic() - started,
    )
    if options.keep_traces:
        object.__setattr__(result, "traces", ctx.traces)
    _remember(options, result)
    return result


def _known_result(options: ScanOptions, sha256: str | None, display: str, size: int | None,
                  started: float) -> FileResult | None:
    """The result already found for this content, in this run or an earlier one, moved to `display`."""
    if not sha256 or options.keep_traces:
        return None
    key = memo_key(sha256, options.limits, display)
    result = options.memo.get(key) if options.memo is not None else None
    if result is None and options.cache:
        result = options.cache.get(sha256, options.limits, display)
        if result is not None and options.memo is not None:
            options.memo.put(key, result)
    if result is None or (size is not None and result.size is not None and result.size != size):
        return None
    return replace(rebase(result, display), seconds=time.monotonic() - started)


def _remember(options: ScanOptions, result: FileResult) -> None:
    if not is_storable(result) or _attempt_failed(result):
        return
    if options.memo is not None:
        options.memo.put(memo_key(result.sha256, options.limits, result.path), result)
    if options.cache:
        options.cache.put(result.sha256, options.limits, result, name=result.path)


def _attempt_failed(result: FileResult) -> bool:
    """A worker that died or ran out of memory says nothing lasting about the content."""
    return any(p.reason.startswith((WORKER_PROBLEM, OUT_OF_MEMORY)) for p in result.problems)


def _seekable(stream) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _unreadable(display: str, reason: str, size: int | None) -> FileResult:
    problem = Problem(reason, Location(display))
    return FileResult(display, "unknown", Verdict.INCONCLUSIVE, (), (problem,), (), None, size)


def _sha256(stream) -> str:
    digest = hashlib.sha256()
    stream.seek(0)
    for chunk in iter(lambda: stream.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()
