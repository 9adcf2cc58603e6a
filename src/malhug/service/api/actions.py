"""The triage actions (accept, escalate, re-scan), shared by the REST API and the dashboard.

Each returns the response dict, or raises LookupError when the content is unknown and
RuntimeError when the queue cannot take a re-scan.
"""
from __future__ import annotations

from sqlalchemy import func, select

from ..jobs import ScanJob
from ..keys import fingerprint, result_key
from ..store.models import FileResult, RevisionFile, Triage
from . import queries


def _known(session, content_key: str) -> bool:
    for table in (FileResult, RevisionFile):
        if session.scalar(select(func.count()).select_from(table).where(table.content_key == content_key)):
            return True
    return False


def _decide(store, content_key: str, decision: str, body) -> dict:
    with store.session() as session:
        if not _known(session, content_key):
            raise LookupError(content_key)
    triage_id = store.add_triage(content_key, body.rule, decision, body.reason, body.actor)
    with store.session() as session:
        return queries.triage_dict(session.get(Triage, triage_id))


def accept(store, content_key: str, body) -> dict:
    """The findings (of one rule, or the whole file) are accepted, with a reason."""
    return _decide(store, content_key, "accepted", body)


def escalate(store, content_key: str, body) -> dict:
    """The findings need someone's attention."""
    return _decide(store, content_key, "escalated", body)


def rescan_job(store, content_key: str, priority: int) -> ScanJob:
    """A job scanning the content again, fetched from the repo that holds it (see
    queries.rescan_target), under the current fingerprint: the stored result key is kept when it
    was made under this fingerprint; otherwise a fresh one is made, and the file of the repo's
    current revision is re-keyed to it (Store.record_revision), so the new result completes it."""
    with store.session() as session:
        found = queries.rescan_target(session, content_key)
        if found is None:
            raise LookupError(content_key)
        rf, revision, repo = found
        current = fingerprint()
        key = rf.result_key if rf.result_key.endswith("|" + current) else result_key(content_key, rf.path, current)
        sha256 = content_key.split(":", 1)[1] if content_key.startswith("sha256:") else None
        job = ScanJob(key=key, content_key=content_key, fingerprint=current, source=repo.source,
                      repo_type=repo.kind, repo_id=repo.name, revision=revision.commit, path=rf.path,
                      size=rf.size, sha256=sha256, priority=priority)
        rekey = key != rf.result_key and revision.commit == repo.last_commit
        repo_id, path, size = repo.id, rf.path, rf.size
    if rekey:
        store.record_revision(repo_id, job.revision, [(path, content_key, key, size)])
    return job


def rescan(store, queue, content_key: str, body) -> dict:
    """Queue the content again (its stored result under the current fingerprint is dropped
    first) and record the decision."""
    if queue is None:
        raise RuntimeError("no job queue is configured")
    job = rescan_job(store, content_key, body.priority)
    store.forget_result(job.key)
    try:
        queued = queue.submit(job)
    except Exception as exc:  # a broker that is down: say so, the decision is not recorded
        raise RuntimeError(f"the job queue is unavailable: {exc}") from exc
    reason = body.reason or ("queued again" if queued else "already queued")
    triage_id = store.add_triage(content_key, body.rule, "rescan", reason, body.actor)
    with store.session() as session:
        triage = queries.triage_dict(session.get(Triage, triage_id))
    return {"queued": bool(queued), "key": job.key, "repo": job.repo_id, "path": job.path, "triage": triage}
