"""One monitor pass over a source, and the watch loop that repeats it.

A pass, for each repository by priority (new repositories, then popular ones, first):
- its current commit equals the store's last commit: nothing to do;
- otherwise the commit is recorded with all its files (path, content key, result key, size),
  the paths changed since the last recorded commit are found (`git diff-tree` for mirrors, the
  two listings compared for a hub), and a scan job is submitted for each file whose result key
  is not stored yet. A result key is content + name suffix + malhug's fingerprint, so a file is
  scanned once, ever, per fingerprint, however many repositories or commits hold it: an
  unchanged path already has its result (or its job) from the last commit, and only changed
  paths lead to work.
- a repository the source no longer has is marked gone; an error with one repository is
  counted and the pass goes on.
Then files whose stored result was made under another fingerprint (a rules or version change)
are queued again, and the pass is recorded as a scan run with its counts.

Priorities of jobs: a watch pass's new repositories above its new commits above a backfill
(the first pass over a source, or `--backfill`), each ordered by popularity; re-scans after a
fingerprint change come last, so fresh commits are never kept waiting by them.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from .. import keys
from ..jobs import ScanJob
from .sources import DEFAULT_KINDS, FileEntry, RepoGone, RepoRef, Source, SourceError

LOGGER = logging.getLogger("malhug.service.monitor")

PRIORITY_NEW_REPO = 3000  # + popularity (0..999)
PRIORITY_NEW_COMMIT = 2000
PRIORITY_BACKFILL = 1000
PRIORITY_RESCAN = 0
STALE_BATCH = 1000  # stale files re-queued per pass
MAX_ERROR_TEXT = 4000


@dataclass
class PassResult:
    """What one pass did (the counts of its scan run)."""

    mode: str
    repos_checked: int = 0
    repos_unchanged: int = 0
    revisions_new: int = 0
    files_referenced: int = 0  # files of the new revisions
    files_changed: int = 0  # of those, the paths new or changed since the last recorded commit
    files_queued: int = 0
    files_known: int = 0  # already scanned, already queued, or unchanged since the last commit
    files_rescan: int = 0  # queued again after a fingerprint change
    repos_gone: int = 0
    errors: int = 0
    error_text: list = field(default_factory=list)
    seconds: float = 0.0

    def run_counts(self) -> dict:
        return {"repos_checked": self.repos_checked, "revisions_new": self.revisions_new,
                "files_queued": self.files_queued + self.files_rescan, "files_known": self.files_known,
                "errors": self.errors, "error_text": "\n".join(self.error_text)[:MAX_ERROR_TEXT]}


def check_once(source: Source, store, queue, *, mode: str = "watch", kinds: Iterable[str] = DEFAULT_KINDS,
               print_: str | None = None, backfill: bool | None = None,
               on_repo: Callable[[RepoRef, str], None] | None = None,
               stop: threading.Event | None = None) -> PassResult:
    """One pass over the source. `backfill`: None means backfill when the store knows no
    repository of this source yet (the first run). `on_repo(ref, outcome)` is told each repo's
    outcome ("unchanged", "new", "changed", "gone", "error"). A set `stop` ends the pass at the
    next repository."""
    started = time.monotonic()
    print_ = print_ or keys.fingerprint()
    kinds = tuple(kinds)
    if backfill is None:
        backfill = not _known_repos(store, source.location, kinds)
    result = PassResult("backfill" if backfill else mode)
    run_id = store.start_run(result.mode, source.location)
    try:
        pass_ = _Pass(source, store, queue, print_, backfill, result, on_repo, stop)
        try:
            refs = source.repos(kinds)
        except SourceError as exc:
            pass_.error(None, exc)
            refs = None
        if refs is not None:
            finished = pass_.check_repos(refs)
            if finished and source.complete:
                pass_.mark_missing(refs, kinds)
        if not pass_.stopped():
            pass_.requeue_stale()
            # a result stored while its revision was being recorded leaves that revision pending
            store.complete_pending()
    finally:
        result.seconds = time.monotonic() - started
        store.finish_run(run_id, **result.run_counts())
    return result


class _Pass:
    def __init__(self, source: Source, store, queue, print_: str, backfill: bool, result: PassResult,
                 on_repo, stop: threading.Event | None = None):
        self.stop = stop
        self.source = source
        self.store = store
        self.queue = queue
        self.print_ = print_
        self.backfill = backfill
        self.result = result
        self.on_repo = on_repo
        self.submitted: set[str] = set()  # result keys queued (or found queued) in this pass

    def stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def check_repos(self, refs: list[RepoRef]) -> bool:
        """Check each repository; False when the pass was stopped before the last one."""
        states = _repo_states(self.store, self.source.location)
        previous = {ref: states.get((ref.kind, ref.name), (None, False)) for ref in refs}
        order = sorted(refs, key=lambda r: (previous[r][0] is None and not self.backfill, r.priority),
                       reverse=True)
        for ref in order:
            if self.stopped():
                return False
            last_commit, gone = previous[ref]
            try:
                outcome = self.check_repo(ref, last_commit)
                if outcome == "unchanged" and gone:  # back at the source, as it was
                    self.store.upsert_repo(self.source.location, ref.kind, ref.name, priority=ref.priority)
            except RepoGone as exc:
                self.store.mark_gone(self.source.location, ref.kind, ref.name)
                self.result.repos_gone += 1
                outcome = "gone"
                LOGGER.info("%s is gone: %s", ref, exc)
            except Exception as exc:  # one repository's trouble must not stop the pass
                if _store_unavailable(exc):
                    raise  # every other repository would fail the same way: end the pass
                self.error(ref, exc)
                outcome = "error"
            if self.on_repo is not None:
                self.on_repo(ref, outcome)
        return True

    def check_repo(self, ref: RepoRef, previous: str | None) -> str:
        self.result.repos_checked += 1
        commit = self.source.head(ref)
        if commit == previous:
            self.result.repos_unchanged += 1
            return "unchanged"
        entries = self.source.files(ref, commit)
        changed = self._changed(ref, previous, commit, entries)
        if self.backfill:
            priority = PRIORITY_BACKFILL + ref.priority
        else:
            priority = (PRIORITY_NEW_REPO if previous is None else PRIORITY_NEW_COMMIT) + ref.priority
        files = [(e.path, e.content_key, keys.result_key(e.content_key, e.path, self.print_), e.size)
                 for e in entries]
        # A changed path is queued unless its content was scanned already (in any repository).
        # An unchanged path normally has its result (or its job) from the last commit; it is
        # queued only when that is not so: after a fingerprint change, or a job that was lost.
        known = self.store.known_results({row[2] for row in files})
        for entry, (_, _, key, _) in zip(entries, files):
            if key in known or key in self.submitted:
                self.result.files_known += 1
                continue
            self.submitted.add(key)
            if self.queue.submit(self._job(ref, commit, entry, key, priority)):
                self.result.files_queued += 1
            else:
                self.result.files_known += 1  # queued or running already
        self.result.files_changed += len(entries) if changed is None else \
            sum(1 for e in entries if e.path in changed)
        self.result.files_referenced += len(entries)
        # recorded after the jobs are queued: a pass stopped in between leaves the repository
        # unrecorded, so the next pass queues its files again (the queue drops duplicates)
        repo_id = self.store.upsert_repo(self.source.location, ref.kind, ref.name, priority=ref.priority)
        self.store.record_revision(repo_id, commit, files)
        self.result.revisions_new += 1
        return "new" if previous is None else "changed"

    def _changed(self, ref: RepoRef, previous: str | None, commit: str,
                 entries: list[FileEntry]) -> set[str] | None:
        """Paths that differ from the last recorded commit (None: treat all as changed)."""
        if previous is None:
            return None
        changed = self.source.changed_paths(ref, previous, commit)
        if changed is not None:
            return changed
        before = _revision_files(self.store, self.source.location, ref.kind, ref.name, previous)
        if before is None:
            return None
        return {e.path for e in entries if before.get(e.path) != e.content_key}

    def _job(self, ref: RepoRef, commit: str, entry: FileEntry, key: str, priority: int) -> ScanJob:
        return ScanJob(key=key, content_key=entry.content_key, fingerprint=self.print_,
                       source=self.source.location, repo_type=ref.kind, repo_id=ref.name,
                       revision=commit, path=entry.path, size=entry.size, sha256=entry.sha256,
                       priority=priority)

    def mark_missing(self, refs: list[RepoRef], kinds: tuple) -> None:
        """Repositories the store has for this source that its complete listing no longer names."""
        listed = {(ref.kind, ref.name) for ref in refs}
        for kind, name in _known_repos(self.store, self.source.location, kinds):
            if (kind, name) not in listed:
                self.store.mark_gone(self.source.location, kind, name)
                self.result.repos_gone += 1
                if self.on_repo is not None:
                    self.on_repo(RepoRef(kind, name), "gone")

    def requeue_stale(self) -> None:
        """Files of current revisions scanned under another fingerprint: scan them again."""
        try:
            stale = self.store.stale_files(self.print_, limit=STALE_BATCH)
        except Exception as exc:
            self.error(None, exc)
            return
        rekeyed: dict[tuple, list] = {}
        known = self.store.known_results(keys.result_key(item["content_key"], item["path"], self.print_)
                                         for item in stale)
        for item in stale:
            content = item["content_key"]
            key = keys.result_key(content, item["path"], self.print_)
            revision = (item["source"], item["kind"], item["name"], item["commit"])
            rekeyed.setdefault(revision, []).append((item["path"], content, key, item.get("size")))
            if key in known or key in self.submitted:
                continue
            self.submitted.add(key)
            sha256 = content.split(":", 1)[1] if content.startswith("sha256:") else None
            job = ScanJob(key=key, content_key=content, fingerprint=self.print_, source=item["source"],
                          repo_type=item["kind"], repo_id=item["name"], revision=item["commit"],
                          path=item["path"], size=item.get("size"), sha256=sha256, priority=PRIORITY_RESCAN)
            if self.queue.submit(job):
                self.result.files_rescan += 1
        # the revisions now wait for the new results (keeping their verdicts until they are in)
        for (source, kind, name, commit), files in rekeyed.items():
            try:
                repo_id = self.store.upsert_repo(source, kind, name)
                self.store.record_revision(repo_id, commit, files)
            except Exception as exc:
                self.error(RepoRef(kind, name), exc)

    def error(self, ref: RepoRef | None, exc: BaseException) -> None:
        self.result.errors += 1
        text = f"{ref}: {exc}" if ref is not None else str(exc)
        self.result.error_text.append(text)
        LOGGER.warning("%s", text)


def _repo_states(store, source: str) -> dict[tuple[str, str], tuple[str | None, bool]]:
    """(kind, name) -> (last commit, gone) of every repository the store has for this source,
    in one query (a pass over a large mirror would otherwise ask once per repository)."""
    from sqlalchemy import select

    from ..store.models import Repo

    with store.session() as session:
        rows = session.execute(select(Repo.kind, Repo.name, Repo.last_commit, Repo.gone).where(
            Repo.source == source))
        return {(kind, name): (commit, bool(gone)) for kind, name, commit, gone in rows}


def _store_unavailable(exc: BaseException) -> bool:
    from ..store.store import StoreUnavailable

    return isinstance(exc, StoreUnavailable)


def _known_repos(store, source: str, kinds: tuple) -> list[tuple[str, str]]:
    """(kind, name) of the repositories the store has for this source and not marked gone."""
    from sqlalchemy import select

    from ..store.models import Repo

    with store.session() as session:
        rows = session.execute(select(Repo.kind, Repo.name).where(
            Repo.source == source, Repo.kind.in_(kinds), Repo.gone.is_(False)))
        return [(kind, name) for kind, name in rows]


def _revision_files(store, source: str, kind: str, name: str, commit: str) -> dict[str, str] | None:
    """path -> content key of a recorded revision (None when it is not recorded)."""
    from sqlalchemy import select

    from ..store.models import Repo, Revision, RevisionFile

    with store.session() as session:
        revision_id = session.scalar(select(Revision.id).join(Repo).where(
            Repo.source == source, Repo.kind == kind, Repo.name == name, Revision.commit == commit))
        if revision_id is None:
            return None
        rows = session.execute(select(RevisionFile.path, RevisionFile.content_key).where(
            RevisionFile.revision_id == revision_id))
        return {path: content for path, content in rows}


def watch(source: Source, store, queue, *, interval: float, stop: threading.Event | None = None,
          kinds: Iterable[str] = DEFAULT_KINDS, backfill: bool | None = None,
          on_pass: Callable[[PassResult], None] | None = None, max_passes: int | None = None) -> int:
    """Passes every `interval` seconds until `stop` is set; the first pass backfills when asked
    (or when the store knows no repository of the source). Returns the number of passes."""
    stop = stop or threading.Event()
    passes = completed = 0
    while not stop.is_set():
        started = time.monotonic()
        try:
            result = check_once(source, store, queue, kinds=kinds,
                                backfill=backfill if completed == 0 else False, stop=stop)
            completed += 1
        except Exception:  # a store or queue that is down: try again at the next pass
            LOGGER.exception("monitor pass over %s failed", source.location)
            result = None
        passes += 1
        if on_pass is not None and result is not None:
            on_pass(result)
        if max_passes is not None and passes >= max_passes:
            break
        stop.wait(max(0.0, interval - (time.monotonic() - started)))
    return passes
