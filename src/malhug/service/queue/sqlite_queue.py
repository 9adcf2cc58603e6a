"""The embedded job queue: one SQLite table (WAL) shared by every worker process on a machine.

Each row is a job with a state (queued, running, poisoned), a priority, an attempt count and a
lease. A claim leases the most urgent job inside one `BEGIN IMMEDIATE` transaction, so two
worker processes never get the same lease. A running job whose lease has expired (its worker
was killed, or hung past the hard time limit) is claimable again; every claim counts as one
attempt, so a file that keeps killing its worker runs out of attempts like one that keeps
raising. Finished jobs are deleted: whether a result exists is the store's business, the queue
only refuses a second live job for the same key.

A claim is identified by the row and its attempt number, so a worker that lost its lease can
no longer complete, fail or extend the job another worker now holds.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from ..jobs import ScanJob
from .base import DEFAULT_LEASE_SECONDS, DEFAULT_MAX_ATTEMPTS, Claim, Disposition, JobQueue

QUEUED, RUNNING, POISONED = "queued", "running", "poisoned"
BUSY_TIMEOUT_SECONDS = 30.0

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        key TEXT NOT NULL UNIQUE,
        body TEXT NOT NULL,
        priority INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        worker TEXT,
        lease_expires REAL,
        not_before REAL NOT NULL DEFAULT 0,
        submitted REAL NOT NULL,
        last_error TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS jobs_by_urgency ON jobs (state, priority DESC, id)",
)


class SqliteQueue(JobQueue):
    """The JobQueue of one SQLite file; safe to use from several processes and threads."""

    def __init__(self, path: str | Path, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
                 lease_seconds: float = DEFAULT_LEASE_SECONDS):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_attempts = max_attempts
        self.lease_seconds = lease_seconds
        self._lock = threading.Lock()  # one connection, shared by a worker and its heartbeat
        self._db = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_SECONDS,
                                   isolation_level=None, check_same_thread=False)
        self._db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        with self._transaction() as db:
            for statement in SCHEMA:
                db.execute(statement)

    # -- JobQueue ------------------------------------------------------------------------------
    def submit(self, job: ScanJob) -> bool:
        with self._transaction() as db:
            row = db.execute("SELECT id, state FROM jobs WHERE key = ?", (job.key,)).fetchone()
            if row is None:
                db.execute("INSERT INTO jobs (key, body, priority, state, submitted) VALUES (?, ?, ?, ?, ?)",
                           (job.key, job.to_json(), job.priority, QUEUED, time.time()))
                return True
            job_id, state = row
            if state == POISONED:  # given up before; asked again (new rules, a re-scan): start afresh
                db.execute("UPDATE jobs SET body = ?, priority = ?, state = ?, attempts = 0, worker = NULL,"
                           " lease_expires = NULL, not_before = 0, submitted = ?, last_error = NULL WHERE id = ?",
                           (job.to_json(), job.priority, QUEUED, time.time(), job_id))
                return True
            # a live duplicate: refused, but it inherits the more urgent priority
            db.execute("UPDATE jobs SET priority = MAX(priority, ?) WHERE id = ?", (job.priority, job_id))
            return False

    def claim(self, worker: str, lease_seconds: float | None = None) -> Claim | None:
        lease = self.lease_seconds if lease_seconds is None else lease_seconds
        with self._transaction() as db:
            now = time.time()
            row = db.execute(
                "SELECT id, body, attempts FROM jobs"
                " WHERE (state = ? AND not_before <= ?) OR (state = ? AND lease_expires < ?)"
                " ORDER BY priority DESC, id LIMIT 1", (QUEUED, now, RUNNING, now)).fetchone()
            if row is None:
                return None
            job_id, body, attempts = row
            attempt = attempts + 1
            expires = now + lease
            db.execute("UPDATE jobs SET state = ?, attempts = ?, worker = ?, lease_expires = ? WHERE id = ?",
                       (RUNNING, attempt, worker, expires, job_id))
        return Claim(job_id=_claim_id(job_id, attempt), job=ScanJob.from_json(body), attempt=attempt,
                     lease_expires=expires)

    def complete(self, claim: Claim) -> None:
        row_id, attempt = _parse_claim_id(claim.job_id)
        with self._transaction() as db:
            db.execute("DELETE FROM jobs WHERE id = ? AND attempts = ? AND state = ?", (row_id, attempt, RUNNING))

    def fail(self, claim: Claim, error: str) -> Disposition:
        row_id, attempt = _parse_claim_id(claim.job_id)
        with self._transaction() as db:
            row = db.execute("SELECT attempts, state FROM jobs WHERE id = ?", (row_id,)).fetchone()
            if row is None or row[0] != attempt or row[1] != RUNNING:
                return Disposition.RETRY  # the lease was lost: another attempt owns the job now
            if attempt >= self.max_attempts:
                db.execute("UPDATE jobs SET state = ?, worker = NULL, lease_expires = NULL, last_error = ?"
                           " WHERE id = ?", (POISONED, error, row_id))
                return Disposition.POISONED
            db.execute("UPDATE jobs SET state = ?, worker = NULL, lease_expires = NULL, last_error = ?"
                       " WHERE id = ?", (QUEUED, error, row_id))
            return Disposition.RETRY

    def depth(self) -> dict[str, int]:
        counts = {QUEUED: 0, RUNNING: 0, POISONED: 0}
        with self._lock:
            for state, count in self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state"):
                counts[state] = count
        return counts

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- leases ----------------------------------------------------------------------------------
    def extend(self, claim: Claim, lease_seconds: float | None = None) -> bool:
        """Keep a lease alive (the worker's heartbeat); False when it was already lost."""
        lease = self.lease_seconds if lease_seconds is None else lease_seconds
        row_id, attempt = _parse_claim_id(claim.job_id)
        with self._transaction() as db:
            cursor = db.execute("UPDATE jobs SET lease_expires = ? WHERE id = ? AND attempts = ? AND state = ?",
                                (time.time() + lease, row_id, attempt, RUNNING))
            return cursor.rowcount == 1

    def postpone(self, claim: Claim, seconds: float, reason: str) -> None:
        """Put a job back for later without counting this attempt (the trouble was not the
        file's: the results store was unreachable)."""
        row_id, attempt = _parse_claim_id(claim.job_id)
        with self._transaction() as db:
            db.execute("UPDATE jobs SET state = ?, attempts = attempts - 1, worker = NULL, lease_expires = NULL,"
                       " not_before = ?, last_error = ? WHERE id = ? AND attempts = ? AND state = ?",
                       (QUEUED, time.time() + seconds, reason, row_id, attempt, RUNNING))

    def release(self, claim: Claim, error: str) -> None:
        """End a lease at once without deciding the job's fate (the attempt still counts): the
        next claim takes it up, and poisons it when it was the last attempt."""
        row_id, attempt = _parse_claim_id(claim.job_id)
        with self._transaction() as db:
            db.execute("UPDATE jobs SET lease_expires = 0, last_error = ? WHERE id = ? AND attempts = ? AND state = ?",
                       (error, row_id, attempt, RUNNING))

    def release_worker(self, worker: str, error: str) -> int:
        """End every lease a worker holds (it is known to be dead): its jobs are taken up at
        once instead of when their leases expire. Returns how many."""
        with self._transaction() as db:
            cursor = db.execute("UPDATE jobs SET lease_expires = 0, last_error = ? WHERE state = ? AND worker = ?",
                                (error, RUNNING, worker))
            return cursor.rowcount

    def last_error(self, key: str) -> str | None:
        """The last failure recorded for a job key (None when none or no such job)."""
        with self._lock:
            row = self._db.execute("SELECT last_error FROM jobs WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _transaction(self):
        return _Transaction(self._db, self._lock)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error) under the connection's lock: the write lock
    is taken up front, so concurrent claims serialise instead of failing on upgrade."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock):
        self.db, self.lock = db, lock

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise
        return self.db

    def __exit__(self, kind, value, traceback) -> None:
        try:
            self.db.execute("COMMIT" if kind is None else "ROLLBACK")
        finally:
            self.lock.release()


def _claim_id(row_id: int, attempt: int) -> str:
    return f"{row_id}.{attempt}"


def _parse_claim_id(text: str) -> tuple[int, int]:
    row_id, attempt = text.split(".")
    return int(row_id), int(attempt)
