"""The results store: what the monitor saw, what the workers found, what analysts decided.

Every write is one transaction, idempotent where a task can be delivered twice:
- a result is stored once per result key (`save_result` returns False for a redelivered task,
  also when two workers race: the database's unique key decides, nobody raises);
- a revision is recorded once per (repo, commit); recording it again only adds or re-keys files;
- an alert is recorded once per de-duplication key.

Verdict roll-up. A revision is pending (`completed_at` None) until every one of its files has a
stored result; then its verdict is the worst of them, and its repo's verdict follows when the
revision is the repo's last commit. Saving a result completes, in a few set-based statements,
every pending revision that was waiting for it (one file may be shared by thousands). On
PostgreSQL the pending revisions are locked before they are checked, so two workers storing the
last two files of one revision cannot both miss each other. `complete_pending()` sweeps up any
revision left pending by a result stored while its revision was being recorded.

Errors: a database that cannot be reached (server down or restarting, SQLite locked for too long)
raises `StoreUnavailable` naming the store; the engine re-validates pooled connections, so the same
Store works again once the server is back. Deadlocks and serialisation failures are retried.
"""
from __future__ import annotations

import json
import time
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, TypeVar

from sqlalchemy import case, delete, false, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from ...findings import FileResult as ScanResult
from . import migrations
from .db import WRITE_OPTION, make_engine, safe_url
from .models import Alert, FileResult, FindingRow, Repo, Revision, RevisionFile, ScanRun, Triage, utcnow

T = TypeVar("T")

VERDICT_ORDER = ("clean", "inconclusive", "suspicious", "malicious")
TRIAGE_DECISIONS = ("accepted", "escalated", "rescan")
RUN_COUNTS = ("repos_checked", "revisions_new", "files_queued", "files_known", "errors", "error_text")
ALERT_FIELDS = ("content_key", "verdict", "severity", "repo", "path", "channel", "status")

_CHUNK = 500  # ids per IN (...) list: well under every database's bound-parameter limit
_ATTEMPTS = 4  # for deadlocks and serialisation failures
_RETRY_SQLSTATES = ("40001", "40P01")
_UNREACHABLE_SQLSTATE_PREFIXES = ("08", "57P")  # connection exceptions, server shutting down or starting
_UNREACHABLE_SQLITE = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_CANTOPEN", "SQLITE_IOERR")


class StoreError(RuntimeError):
    """The results store could not do what was asked."""


class StoreUnavailable(StoreError):
    """The results store's database cannot be reached now (down, restarting, locked too long)."""


