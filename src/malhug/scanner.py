"""Scan files and folders: one ScanContext per file, judged into a FileResult."""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from . import __version__
from .findings import FileResult, Report
from .formats import analyse
from .formats.base import ScanContext
from .judge import verdict_for
from .limits import DEFAULT_LIMITS, Deadline, LimitExceeded, Limits


@dataclass(frozen=True)
class ScanOptions:
    limits: Limits = DEFAULT_LIMITS
    follow_symlinks: bool = False  # into linked folders; linked files are always scanned
    keep_traces: bool = False  # keep pickle traces on results (for explain)
    exclude_dirs: tuple = field(default=(".git", ".hg", ".svn", "__pycache__"))


def iter_files(target: Path, options: ScanOptions) -> Iterator[Path]:
    if target.is_file():
        yield target
        return
    for root, dirs, files in os.walk(target, followlinks=options.follow_symlinks):
        dirs[:] = sorted(d for d in dirs if d not in options.exclude_dirs)
        for name in sorted(files):
            yield Path(root) / name  # a linked file is scanned (a broken link says so)


def scan_paths(targets: Iterable[str | os.PathLike], options: ScanOptions | None = None) -> Report:
    options = options or ScanOptions()
    results = []
    errors = []
    names = []
    for target in targets:
        path = Path(target)
        names.append(str(target))
        if not path.exists():
            errors.append(f"{target}: no such file or folder")
            continue
        for file in iter_files(path, options):
            results.append(scan_file(file, options))
    return Report(tuple(results), __version__, tuple(names), tuple(errors))


def scan_file(path: str | os.PathLike, options: ScanOptions | None = None) -> FileResult:
    options = options or ScanOptions()
    started = time.monotonic()
    display = str(path)
    ctx = ScanContext(display, options.limits, Deadline(options.limits.seconds_per_file))
    fmt = "unknown"
    size = None
    digest = None
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as stream:
            fmt = analyse(stream, ctx, None, name=display)
        if size <= options.limits.hash_max_bytes:
            digest = _sha256(path)
    except LimitExceeded as exc:
        ctx.limit_hit(None, exc)
    except OSError as exc:
        ctx.add_problem(None, f"cannot read: {exc.strerror or exc}")
    except RecursionError:
        ctx.add_problem(None, "input nested too deeply to read")
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
    return result


def _sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
