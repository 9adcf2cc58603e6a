"""Read-side queries over the results store, shared by the REST routes and the dashboard.

Every query is a SQLAlchemy expression with bound parameters (text filters use `icontains`
with autoescape, so `%` and `_` in a search are plain characters). Functions take an open
Session and return plain dicts shaped like the response models in `schemas`.

A content may have several results (one per fingerprint, after rules change); the findings list
and the file verdicts show the newest one.
"""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import and_, case, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from ..store.models import FileResult, FindingRow, Repo, Revision, RevisionFile, ScanRun, Triage
from .schemas import SeverityName, VerdictName

VERDICTS = [v.value for v in VerdictName]
SEVERITIES = [s.value for s in SeverityName]
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
TRIAGE_DECISIONS = ("accepted", "escalated")
LOCATIONS_PER_FINDING = 5
LOCATIONS_PER_FILE = 100
REVISIONS_PER_REPO = 50


def _aware(value):
    """SQLite gives naive datetimes back: they were stored in UTC."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def _page(session: Session, stmt, page: int, per_page: int):
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
    rows = session.execute(stmt.limit(per_page).offset((page - 1) * per_page)).all()
    return rows, total or 0


def _current_revision():
    """Join condition: a revision that is its repo's last commit."""
    return and_(Repo.id == Revision.repo_id, Repo.last_commit == Revision.commit)


def _newest_result():
    """Where-clause keeping only the newest result of each content."""
    newer = aliased(FileResult)
    return ~exists().where(newer.content_key == FileResult.content_key, newer.id > FileResult.id)


def triage_state_expr(content_key_column, rule_column=None):
    """The latest accept/escalate decision on a content (for a finding: on its file or its rule)."""
    where = [Triage.content_key == content_key_column, Triage.decision.in_(TRIAGE_DECISIONS)]
    if rule_column is not None:
        where.append(or_(Triage.rule.is_(None), Triage.rule == rule_column))
    latest = (select(Triage.decision).where(*where)
              .order_by(Triage.created_at.desc(), Triage.id.desc()).limit(1).correlate_except(Triage)
              .scalar_subquery())
    return func.coalesce(latest, "open")


# -- repos ---------------------------------------------------------------------------------

def repo_dict(repo: Repo) -> dict:
    return {"id": repo.id, "source": repo.source, "kind": repo.kind, "name": repo.name,
            "priority": repo.priority or 0, "last_commit": repo.last_commit, "verdict": repo.verdict,
            "gone": bool(repo.gone), "first_seen_at": _aware(repo.first_seen_at),
            "checked_at": _aware(repo.checked_at)}


def list_repos(session: Session, query) -> dict:
    stmt = select(Repo)
    if query.verdict is not None:
        stmt = stmt.where(Repo.verdict == query.verdict.value)
    if query.pending is True:
        stmt = stmt.where(Repo.verdict.is_(None))
    elif query.pending is False:
        stmt = stmt.where(Repo.verdict.is_not(None))
    if query.kind is not None:
        stmt = stmt.where(Repo.kind == query.kind.value)
    if query.q:
        stmt = stmt.where(Repo.name.icontains(query.q, autoescape=True))
    if query.gone is not None:
        stmt = stmt.where(Repo.gone.is_(query.gone))
    order = {"name": (Repo.name, Repo.id),
             "priority": (Repo.priority.desc(), Repo.name, Repo.id),
             "checked": (Repo.checked_at.desc(), Repo.id),
             "first_seen": (Repo.first_seen_at.desc(), Repo.id)}[query.sort.value]
    rows, total = _page(session, stmt.order_by(*order), query.page, query.per_page)
    return {"items": [repo_dict(row[0]) for row in rows], "total": total,
            "page": query.page, "per_page": query.per_page}


def _revision_rows(session: Session, where, limit: int | None = None, offset: int = 0):
    counts = (select(RevisionFile.revision_id, func.count().label("n"))
              .group_by(RevisionFile.revision_id).subquery())
    stmt = (select(Revision, func.coalesce(counts.c.n, 0))
            .outerjoin(counts, counts.c.revision_id == Revision.id)
            .where(where).order_by(Revision.seen_at.desc(), Revision.id.desc()))
    if limit is not None:
        stmt = stmt.limit(limit).offset(offset)
    return [revision_dict(rev, n) for rev, n in session.execute(stmt).all()]