class Store:
    """The results store on SQLite (`sqlite:///path`) or PostgreSQL (`postgresql+psycopg://...`)."""

    def __init__(self, url: str, *, create: bool = True):
        self.url = safe_url(url)
        self._dialect = make_url(url).get_backend_name()
        if self._dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"the results store runs on SQLite or PostgreSQL, not {self._dialect}")
        try:
            self._engine = make_engine(url)
        except OSError as exc:
            raise StoreUnavailable(f"results store {self.url} is unavailable: {exc}") from exc
        self._write_engine = self._engine.execution_options(**{WRITE_OPTION: True})
        if create:
            try:
                migrations.upgrade(self._engine)
            except DBAPIError as exc:
                self._engine.dispose()
                raise self._translate(exc) from exc

    @property
    def engine(self):
        return self._engine

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.dispose()

    def dispose(self) -> None:
        self._engine.dispose()

    # -- sessions ------------------------------------------------------------------------------
    @contextmanager
    def session(self, write: bool = False) -> Iterator[Session]:
        """A Session in one transaction, committed when the block ends without an exception.
        write=True takes the write lock at once on SQLite (for a block that reads, then writes)."""
        session = Session(self._write_engine if write else self._engine, expire_on_commit=False)
        try:
            try:
                yield session
                session.commit()
            except DBAPIError as exc:
                session.rollback()
                raise self._translate(exc) from exc
            except BaseException:
                session.rollback()
                raise
        finally:
            session.close()

    def _run(self, work: Callable[[Session], T], write: bool = True) -> T:
        """work(session) in its own transaction, again after a deadlock or a dropped connection."""
        for attempt in range(_ATTEMPTS):
            session = Session(self._write_engine if write else self._engine, expire_on_commit=False)
            try:
                value = work(session)
                session.commit()
                return value
            except DBAPIError as exc:
                session.rollback()
                if isinstance(exc, IntegrityError):
                    raise
                if attempt + 1 < _ATTEMPTS and _retryable(exc):
                    time.sleep(0.05 * (2 ** attempt))
                    continue
                raise self._translate(exc) from exc
            except BaseException:
                session.rollback()
                raise
            finally:
                session.close()
        raise AssertionError("unreachable")

    def _translate(self, exc: DBAPIError) -> StoreError:
        if _unreachable(exc):
            return StoreUnavailable(f"results store {self.url} is unavailable: {_first_line(exc.orig)}")
        return StoreError(f"results store {self.url} failed: {_first_line(exc.orig)}")

    def _insert(self, model):
        module = postgresql if self._dialect == "postgresql" else sqlite
        return module.insert(model.__table__)

    # -- repos and revisions ------------------------------------------------------------------
    def upsert_repo(self, source: str, kind: str, name: str, priority: int | None = None) -> int:
        """The repo's id, created on first sight; clears `gone`, updates the priority when given."""
        identity = _identity(source=(source, 1024), kind=(kind, 16), name=(name, 512))

        def work(session: Session) -> int:
            now = utcnow()
            changes = {"gone": False, "checked_at": now}
            if priority is not None:
                changes["priority"] = int(priority)
            statement = (self._insert(Repo)
                         .values(**identity, priority=int(priority or 0), gone=False, first_seen_at=now,
                                 checked_at=now)
                         .on_conflict_do_update(index_elements=["source", "kind", "name"], set_=changes)
                         .returning(Repo.id))
            return session.execute(statement).scalar_one()

        return self._run(work)

    def repo_commit(self, source: str, kind: str, name: str) -> str | None:
        """The last commit recorded for the repo (None for a repo never recorded)."""
        statement = select(Repo.last_commit).where(Repo.source == source, Repo.kind == kind, Repo.name == name)
        return self._run(lambda session: session.execute(statement).scalar_one_or_none(), write=False)

    def mark_gone(self, source: str, kind: str, name: str) -> None:
        """The repo disappeared from its source: keep its history, flag it."""
        statement = (update(Repo).where(Repo.source == source, Repo.kind == kind, Repo.name == name)
                     .values(gone=True, checked_at=utcnow()))
        self._run(lambda session: session.execute(statement))

    def record_revision(self, repo_id: int, commit: str,
                        files: Iterable[tuple[str, str, str, int | None]]) -> int:
        """Record a revision's files (path, content_key, result_key, size) and make it the repo's
        last commit. Idempotent per (repo, commit): files already recorded keep their rows; a file
        given with another content or result key is re-keyed and the revision is pending again
        (keeping its previous verdict until the new results are in). The verdict is computed at
        once when every file already has a result."""
        _identity(commit=(commit, 64))
        wanted: dict[str, dict] = {}
        for path, content_key, result_key, size in files:
            wanted[path] = {"path": path, "content_key": content_key, "result_key": result_key,
                            "size": None if size is None else int(size)}
            _identity(path=(path, 2048), content_key=(content_key, 80), result_key=(result_key, 200))

        def work(session: Session) -> int:
            now = utcnow()
            session.execute(self._insert(Revision).values(repo_id=repo_id, commit=commit, seen_at=now)
                            .on_conflict_do_nothing(index_elements=["repo_id", "commit"]))
            revision_id = session.execute(select(Revision.id).where(Revision.repo_id == repo_id,
                                                                    Revision.commit == commit)).scalar_one()
            known = {row.path: row for row in session.execute(
                select(RevisionFile.id, RevisionFile.path, RevisionFile.content_key, RevisionFile.result_key,
                       RevisionFile.size).where(RevisionFile.revision_id == revision_id))}
            new_rows, changed_rows = [], []
            for path, values in wanted.items():
                row = known.get(path)
                if row is None:
                    new_rows.append({"revision_id": revision_id, **values})
                elif (row.content_key, row.result_key, row.size) != (values["content_key"], values["result_key"],
                                                                     values["size"]):
                    changed_rows.append({"id": row.id, **values})
            if new_rows:
                session.execute(insert(RevisionFile.__table__), new_rows)
            if changed_rows:
                session.execute(update(RevisionFile), changed_rows)  # by primary key, in one batch
            if new_rows or changed_rows:
                session.execute(update(Revision).where(Revision.id == revision_id).values(completed_at=None))
            session.execute(update(Repo).where(Repo.id == repo_id).values(last_commit=commit, checked_at=now))
            self._complete(session, select(Revision.id).where(Revision.id == revision_id))
            verdict = session.execute(select(Revision.verdict).where(Revision.id == revision_id)).scalar_one()
            session.execute(update(Repo).where(Repo.id == repo_id).values(verdict=verdict))
            return revision_id

        return self._run(work)

    # -- results ----------------------------------------------------------------------------------
    def known_results(self, result_keys: Iterable[str]) -> set[str]:
        """Which of these result keys are stored (their files need no scan)."""
        keys = list(dict.fromkeys(result_keys))

        def work(session: Session) -> set[str]:
            found: set[str] = set()
            for chunk in _chunks(keys):
                found.update(session.scalars(select(FileResult.result_key).where(FileResult.result_key.in_(chunk))))
            return found

        return self._run(work, write=False) if keys else set()

    def save_result(self, result_key: str, content_key: str, fingerprint: str, result: ScanResult) -> bool:
        """Store a scan's result once per result key, with its findings, then complete every
        revision that was waiting for it. False (nothing changed) when the key was already stored."""
        _identity(result_key=(result_key, 200), content_key=(content_key, 80), fingerprint=(fingerprint, 64))
        report = json.dumps(result.to_dict(), sort_keys=True)

        def work(session: Session) -> bool:
            statement = (self._insert(FileResult)
                         .values(result_key=result_key, content_key=content_key, fingerprint=fingerprint,
                                 format=_text(result.format, 64), verdict=str(result.verdict),
                                 size=result.size, seconds=float(result.seconds or 0.0), scanned_at=utcnow(),
                                 problems=json.dumps([problem.reason for problem in result.problems]),
                                 report=report)
                         .on_conflict_do_nothing(index_elements=["result_key"])
                         .returning(FileResult.id))
            result_id = session.execute(statement).scalar_one_or_none()
            if result_id is None:
                return False
            rows = [{"result_id": result_id, "content_key": content_key, "rule": _text(finding.rule, 128),
                     "severity": str(finding.severity), "category": _text(finding.category, 64),
                     "message": _text(finding.message), "evidence": _text(finding.evidence),
                     "member": _text(finding.location.member, 2048), "offset": finding.location.offset}
                    for finding in result.findings]
            if rows:
                session.execute(insert(FindingRow.__table__), rows)
            self._complete(session, select(RevisionFile.revision_id).where(RevisionFile.result_key == result_key))
            return True

        try:
            return self._run(work)
        except IntegrityError as exc:
            # a database without ON CONFLICT semantics for this race: the other writer won
            if result_key in self.known_results([result_key]):
                return False
            raise self._translate(exc) from exc

    def result(self, result_key: str) -> ScanResult | None:
        """The malhug FileResult stored under this key."""
        statement = select(FileResult.report).where(FileResult.result_key == result_key)
        report = self._run(lambda session: session.execute(statement).scalar_one_or_none(), write=False)
        return None if report is None else ScanResult.from_dict(json.loads(report))

    def forget_result(self, result_key: str) -> bool:
        """Drop the result stored under `result_key` (its findings go with it) and make the
        revisions using it pending again, keeping their verdicts until a new result is in: a
        worker skips a job whose result is stored, so a re-scan under the same fingerprint needs
        the old one gone. True when there was one."""

        def forget(session: Session) -> bool:
            ids = select(FileResult.id).where(FileResult.result_key == result_key)
            session.execute(delete(FindingRow).where(FindingRow.result_id.in_(ids)))
            gone = session.execute(delete(FileResult).where(FileResult.result_key == result_key)).rowcount
            if gone:
                waiting = select(RevisionFile.revision_id).where(RevisionFile.result_key == result_key)
                session.execute(update(Revision).where(Revision.id.in_(waiting)).values(completed_at=None))
            return bool(gone)

        return self._run(forget)

    def complete_pending(self) -> int:
        """Complete every pending revision whose files all have results; how many were."""
        return self._run(lambda session: len(self._complete(
            session, select(Revision.id).where(Revision.completed_at.is_(None)))))

    def _complete(self, session: Session, candidates) -> dict[int, str]:
        """Give each pending revision among `candidates` (a select of revision ids) whose files all
        have results its worst verdict, and its repo too when it is the repo's last commit."""
        pending = (select(Revision.id).where(Revision.id.in_(candidates), Revision.completed_at.is_(None))
                   .order_by(Revision.id))
        if self._dialect == "postgresql":
            pending = pending.with_for_update()
        ids = list(session.scalars(pending))
        if not ids:
            return {}
        # an unknown verdict string counts as inconclusive; no file at all (an empty revision) as clean
        rank = case((FileResult.verdict.is_(None), 0),
                    else_=case({verdict: number for number, verdict in enumerate(VERDICT_ORDER)},
                               value=FileResult.verdict, else_=VERDICT_ORDER.index("inconclusive")))
        missing = (select(RevisionFile.id)
                   .outerjoin(FileResult, FileResult.result_key == RevisionFile.result_key)
                   .where(RevisionFile.revision_id == Revision.id, FileResult.id.is_(None))
                   .correlate(Revision).exists())
        verdicts: dict[int, str] = {}
        for chunk in _chunks(ids):
            worst = (select(Revision.id, func.max(rank))
                     .outerjoin(RevisionFile, RevisionFile.revision_id == Revision.id)
                     .outerjoin(FileResult, FileResult.result_key == RevisionFile.result_key)
                     .where(Revision.id.in_(chunk), ~missing)
                     .group_by(Revision.id))
            for revision_id, worst_rank in session.execute(worst):
                verdicts[revision_id] = VERDICT_ORDER[int(worst_rank)]
        now = utcnow()
        by_verdict: dict[str, list[int]] = {}
        for revision_id, verdict in verdicts.items():
            by_verdict.setdefault(verdict, []).append(revision_id)
        for verdict, revision_ids in by_verdict.items():
            for chunk in _chunks(revision_ids):
                session.execute(update(Revision).where(Revision.id.in_(chunk))
                                .values(verdict=verdict, completed_at=now))
                last_of_repo = (select(Revision.id)
                                .where(Revision.repo_id == Repo.id, Revision.commit == Repo.last_commit,
                                       Revision.id.in_(chunk))
                                .correlate(Repo).exists())
                session.execute(update(Repo).where(last_of_repo).values(verdict=verdict))
        return verdicts

    def stale_files(self, fingerprint: str, limit: int = 1000) -> list[dict]:
        """Files of each present repo's last revision recorded under another fingerprint (to be
        re-scanned after malhug's rules or version changed), the most popular repos first."""
        statement = (select(Repo.source, Repo.kind, Repo.name, Revision.commit, RevisionFile.path,
                            RevisionFile.content_key, RevisionFile.size, RevisionFile.result_key)
                     .join(Revision, (Revision.repo_id == Repo.id) & (Revision.commit == Repo.last_commit))
                     .join(RevisionFile, RevisionFile.revision_id == Revision.id)
                     .where(Repo.gone == false(),
                            ~RevisionFile.result_key.endswith("|" + fingerprint, autoescape=True))
                     .order_by(Repo.priority.desc(), Repo.id, RevisionFile.path)
                     .limit(int(limit)))
        return self._run(lambda session: [dict(row._mapping) for row in session.execute(statement)], write=False)

    # -- monitor runs, alerts, triage -------------------------------------------------------------
    def start_run(self, mode: str, source: str) -> int:
        statement = (insert(ScanRun.__table__).values(mode=_text(mode, 16), source=_text(source, 1024),
                                                      started_at=utcnow())
                     .returning(ScanRun.__table__.c.id))
        return self._run(lambda session: session.execute(statement).scalar_one())

    def finish_run(self, run_id: int, **counts) -> None:
        """Close a run with its counts: repos_checked, revisions_new, files_queued, files_known,
        errors, error_text."""
        unknown = set(counts) - set(RUN_COUNTS)
        if unknown:
            raise TypeError(f"unknown scan run fields: {', '.join(sorted(unknown))}")
        values = {name: (_text(value) if name == "error_text" else int(value)) for name, value in counts.items()}
        statement = update(ScanRun).where(ScanRun.id == run_id).values(finished_at=utcnow(), **values)
        self._run(lambda session: session.execute(statement))

    def record_alert(self, dedup_key: str, **fields) -> bool:
        """Record an alert once: False when one with this de-duplication key exists (do not send).
        fields: content_key, verdict, severity, repo, path, channel ("log" when not given), status."""
        unknown = set(fields) - set(ALERT_FIELDS)
        if unknown:
            raise TypeError(f"unknown alert fields: {', '.join(sorted(unknown))}")
        _identity(dedup_key=(dedup_key, 300))
        limits = {"content_key": 80, "verdict": 16, "severity": 16, "repo": 600, "path": 2048, "channel": 32,
                  "status": 16}
        values = {"content_key": "", "verdict": "", "channel": "log", "status": "sent", "repo": "", "path": ""}
        values.update({name: _text(value, limits[name]) for name, value in fields.items()})
        statement = (self._insert(Alert).values(dedup_key=dedup_key, created_at=utcnow(), **values)
                     .on_conflict_do_nothing(index_elements=["dedup_key"]).returning(Alert.id))
        return self._run(lambda session: session.execute(statement).scalar_one_or_none() is not None)

    def set_alert_status(self, dedup_key: str, status: str) -> None:
        """After sending: "sent" or "failed"."""
        statement = update(Alert).where(Alert.dedup_key == dedup_key).values(status=_text(status, 16))
        self._run(lambda session: session.execute(statement))

    def add_triage(self, content_key: str, rule: str | None, decision: str, reason: str, actor: str) -> int:
        """Record an analyst's decision on a content's findings (rule None: the whole file)."""
        if decision not in TRIAGE_DECISIONS:
            raise ValueError(f"triage decision must be one of {', '.join(TRIAGE_DECISIONS)}, not {decision!r}")
        _identity(content_key=(content_key, 80))
        statement = (insert(Triage.__table__)
                     .values(content_key=content_key, rule=_text(rule, 128), decision=decision,
                             reason=_text(reason or ""), actor=_text(actor or "", 128), created_at=utcnow())
                     .returning(Triage.__table__.c.id))
        return self._run(lambda session: session.execute(statement).scalar_one())


