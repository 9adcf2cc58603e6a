"""The job queue between the monitor and the workers: SQLite embedded, or Celery distributed.

Both backends offer the same JobQueue interface (malhug.service.queue.base) and the same
guarantees: one live job per result key, most urgent first, at-least-once delivery (a job whose
worker dies runs again), and a poison cap (after `max_attempts` failed attempts the file gets an
inconclusive result and an alert).
"""
from __future__ import annotations

from .base import DEFAULT_LEASE_SECONDS, DEFAULT_MAX_ATTEMPTS, Claim, Disposition, JobQueue

__all__ = ["Claim", "DEFAULT_LEASE_SECONDS", "DEFAULT_MAX_ATTEMPTS", "Disposition", "JobQueue", "open_queue"]


def open_queue(settings) -> JobQueue:
    """The queue the settings name: "sqlite" (settings.queue_file) or "celery" (settings.broker_url)."""
    if settings.queue == "sqlite":
        from .sqlite_queue import SqliteQueue

        return SqliteQueue(settings.queue_file, max_attempts=settings.max_attempts,
                           lease_seconds=settings.lease_seconds)
    if settings.queue == "celery":
        from .celery_queue import CeleryQueue

        return CeleryQueue(settings)
    raise ValueError(f"unknown queue backend {settings.queue!r}: sqlite or celery")