def revision_dict(rev: Revision, files: int) -> dict:
    return {"id": rev.id, "repo_id": rev.repo_id, "commit": rev.commit, "seen_at": _aware(rev.seen_at),
            "verdict": rev.verdict, "completed_at": _aware(rev.completed_at), "files": files}


def list_revisions(session: Session, repo_id: int, page: int, per_page: int) -> dict | None:
    if session.get(Repo, repo_id) is None:
        return None
    total = session.scalar(select(func.count()).select_from(Revision).where(Revision.repo_id == repo_id))
    items = _revision_rows(session, Revision.repo_id == repo_id, per_page, (page - 1) * per_page)
    return {"items": items, "total": total or 0, "page": page, "per_page": per_page}


def repo_detail(session: Session, repo_id: int) -> dict | None:
    repo = session.get(Repo, repo_id)
    if repo is None:
        return None
    data = repo_dict(repo)
    data["revisions"] = _revision_rows(session, Revision.repo_id == repo_id, REVISIONS_PER_REPO)
    last = None
    if repo.last_commit is not None:
        rev = session.scalar(select(Revision).where(Revision.repo_id == repo_id,
                                                    Revision.commit == repo.last_commit))
        if rev is not None:
            last = revision_detail(session, rev.id)
    data["last_revision"] = last
    return data


def revision_detail(session: Session, revision_id: int) -> dict | None:
    rows = _revision_rows(session, Revision.id == revision_id)
    if not rows:
        return None
    data = rows[0]
    data["repo"] = repo_dict(session.get(Repo, data["repo_id"]))
    data["file_list"] = _revision_files(session, revision_id)
    return data


def _revision_files(session: Session, revision_id: int) -> list[dict]:
    stmt = (select(RevisionFile, FileResult, triage_state_expr(RevisionFile.content_key))
            .outerjoin(FileResult, FileResult.result_key == RevisionFile.result_key)
            .where(RevisionFile.revision_id == revision_id)
            .order_by(RevisionFile.path))
    rows = session.execute(stmt).all()
    findings = _findings_by_result(session, [result.id for _, result, _ in rows if result is not None])
    files = []
    for rf, result, state in rows:
        files.append({
            "path": rf.path, "content_key": rf.content_key, "result_key": rf.result_key, "size": rf.size,
            "verdict": result.verdict if result else None, "format": result.format if result else None,
            "scanned_at": _aware(result.scanned_at) if result else None,
            "fingerprint": result.fingerprint if result else None, "triage": state,
            "findings": findings.get(result.id, []) if result else [],
            "problems": _problems(result) if result else [],
        })
    files.sort(key=lambda f: (-_verdict_rank(f["verdict"]), f["path"]))
    return files


def _verdict_rank(verdict: str | None) -> int:
    return VERDICTS.index(verdict) if verdict in VERDICTS else 1  # pending sorts with inconclusive


def finding_dict(row: FindingRow) -> dict:
    return {"rule": row.rule, "severity": row.severity, "category": row.category, "message": row.message,
            "evidence": row.evidence or "", "member": row.member, "offset": row.offset}


def _findings_by_result(session: Session, result_ids: list[int]) -> dict[int, list[dict]]:
    found: dict[int, list[dict]] = {}
    if not result_ids:
        return found
    for row in session.scalars(select(FindingRow).where(FindingRow.result_id.in_(result_ids))
                               .order_by(FindingRow.id)):
        found.setdefault(row.result_id, []).append(finding_dict(row))
    for items in found.values():
        items.sort(key=lambda f: -SEVERITY_RANK.get(f["severity"], 0))
    return found


def _problems(result: FileResult) -> list[dict]:
    """Problems from the stored report (full locations), else from the reasons column."""
    try:
        report = json.loads(result.report or "{}")
        return [{"reason": str(p.get("reason", "")), "member": (p.get("location") or {}).get("member"),
                 "offset": (p.get("location") or {}).get("offset")} for p in report.get("problems", [])]
    except (ValueError, AttributeError, TypeError):
        pass
    try:
        return [{"reason": str(reason), "member": None, "offset": None}
                for reason in json.loads(result.problems or "[]")]
    except (ValueError, TypeError):
        return [{"reason": "unreadable problem list", "member": None, "offset": None}]


# -- files ---------------------------------------------------------------------------------

