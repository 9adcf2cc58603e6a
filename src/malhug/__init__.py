"""malhug: find malicious code hidden in machine-learning models and datasets, without running it.

    >>> import malhug
    >>> report = malhug.scan("model.bin")
    >>> report.verdict
"""
from __future__ import annotations

__version__ = "0.1.0"

import os
from typing import Iterable

from .findings import FileResult, Finding, Location, Report, Severity, Verdict


def scan(target: "str | os.PathLike | Iterable[str | os.PathLike]", **options) -> Report:
    """Scan a file, a folder, or several of them, and return the report.

    Options: `limits` (a malhug.limits.Limits, or a dict of overrides such as
    `{"hash_max_bytes": 0}`), `follow_symlinks`, `cache` (a malhug.cache.VerdictCache, the path
    of its database, True for the default one under the user's cache folder, or False/None for
    none: the default), `isolation` (True reads each file in a resource-limited worker process,
    as the command line does; default False), `workers`, and `worker_start` ("exec", the
    default: each worker a fresh interpreter; "fork": forks of this process, made only while it
    runs a single thread).
    """
    from .limits import DEFAULT_LIMITS, Limits
    from .scanner import ScanOptions, scan_paths

    limits = options.pop("limits", None)
    if isinstance(limits, dict):
        limits = DEFAULT_LIMITS.with_overrides(**limits)
    if limits is not None:
        if not isinstance(limits, Limits):
            raise TypeError("limits must be a malhug.limits.Limits or a dict of overrides")
        options["limits"] = limits
    if "cache" in options:
        options["cache"] = _verdict_cache(options["cache"])
    scan_options = ScanOptions(**options)
    targets = [target] if isinstance(target, (str, os.PathLike)) else list(target)
    return scan_paths(targets, scan_options)


def _verdict_cache(value):
    from .cache import VerdictCache

    if value is None or value is False:
        return None
    if value is True:
        return VerdictCache()
    if isinstance(value, (str, os.PathLike)):
        return VerdictCache(value)
    if not (hasattr(value, "get") and hasattr(value, "put")):
        raise TypeError("cache must be a malhug.cache.VerdictCache, a path, True or False")
    return value


__all__ = ["scan", "Report", "FileResult", "Finding", "Location", "Severity", "Verdict", "__version__"]
