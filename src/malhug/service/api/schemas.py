"""Every request and response of the REST API as pydantic models.

Query strings and bodies are validated here, so a bad verdict name, a negative page or an
oversize string is refused with a 422 that names the field, before any query runs. Unknown
query parameters are refused too: a misspelt filter must not silently match everything.
"""
from __future__ import annotations

import re
from datetime import datetime
from enum import Enum
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

MAX_PER_PAGE = 200
MAX_PAGE = 100_000
MAX_TEXT = 200  # a search text or a name filter
MAX_REASON = 2000
CONTENT_KEY_PATTERN = r"^(sha256:[0-9a-f]{64}|git:[0-9a-f]{40}|git:[0-9a-f]{64})$"
_CONTENT_KEY = re.compile(CONTENT_KEY_PATTERN)

T = TypeVar("T")


class VerdictName(str, Enum):
    clean = "clean"
    inconclusive = "inconclusive"
    suspicious = "suspicious"
    malicious = "malicious"


class SeverityName(str, Enum):
    info = "info"
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


class RepoKind(str, Enum):
    model = "model"
    dataset = "dataset"
    space = "space"


class TriageState(str, Enum):
    """A finding's state: the latest accept or escalate decision on its file (or its rule)."""

    open = "open"
    accepted = "accepted"
    escalated = "escalated"


class RepoSort(str, Enum):
    name = "name"
    priority = "priority"
    checked = "checked"
    first_seen = "first_seen"


def valid_content_key(text: str) -> str:
    if not _CONTENT_KEY.fullmatch(text):
        raise ValueError("a content key is sha256:<64 hex> or git:<40 or 64 hex>")
    return text


# -- query strings -------------------------------------------------------------------------

class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PageQuery(_Query):
    page: int = Field(1, ge=1, le=MAX_PAGE, description="1 for the first page")
    per_page: int = Field(50, ge=1, le=MAX_PER_PAGE)


class ReposQuery(PageQuery):
    verdict: VerdictName | None = None
    pending: bool | None = Field(None, description="true: repos whose last revision has no verdict yet")
    kind: RepoKind | None = None
    q: str | None = Field(None, min_length=1, max_length=MAX_TEXT, description="part of the repo name")
    gone: bool | None = Field(None, description="include only repos that disappeared (true) or exist (false)")
    sort: RepoSort = RepoSort.priority


class FindingsQuery(PageQuery):
    verdict: VerdictName | None = Field(None, description="the verdict of the finding's file")
    severity: SeverityName | None = None
    min_severity: SeverityName | None = None
    category: str | None = Field(None, min_length=1, max_length=64)
    rule: str | None = Field(None, min_length=1, max_length=128)
    repo: str | None = Field(None, min_length=1, max_length=512, description="exact repo name (org/name)")
    triage: TriageState | None = None
    q: str | None = Field(None, min_length=1, max_length=MAX_TEXT,
                          description="text in the rule, message, evidence or a path of the file")


class SearchQuery(_Query):
    q: str = Field(..., min_length=1, max_length=MAX_TEXT)
    limit: int = Field(50, ge=1, le=MAX_PER_PAGE)


class StatsQuery(_Query):
    days: int = Field(30, ge=1, le=366, description="how many days the verdicts-over-time series covers")


# -- request bodies ------------------------------------------------------------------------

class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    rule: str | None = Field(None, min_length=1, max_length=128,
                             description="the rule the decision is about; none: the whole file")
    actor: str = Field("api", min_length=1, max_length=128, description="who decided")


class AcceptRequest(_Body):
    reason: str = Field(..., min_length=1, max_length=MAX_REASON, description="why the findings are accepted")


class EscalateRequest(_Body):
    reason: str = Field("", max_length=MAX_REASON)


class RescanRequest(_Body):
    reason: str = Field("", max_length=MAX_REASON)
    priority: int = Field(1000, ge=-1_000_000, le=1_000_000, description="queue priority (higher runs first)")


# -- responses -----------------------------------------------------------------------------

class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(_Out, Generic[T]):
    items: list[T]
    total: int
    page: int
    per_page: int


class RepoOut(_Out):
    id: int
    source: str
    kind: str
    name: str
    priority: int
    last_commit: str | None
    verdict: str | None = Field(description="the verdict of the last revision; null while pending")
    gone: bool
    first_seen_at: datetime | None
    checked_at: datetime | None


class RevisionOut(_Out):
    id: int
    repo_id: int
    commit: str
    seen_at: datetime | None
    verdict: str | None
    completed_at: datetime | None
    files: int


class FindingOut(_Out):
    rule: str
    severity: str
    category: str
    message: str
    evidence: str
    member: str | None
    offset: int | None


class ProblemOut(_Out):
    reason: str
    member: str | None = None
    offset: int | None = None


class RevisionFileOut(_Out):
    path: str
    content_key: str
    result_key: str
    size: int | None
    verdict: str | None = Field(description="null while the file waits for its scan")
    format: str | None
    scanned_at: datetime | None
    fingerprint: str | None
    triage: TriageState
    findings: list[FindingOut]
    problems: list[ProblemOut]


class RevisionDetail(RevisionOut):
    repo: RepoOut
    file_list: list[RevisionFileOut]


class RepoDetail(RepoOut):
    revisions: list[RevisionOut]
    last_revision: RevisionDetail | None


class ResultOut(_Out):
    result_key: str
    fingerprint: str
    format: str
    verdict: str
    size: int | None
    seconds: float
    scanned_at: datetime | None
    findings: list[FindingOut]
    problems: list[ProblemOut]


class LocationOut(_Out):
    repo_id: int
    repo: str
    kind: str
    source: str
    commit: str
    path: str
    current: bool = Field(description="the path is in the repo's last revision")


class TriageOut(_Out):
    id: int
    content_key: str
    rule: str | None
    decision: str
    reason: str
    actor: str
    created_at: datetime | None


class FileDetail(_Out):
    content_key: str
    verdict: str | None = Field(description="of the newest result; null while pending")
    triage_state: TriageState
    results: list[ResultOut]
    locations: list[LocationOut]
    locations_total: int
    triage: list[TriageOut]


class FindingListItem(FindingOut):
    id: int
    content_key: str
    result_key: str
    verdict: str
    scanned_at: datetime | None
    triage: TriageState
    locations: list[LocationOut] = Field(description="a few repos and paths holding the file")
    repos: int = Field(description="how many repos hold the file in their last revision")


class FileHit(_Out):
    repo_id: int
    repo: str
    kind: str
    path: str
    content_key: str
    verdict: str | None


class SearchOut(_Out):
    repos: list[RepoOut]
    files: list[FileHit]


class CategoryCount(_Out):
    category: str
    files: int


class DayCount(_Out):
    day: str
    clean: int = 0
    inconclusive: int = 0
    suspicious: int = 0
    malicious: int = 0


class StatsOut(_Out):
    repos_total: int
    repos_scanned: int
    repos_pending: int
    repos_gone: int
    repos_by_verdict: dict[str, int]
    files_scanned: int = Field(description="stored results (one per content, name class and fingerprint)")
    files_pending: int = Field(description="files of last revisions still waiting for a result")
    files_by_verdict: dict[str, int]
    malicious_by_category: list[CategoryCount]
    over_time: list[DayCount]
    queue: dict[str, int] | None = Field(description="jobs by state; null when the queue cannot be read")
    fingerprint: str


class RescanOut(_Out):
    queued: bool = Field(description="false when a job with this key was already queued or running")
    key: str
    repo: str
    path: str
    triage: TriageOut


class ErrorOut(BaseModel):
    detail: str | list
