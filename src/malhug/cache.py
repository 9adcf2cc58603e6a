"""Verdicts remembered by content: the same bytes, read by the same knowledge, are scanned once.

A result is keyed by the content's sha256, the malhug version, a digest of everything that
decides a verdict (rule files, the engine's own sources, the limits in effect) and the file's
base name (a text file is read as Python when its name ends in .py). Changing any of them
re-scans. Two stores share that key: `ResultMemo` for one run, in memory, and `VerdictCache`
for every run on one machine, in SQLite.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import sqlite3
import threading
import time
from collections import OrderedDict
from functools import lru_cache
from importlib import resources
from pathlib import Path

from . import __version__
from .findings import FileResult, Location
from .limits import Limits

CACHE_FILE = "verdicts.sqlite"
BUSY_TIMEOUT_SECONDS = 30.0
MEMO_ENTRIES = 4096

# Problems that say nothing about the content, only about this attempt to read it.
TRANSIENT_PROBLEMS = ("cannot read", "internal error", "limit seconds_per_file")

_SHA256 = re.compile(r"[0-9a-f]{64}")
_SCHEMA = "CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, result TEXT NOT NULL, created_at REAL NOT NULL)"


def default_cache_path() -> Path:
    folder = os.environ.get("MALHUG_CACHE_DIR")
    if folder:
        return Path(folder) / CACHE_FILE
    base = os.environ.get("XDG_CACHE_HOME") or (os.environ.get("LOCALAPPDATA") if os.name == "nt" else None)
    root = Path(base) if base else Path.home() / ".cache"
    return root / "malhug" / CACHE_FILE


@lru_cache(maxsize=1)
def rules_digest() -> str:
    """sha256 over the packaged rule files (rules/*.toml, rules/yara/*.yar)."""
    folder = resources.files("malhug.rules")
    digest = hashlib.sha256()
    entries = [("", entry) for entry in folder.iterdir() if entry.name.endswith(".toml")]
    yara = folder.joinpath("yara")
    if yara.is_dir():
        entries += [("yara/", entry) for entry in yara.iterdir() if entry.name.endswith(".yar")]
    for prefix, entry in sorted(entries, key=lambda item: item[0] + item[1].name):
        _digest_file(digest, prefix + entry.name, entry.read_bytes())
    return digest.hexdigest()


@lru_cache(maxsize=1)
def engine_digest() -> str:
    """sha256 over the package's Python sources and the rule engine it links: a changed reader
    re-scans even when the version number stays the same."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):
        try:
            _digest_file(digest, path.relative_to(package).as_posix(), path.read_bytes())
        except OSError:
            digest.update(b"unreadable:" + path.name.encode())
    try:
        from importlib.metadata import version

        digest.update(b"yara-x " + version("yara-x").encode())
    except Exception:  # a missing distribution record only weakens the key, never the result
        digest.update(b"yara-x unknown")
    return digest.hexdigest()


def _digest_file(digest, name: str, data: bytes) -> None:
    digest.update(name.encode() + b"\0" + str(len(data)).encode() + b"\0")
    digest.update(data)


def knowledge_digest(limits: Limits) -> str:
    limits_text = json.dumps(dataclasses.asdict(limits), sort_keys=True)
    text = "\n".join((rules_digest(), engine_digest(), limits_text))
    return hashlib.sha256(text.encode()).hexdigest()


def cache_key(sha256: str, limits: Limits, name: str = "") -> str:
    return f"{sha256}:{__version__}:{knowledge_digest(limits)}:{base_name(name)}"


def memo_key(sha256: str, limits: Limits, name: str = "") -> str:
    """The key of a result within one run, where version, rules and engine cannot change."""
    return f"{sha256}:{hash(limits)}:{base_name(name)}"


def base_name(display: str) -> str:
    return re.split(r"[\\/]", display)[-1] if display else ""


def is_sha256(text: str | None) -> bool:
    return bool(text) and _SHA256.fullmatch(text) is not None


def is_storable(result: FileResult) -> bool:
    """A result worth keeping: fully computed, not spoiled by an error of this one attempt."""
    return is_sha256(result.sha256) and not any(
        problem.reason.startswith(TRANSIENT_PROBLEMS) for problem in result.problems)


def rebase(result: FileResult, display: str) -> FileResult:
    """The same result for the same content found at another path."""
    old = result.path

    def moved(location: Location) -> Location:
        return dataclasses.replace(location, file=display) if location.file == old else location

    return dataclasses.replace(
        result,
        path=display,
        findings=tuple(dataclasses.replace(f, location=moved(f.location)) for f in result.findings),
        problems=tuple(dataclasses.replace(p, location=moved(p.location)) for p in result.problems),
    )


class ResultMemo:
    """Results of one run by key, so content linked from many paths is read once (bounded)."""

    def __init__(self, entries: int = MEMO_ENTRIES):
        self.entries = entries
        self._results: OrderedDict[str, FileResult] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> FileResult | None:
        with self._lock:
            result = self._results.get(key)
            if result is not None:
                self._results.move_to_end(key)
            return result

    def put(self, key: str, result: FileResult) -> None:
        with self._lock:
            self._results[key] = result
            self._results.move_to_end(key)
            while len(self._results) > self.entries:
                self._results.popitem(last=False)

    def __len__(self) -> int:
        return len(self._results)


class VerdictCache:
    """File results by content key, in one SQLite table shared by the processes of one machine.

    It never raises into a scan: a database that cannot be opened or is damaged is rebuilt
    once, and if that fails the cache turns itself off (every lookup misses).
    """

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else default_cache_path()
        self.disabled = False
        self.error: str | None = None
        self._ready = False
        self._lock = threading.Lock()

    def get(self, sha256: str, limits: Limits, name: str = "") -> FileResult | None:
        if not is_sha256(sha256):
            return None
        key = cache_key(sha256, limits, name)
        row = self._run(lambda db: db.execute("SELECT result FROM verdicts WHERE key = ?", (key,)).fetchone())
        if not isinstance(row, tuple):
            return None
        result = _decode(row[0])
        if result is None or result.sha256 != sha256:
            self._run(lambda db: db.execute("DELETE FROM verdicts WHERE key = ?", (key,)))
            return None
        return result

    def put(self, sha256: str, limits: Limits, result: FileResult, name: str | None = None) -> bool:
        """Keep `result`; returns whether it was kept (results of a failed attempt are not)."""
        if result.sha256 != sha256 or not is_storable(result):
            return False
        key = cache_key(sha256, limits, result.path if name is None else name)
        text = _encode(result)
        stored = self._run(lambda db: db.execute(
            "INSERT OR REPLACE INTO verdicts (key, result, created_at) VALUES (?, ?, ?)",
            (key, text, time.time())))
        return stored is not None

    def rebase(self, result: FileResult, display: str) -> FileResult:
        return rebase(result, display)

    def clear(self) -> None:
        self._run(lambda db: db.execute("DELETE FROM verdicts"))

    def count(self) -> int:
        row = self._run(lambda db: db.execute("SELECT COUNT(*) FROM verdicts").fetchone())
        return row[0] if isinstance(row, tuple) else 0

    def _run(self, action):
        """Run one statement in its own connection; None when the cache is unusable."""
        if self.disabled:
            return None
        for attempt in (1, 2):
            try:
                self._prepare()
                db = self._connect()
                try:
                    with db:
                        result = action(db)
                    return result if result is not None else True
                finally:
                    db.close()
            except sqlite3.OperationalError as exc:
                if _busy(exc):  # another process held the lock past the timeout: a miss, nothing more
                    return None
                if "no such" not in str(exc) or attempt == 2 or not self._rebuild():  # a foreign schema
                    return self._disable(exc)
            except sqlite3.DatabaseError as exc:  # not a database, or a damaged one
                if attempt == 2 or not self._rebuild():
                    return self._disable(exc)
            except OSError as exc:
                return self._disable(exc)
        return None

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS)

    def _prepare(self) -> None:
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = self._connect()
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(_SCHEMA)
                db.commit()
                db.execute("SELECT key, result, created_at FROM verdicts LIMIT 1").fetchall()
            finally:
                db.close()
            self._ready = True

    def _rebuild(self) -> bool:
        """Drop a damaged database; the next statement starts an empty one."""
        with self._lock:
            self._ready = False
            try:
                for suffix in ("", "-wal", "-shm"):
                    self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
            except OSError:
                return False
            return True

    def _disable(self, exc: Exception) -> None:
        self.disabled = True
        self.error = f"{type(exc).__name__}: {exc}"
        return None


def _busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _encode(result: FileResult) -> str:
    body = json.dumps(result.to_dict(), sort_keys=True, separators=(",", ":"))
    return json.dumps({"check": hashlib.sha256(body.encode()).hexdigest(), "result": body})


def _decode(text) -> FileResult | None:
    """The stored result, or None when the row is damaged in any way."""
    try:
        envelope = json.loads(text)
        body = envelope["result"]
        if hashlib.sha256(body.encode()).hexdigest() != envelope["check"]:
            return None
        return FileResult.from_dict(json.loads(body))
    except Exception:
        return None