def _locations(session: Session, content_keys: list[str], per_key: int, current_only: bool):
    """(content key -> locations), newest revisions and popular repos first."""
    if not content_keys:
        return {}
    current = Repo.last_commit == Revision.commit
    rank = func.row_number().over(partition_by=RevisionFile.content_key,
                                  order_by=(current.desc(), Repo.priority.desc(), Repo.id,
                                            RevisionFile.path)).label("rank")
    inner = (select(RevisionFile.content_key, Repo.id.label("repo_id"), Repo.name, Repo.kind, Repo.source,
                    Revision.commit, RevisionFile.path, current.label("current"), rank)
             .join(Revision, RevisionFile.revision_id == Revision.id)
             .join(Repo, Repo.id == Revision.repo_id)
             .where(RevisionFile.content_key.in_(content_keys)))
    if current_only:
        inner = inner.where(current)
    inner = inner.subquery()
    stmt = select(inner).where(inner.c.rank <= per_key).order_by(inner.c.content_key, inner.c.rank)
    found: dict[str, list[dict]] = {}
    for row in session.execute(stmt).all():
        found.setdefault(row.content_key, []).append(
            {"repo_id": row.repo_id, "repo": row.name, "kind": row.kind, "source": row.source,
             "commit": row.commit, "path": row.path, "current": bool(row.current)})
    return found


def _repo_counts(session: Session, content_keys: list[str]) -> dict[str, int]:
    if not content_keys:
        return {}
    stmt = (select(RevisionFile.content_key, func.count(func.distinct(Repo.id)))
            .join(Revision, RevisionFile.revision_id == Revision.id)
            .join(Repo, _current_revision())
            .where(RevisionFile.content_key.in_(content_keys))
            .group_by(RevisionFile.content_key))
    return dict(session.execute(stmt).all())


def result_dict(session: Session, result: FileResult, findings: list[dict] | None = None) -> dict:
    if findings is None:
        findings = _findings_by_result(session, [result.id]).get(result.id, [])
    return {"result_key": result.result_key, "fingerprint": result.fingerprint, "format": result.format,
            "verdict": result.verdict, "size": result.size, "seconds": result.seconds or 0.0,
            "scanned_at": _aware(result.scanned_at), "findings": findings, "problems": _problems(result)}


def file_detail(session: Session, content_key: str) -> dict | None:
    results = list(session.scalars(select(FileResult).where(FileResult.content_key == content_key)
                                   .order_by(FileResult.id.desc())))
    locations_total = session.scalar(select(func.count()).select_from(RevisionFile)
                                     .where(RevisionFile.content_key == content_key)) or 0
    if not results and not locations_total:
        return None
    findings = _findings_by_result(session, [r.id for r in results])
    return {
        "content_key": content_key,
        "verdict": results[0].verdict if results else None,
        "triage_state": session.scalar(select(triage_state_expr(content_key))),
        "results": [result_dict(session, r, findings.get(r.id, [])) for r in results],
        "locations": _locations(session, [content_key], LOCATIONS_PER_FILE, False).get(content_key, []),
        "locations_total": locations_total,
        "triage": triage_history(session, content_key),
    }


def triage_history(session: Session, content_key: str) -> list[dict]:
    rows = session.scalars(select(Triage).where(Triage.content_key == content_key)
                           .order_by(Triage.created_at.desc(), Triage.id.desc()))
    return [triage_dict(row) for row in rows]


def triage_dict(row: Triage) -> dict:
    return {"id": row.id, "content_key": row.content_key, "rule": row.rule, "decision": row.decision,
            "reason": row.reason or "", "actor": row.actor or "", "created_at": _aware(row.created_at)}


def rescan_target(session: Session, content_key: str):
    """The (RevisionFile, Revision, Repo) a re-scan fetches the content from: a current
    revision of an existing repo when there is one, the most popular repo first."""
    stmt = (select(RevisionFile, Revision, Repo)
            .join(Revision, RevisionFile.revision_id == Revision.id)
            .join(Repo, Repo.id == Revision.repo_id)
            .where(RevisionFile.content_key == content_key)
            .order_by(Repo.gone, (Repo.last_commit == Revision.commit).desc(), Repo.priority.desc(),
                      Revision.seen_at.desc(), RevisionFile.id)
            .limit(1))
    return session.execute(stmt).first()


# -- findings ------------------------------------------------------------------------------