# -- helpers ---------------------------------------------------------------------------------------
def _chunks(items: list, size: int = _CHUNK) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _identity(**fields: tuple[str, int]) -> dict[str, str]:
    """Fields that identify something must fit their column whole: never cut, refuse instead."""
    for name, (value, limit) in fields.items():
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string")
        if len(value) > limit:
            raise ValueError(f"{name} is longer than {limit} characters")
        if "\x00" in value:
            raise ValueError(f"{name} contains a NUL character")
    return {name: value for name, (value, _limit) in fields.items()}


def _text(value: str | None, limit: int | None = None) -> str | None:
    """Descriptive text as every database takes it: NUL characters and lone surrogates (from
    attacker-controlled names and evidence) escaped, cut to the column's length."""
    if value is None:
        return None
    text = str(value).replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if limit is None else text[:limit]


def _first_line(error: BaseException | None) -> str:
    text = str(error or "").strip()
    return text.splitlines()[0] if text else type(error).__name__


def _sqlstate(exc: DBAPIError) -> str | None:
    return getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)


def _retryable(exc: DBAPIError) -> bool:
    return exc.connection_invalidated or _sqlstate(exc) in _RETRY_SQLSTATES


def _unreachable(exc: DBAPIError) -> bool:
    if exc.connection_invalidated:
        return True
    state = _sqlstate(exc)
    if state:
        return state.startswith(_UNREACHABLE_SQLSTATE_PREFIXES)
    name = getattr(exc.orig, "sqlite_errorname", None)
    if name is not None:
        return name in _UNREACHABLE_SQLITE
    # a driver error without a SQLSTATE on a server database: the connection itself failed
    return type(exc.orig).__name__ in ("OperationalError", "InterfaceError")
