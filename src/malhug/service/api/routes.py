"""The REST API under /api/v1: reads are open, writes (triage) need the API token."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status

from . import actions, queries
from .auth import require_writer
from .schemas import (CONTENT_KEY_PATTERN, AcceptRequest, ErrorOut, EscalateRequest, FileDetail, FindingListItem,
                      FindingsQuery, Page, PageQuery, RepoDetail, RepoOut, ReposQuery, RescanOut, RescanRequest,
                      RevisionDetail, RevisionOut, SearchOut, SearchQuery, StatsOut, StatsQuery, TriageOut)

ContentKey = Annotated[str, Path(pattern=CONTENT_KEY_PATTERN, max_length=80,
                                 description="sha256:<hex> or git:<blob id>", examples=["sha256:" + "0" * 64])]
RepoId = Annotated[int, Path(ge=1, le=2**62)]
NOT_FOUND = {404: {"model": ErrorOut, "description": "no such thing"}}
WRITE_ERRORS = {401: {"model": ErrorOut, "description": "missing or wrong token"},
                403: {"model": ErrorOut, "description": "writes are disabled (no token configured)"},
                **NOT_FOUND}

router = APIRouter(prefix="/api/v1")


def _store(request: Request):
    return request.app.state.store


def _found(value, what: str):
    if value is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no such {what}")
    return value


@router.get("/repos", response_model=Page[RepoOut], tags=["repos"], summary="Repositories, filtered and paged")
def list_repos(request: Request, query: Annotated[ReposQuery, Query()]):
    with _store(request).session() as session:
        return queries.list_repos(session, query)


@router.get("/repos/{repo_id}", response_model=RepoDetail, responses=NOT_FOUND, tags=["repos"],
            summary="A repository, its revisions and the files of its last revision with their verdicts")
def get_repo(request: Request, repo_id: RepoId):
    with _store(request).session() as session:
        return _found(queries.repo_detail(session, repo_id), "repo")


@router.get("/repos/{repo_id}/revisions", response_model=Page[RevisionOut], responses=NOT_FOUND,
            tags=["revisions"], summary="A repository's revisions, newest first")
def list_revisions(request: Request, repo_id: RepoId, query: Annotated[PageQuery, Query()]):
    with _store(request).session() as session:
        return _found(queries.list_revisions(session, repo_id, query.page, query.per_page), "repo")


@router.get("/revisions/{revision_id}", response_model=RevisionDetail, responses=NOT_FOUND, tags=["revisions"],
            summary="A revision with its files, verdicts, findings and evidence")
def get_revision(request: Request, revision_id: RepoId):
    with _store(request).session() as session:
        return _found(queries.revision_detail(session, revision_id), "revision")


@router.get("/files/{content_key}", response_model=FileDetail, responses=NOT_FOUND, tags=["files"],
            summary="A file by content key: its results, where it is, its triage history")
def get_file(request: Request, content_key: ContentKey):
    with _store(request).session() as session:
        return _found(queries.file_detail(session, content_key), "file")


@router.get("/findings", response_model=Page[FindingListItem], tags=["findings"],
            summary="Findings of the newest result of each file, filtered and paged")
def list_findings(request: Request, query: Annotated[FindingsQuery, Query()]):
    with _store(request).session() as session:
        return queries.list_findings(session, query)


@router.get("/search", response_model=SearchOut, tags=["search"],
            summary="Repositories whose name, and files whose path, contain the text")
def search(request: Request, query: Annotated[SearchQuery, Query()]):
    with _store(request).session() as session:
        return queries.search(session, query.q, query.limit)


@router.get("/stats", response_model=StatsOut, tags=["stats"],
            summary="Overview: scanned, pending, malicious by category, verdicts per day, queue depth")
def get_stats(request: Request, query: Annotated[StatsQuery, Query()]):
    return overview(request.app, query.days)


def overview(app, days: int) -> dict:
    from ..keys import fingerprint

    with app.state.store.session() as session:
        data = queries.stats(session, days)
    data["queue"] = queue_depth(app)
    data["fingerprint"] = fingerprint()
    return data


def queue_depth(app) -> dict | None:
    if app.state.queue is None:
        return None
    try:
        return dict(app.state.queue.depth())
    except Exception:  # the overview stays up when the broker is down
        return None


@router.get("/files/{content_key}/triage", response_model=list[TriageOut], tags=["triage"],
            summary="Triage history of a file, newest first")
def triage_history(request: Request, content_key: ContentKey):
    with _store(request).session() as session:
        return queries.triage_history(session, content_key)


@router.post("/files/{content_key}/accept", response_model=TriageOut, status_code=201, responses=WRITE_ERRORS,
             tags=["triage"], dependencies=[Depends(require_writer)],
             summary="Accept a file's findings (or one rule's), with a reason")
def accept(request: Request, content_key: ContentKey, body: AcceptRequest):
    return _act(actions.accept, _store(request), content_key, body)


@router.post("/files/{content_key}/escalate", response_model=TriageOut, status_code=201, responses=WRITE_ERRORS,
             tags=["triage"], dependencies=[Depends(require_writer)],
             summary="Escalate a file's findings")
def escalate(request: Request, content_key: ContentKey, body: EscalateRequest):
    return _act(actions.escalate, _store(request), content_key, body)


@router.post("/files/{content_key}/rescan", response_model=RescanOut, status_code=202,
             responses={**WRITE_ERRORS, 503: {"model": ErrorOut, "description": "no queue"}},
             tags=["triage"], dependencies=[Depends(require_writer)],
             summary="Queue a file for another scan under the current fingerprint")
def rescan(request: Request, content_key: ContentKey, body: RescanRequest | None = None):
    body = body or RescanRequest()
    try:
        return actions.rescan(_store(request), request.app.state.queue, content_key, body)
    except LookupError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such file in any revision") from None
    except RuntimeError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None


def _act(action, store, content_key: str, body):
    try:
        return action(store, content_key, body)
    except LookupError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such file") from None