def list_findings(session: Session, query) -> dict:
    state = triage_state_expr(FindingRow.content_key, FindingRow.rule).label("triage")
    severity_rank = case({name: rank for name, rank in SEVERITY_RANK.items()}, value=FindingRow.severity,
                         else_=0)
    stmt = (select(FindingRow, FileResult.verdict, FileResult.result_key, FileResult.scanned_at, state)
            .join(FileResult, FindingRow.result_id == FileResult.id)
            .where(_newest_result()))
    if query.verdict is not None:
        stmt = stmt.where(FileResult.verdict == query.verdict.value)
    if query.severity is not None:
        stmt = stmt.where(FindingRow.severity == query.severity.value)
    if query.min_severity is not None:
        stmt = stmt.where(FindingRow.severity.in_(SEVERITIES[SEVERITY_RANK[query.min_severity.value]:]))
    if query.category:
        stmt = stmt.where(FindingRow.category == query.category)
    if query.rule:
        stmt = stmt.where(FindingRow.rule == query.rule)
    if query.repo:
        stmt = stmt.where(exists().where(
            RevisionFile.content_key == FindingRow.content_key, RevisionFile.revision_id == Revision.id,
            _current_revision(), Repo.name == query.repo))
    if query.triage is not None:
        stmt = stmt.where(state == query.triage.value)
    if query.q:
        stmt = stmt.where(or_(
            FindingRow.rule.icontains(query.q, autoescape=True),
            FindingRow.message.icontains(query.q, autoescape=True),
            FindingRow.evidence.icontains(query.q, autoescape=True),
            exists().where(RevisionFile.content_key == FindingRow.content_key,
                           RevisionFile.path.icontains(query.q, autoescape=True))))
    stmt = stmt.order_by(severity_rank.desc(), FileResult.scanned_at.desc(), FindingRow.id.desc())
    rows, total = _page(session, stmt, query.page, query.per_page)
    keys = sorted({row[0].content_key for row in rows})
    locations = _locations(session, keys, LOCATIONS_PER_FINDING, True)
    counts = _repo_counts(session, keys)
    items = []
    for finding, verdict, result_key, scanned_at, triage in rows:
        item = finding_dict(finding)
        item.update({"id": finding.id, "content_key": finding.content_key, "result_key": result_key,
                     "verdict": verdict, "scanned_at": _aware(scanned_at), "triage": triage,
                     "locations": locations.get(finding.content_key, []),
                     "repos": counts.get(finding.content_key, 0)})
        items.append(item)
    return {"items": items, "total": total, "page": query.page, "per_page": query.per_page}


def finding_facets(session: Session) -> dict[str, list[str]]:
    """The categories and rules present, for the dashboard's filter menus."""
    categories = session.scalars(select(FindingRow.category).distinct().order_by(FindingRow.category).limit(200))
    rules = session.scalars(select(FindingRow.rule).distinct().order_by(FindingRow.rule).limit(500))
    return {"categories": list(categories), "rules": list(rules)}


# -- search --------------------------------------------------------------------------------

def search(session: Session, text: str, limit: int) -> dict:
    repos = session.scalars(select(Repo).where(Repo.name.icontains(text, autoescape=True))
                            .order_by(Repo.priority.desc(), Repo.name).limit(limit))
    stmt = (select(Repo.id, Repo.name, Repo.kind, RevisionFile.path, RevisionFile.content_key,
                   FileResult.verdict)
            .join(Revision, RevisionFile.revision_id == Revision.id)
            .join(Repo, _current_revision())
            .outerjoin(FileResult, FileResult.result_key == RevisionFile.result_key)
            .where(RevisionFile.path.icontains(text, autoescape=True))
            .order_by(Repo.priority.desc(), Repo.name, RevisionFile.path).limit(limit))
    files = [{"repo_id": rid, "repo": name, "kind": kind, "path": path, "content_key": key, "verdict": verdict}
             for rid, name, kind, path, key, verdict in session.execute(stmt).all()]
    return {"repos": [repo_dict(r) for r in repos], "files": files}


# -- overview ------------------------------------------------------------------------------

