"""What a worker does with one job: scan the file once, store its result, alert on it.

Handling is idempotent: the result key names the file's content and the malhug version, so a
job delivered twice (its first worker died after storing the result, or a duplicate slipped in)
finds its result already stored and does nothing more. Only the delivery that stored the result
raises an alert.
"""
from __future__ import annotations

from .jobs import ScanJob
from .worker import Handlers


def handle_job(job: ScanJob, store, alerter, options=None, *, pool=None, scan=None):
    """Scan the job's file in an isolated process unless its result is already stored; store
    it, and alert when this call is the one that stored it. Returns the file's result.
    `pool` (malhug.isolation.WorkerPool) lets a long-lived worker reuse its isolated readers;
    `scan(job, options)` replaces how the file is fetched and scanned (for embedding)."""
    if store.known_results([job.key]):
        return store.result(job.key)
    from ..scanner import ScanOptions

    options = options or ScanOptions(isolation=True)
    if scan is not None:
        result = scan(job, options)
    else:
        from .fetch import scan_job

        result = scan_job(job, options, pool=pool)
    if store.save_result(job.key, job.content_key, job.fingerprint, result):
        alerter.notify(job, result)
    return result


def poisoned_result(job: ScanJob, error: str):
    """The inconclusive result of a file that could not be scanned in the attempts allowed."""
    from ..findings import FileResult, Location, Problem, Verdict

    reason = f"not scanned: every attempt failed ({error})"
    return FileResult(path=job.path, format="unknown", verdict=Verdict.INCONCLUSIVE, findings=(),
                      problems=(Problem(reason, Location(job.path)),), members=(),
                      sha256=job.sha256, size=job.size)


def poison(job: ScanJob, error: str, store, alerter):
    """Give a job up: store an inconclusive result naming the failures, and alert about it
    (once: nothing happens when the key already has a result)."""
    result = poisoned_result(job, error)
    if store.save_result(job.key, job.content_key, job.fingerprint, result):
        alerter.poisoned(job, error)
    return result


def service_handlers(settings) -> Handlers:
    """The workers' handlers: the results store and alerter named by the settings."""
    from ..isolation import WorkerPool
    from ..scanner import ScanOptions
    from .alerts import Alerter
    from .store import Store, StoreUnavailable

    options = ScanOptions(isolation=True)
    store = Store(settings.store_url)
    alerter = Alerter(settings, store)
    readers = WorkerPool(options.limits, workers=1)

    def close() -> None:
        readers.close()
        alerter.close()
        store.dispose()

    return Handlers(handle=lambda job: handle_job(job, store, alerter, options, pool=readers),
                    poison=lambda job, error: poison(job, error, store, alerter),
                    close=close, postpone_on=(StoreUnavailable,))
