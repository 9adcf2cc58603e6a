"""The one job-queue interface every backend offers (SQLite embedded, Celery distributed)."""
from __future__ import annotations

import abc
from dataclasses import dataclass
from enum import Enum

from ..jobs import ScanJob

DEFAULT_LEASE_SECONDS = 600.0
DEFAULT_MAX_ATTEMPTS = 3  # the poison cap: after this many failed attempts a job is given up


class Disposition(str, Enum):
    """What became of a job after a failed attempt."""

    RETRY = "retry"  # queued again for another attempt
    POISONED = "poisoned"  # attempts exhausted: the file gets an inconclusive verdict and an alert


@dataclass(frozen=True)
class Claim:
    """A job leased to one worker until `lease_expires` (a time.time() value)."""

    job_id: str
    job: ScanJob
    attempt: int  # 1 for the first attempt
    lease_expires: float


class JobQueue(abc.ABC):
    """submit, claim, complete, fail; leases expire, so a dead worker's job runs again."""

    @abc.abstractmethod
    def submit(self, job: ScanJob) -> bool:
        """Queue a job; False when a job with the same key is already queued or running."""

    @abc.abstractmethod
    def claim(self, worker: str, lease_seconds: float = DEFAULT_LEASE_SECONDS) -> Claim | None:
        """Lease the most urgent job (highest priority, then oldest), or None when idle."""

    @abc.abstractmethod
    def complete(self, claim: Claim) -> None:
        """The job's result is stored: remove it."""

    @abc.abstractmethod
    def fail(self, claim: Claim, error: str) -> Disposition:
        """An attempt failed: requeue it, or give it up after the maximum attempts."""

    @abc.abstractmethod
    def depth(self) -> dict[str, int]:
        """Jobs by state: {"queued": n, "running": n, "poisoned": n}."""

    def close(self) -> None:
        """Release connections."""