def stats(session: Session, days: int, now: datetime | None = None) -> dict:
    repos_by_verdict = {v: 0 for v in VERDICTS}
    repos_by_verdict["pending"] = 0
    gone = 0
    for verdict, is_gone, count in session.execute(
            select(Repo.verdict, Repo.gone, func.count()).group_by(Repo.verdict, Repo.gone)).all():
        if is_gone:
            gone += count
            continue
        repos_by_verdict[verdict if verdict in VERDICTS else "pending"] += count
    files_by_verdict = {v: 0 for v in VERDICTS}
    for verdict, count in session.execute(select(FileResult.verdict, func.count())
                                          .group_by(FileResult.verdict)).all():
        files_by_verdict[verdict] = files_by_verdict.get(verdict, 0) + count
    pending_files = session.scalar(
        select(func.count()).select_from(RevisionFile)
        .join(Revision, RevisionFile.revision_id == Revision.id)
        .join(Repo, _current_revision())
        .where(Repo.gone.is_(False),
               ~exists().where(FileResult.result_key == RevisionFile.result_key))) or 0
    categories = session.execute(
        select(FindingRow.category, func.count(func.distinct(FindingRow.content_key)).label("files"))
        .join(FileResult, FindingRow.result_id == FileResult.id)
        .where(FileResult.verdict == "malicious", FindingRow.severity.in_(("high", "critical")), _newest_result())
        .group_by(FindingRow.category).order_by(func.count(func.distinct(FindingRow.content_key)).desc(),
                                                FindingRow.category)).all()
    live = sum(repos_by_verdict.values())
    return {
        "repos_total": live + gone,
        "repos_scanned": live - repos_by_verdict["pending"],
        "repos_pending": repos_by_verdict["pending"],
        "repos_gone": gone,
        "repos_by_verdict": repos_by_verdict,
        "files_scanned": sum(files_by_verdict.values()),
        "files_pending": pending_files,
        "files_by_verdict": files_by_verdict,
        "malicious_by_category": [{"category": c, "files": n} for c, n in categories],
        "over_time": verdicts_over_time(session, days, now),
    }


def verdicts_over_time(session: Session, days: int, now: datetime | None = None) -> list[dict]:
    """Files scanned per day and verdict, oldest day first, every day present (zeros included)."""
    today = (now or datetime.now(timezone.utc)).date()
    first = today - timedelta(days=days - 1)
    since = datetime(first.year, first.month, first.day, tzinfo=timezone.utc)
    day = func.date(FileResult.scanned_at)
    rows = session.execute(select(day, FileResult.verdict, func.count())
                           .where(FileResult.scanned_at >= since)
                           .group_by(day, FileResult.verdict)).all()
    series = {(first + timedelta(days=i)).isoformat(): {v: 0 for v in VERDICTS} for i in range(days)}
    for when, verdict, count in rows:
        key = when.isoformat() if isinstance(when, date) else str(when)[:10]
        if key in series and verdict in VERDICTS:
            series[key][verdict] += count
    return [{"day": key, **counts} for key, counts in series.items()]


# -- metrics -------------------------------------------------------------------------------

def metric_counts(session: Session, buckets: tuple[float, ...], window_seconds: float,
                  now: datetime | None = None) -> dict:
    """What /metrics reports from the store: verdict counts, the latency histogram's cumulative
    buckets and sum, files scanned in the recent window, scan-run errors."""
    files_by_verdict = dict(session.execute(select(FileResult.verdict, func.count())
                                            .group_by(FileResult.verdict)).all())
    repos_by_verdict = {}
    for verdict, count in session.execute(select(Repo.verdict, func.count()).where(Repo.gone.is_(False))
                                          .group_by(Repo.verdict)).all():
        repos_by_verdict[verdict or "pending"] = count
    columns = [func.sum(case((FileResult.seconds <= bound, 1), else_=0)) for bound in buckets]
    row = session.execute(select(func.count(), func.coalesce(func.sum(FileResult.seconds), 0.0), *columns)).one()
    since = (now or datetime.now(timezone.utc)) - timedelta(seconds=window_seconds)
    recent = session.scalar(select(func.count()).select_from(FileResult)
                            .where(FileResult.scanned_at >= since)) or 0
    errors = session.scalar(select(func.coalesce(func.sum(ScanRun.errors), 0))) or 0
    return {"files_by_verdict": files_by_verdict, "repos_by_verdict": repos_by_verdict,
            "count": row[0] or 0, "seconds_sum": float(row[1] or 0.0),
            "buckets": [int(value or 0) for value in row[2:]], "recent": recent, "run_errors": int(errors)}
