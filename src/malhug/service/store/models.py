"""The results store's tables (SQLAlchemy 2 declarative models).

repos ─< revisions ─< revision_files >─ (content_key) ─< file_results ─< findings
triage decisions and alerts refer to content keys (a verdict belongs to bytes, not to a path);
scan_runs record what each monitor pass did.

Every constraint and index has a name from one naming convention, so the Alembic migrations
(`malhug.service.store.migrations`) can name what they create and later alter it on any database.
Timestamps are stored and read back as timezone-aware UTC, SQLite included.
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, MetaData, String,
                        Text, TypeDecorator, UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC timestamp on every database (SQLite keeps no zone: it is put back on read)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


class Repo(Base):
    __tablename__ = "repos"
    __table_args__ = (UniqueConstraint("source", "kind", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(1024))  # endpoint URL or mirrors folder
    kind: Mapped[str] = mapped_column(String(16))  # model | dataset | space
    name: Mapped[str] = mapped_column(String(512))  # org/name
    priority: Mapped[int] = mapped_column(Integer, default=0)  # popularity: higher first
    last_commit: Mapped[str | None] = mapped_column(String(64), nullable=True)
    verdict: Mapped[str | None] = mapped_column(String(16), nullable=True)  # of last_commit
    gone: Mapped[bool] = mapped_column(Boolean, default=False)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    revisions: Mapped[list["Revision"]] = relationship(back_populates="repo", cascade="all, delete-orphan")


class Revision(Base):
    __tablename__ = "revisions"
    __table_args__ = (UniqueConstraint("repo_id", "commit"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), index=True)
    commit: Mapped[str] = mapped_column(String(64))
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    verdict: Mapped[str | None] = mapped_column(String(16), nullable=True)  # None while pending
    # None while pending: a new revision, or one whose files were re-keyed after a rules change
    # (it keeps its previous verdict until every file has a result under the new keys)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True, index=True)

    repo: Mapped[Repo] = relationship(back_populates="revisions")
    files: Mapped[list["RevisionFile"]] = relationship(back_populates="revision", cascade="all, delete-orphan")


class RevisionFile(Base):
    __tablename__ = "revision_files"
    __table_args__ = (UniqueConstraint("revision_id", "path"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision_id: Mapped[int] = mapped_column(ForeignKey("revisions.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(String(2048))
    content_key: Mapped[str] = mapped_column(String(80), index=True)
    result_key: Mapped[str] = mapped_column(String(200), index=True)  # under the fingerprint it was queued
    size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    revision: Mapped[Revision] = relationship(back_populates="files")


class FileResult(Base):
    """One scan of one content under one fingerprint (unique by result key: tasks are idempotent)."""

    __tablename__ = "file_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    result_key: Mapped[str] = mapped_column(String(200), unique=True)
    content_key: Mapped[str] = mapped_column(String(80), index=True)
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    format: Mapped[str] = mapped_column(String(64))
    verdict: Mapped[str] = mapped_column(String(16), index=True)
    size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    scanned_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    problems: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of reasons
    report: Mapped[str] = mapped_column(Text)  # the malhug FileResult as JSON (to_dict)

    findings: Mapped[list["FindingRow"]] = relationship(back_populates="result", cascade="all, delete-orphan")


class FindingRow(Base):
    __tablename__ = "findings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("file_results.id", ondelete="CASCADE"), index=True)
    content_key: Mapped[str] = mapped_column(String(80), index=True)
    rule: Mapped[str] = mapped_column(String(128), index=True)
    severity: Mapped[str] = mapped_column(String(16), index=True)
    category: Mapped[str] = mapped_column(String(64), index=True)
    message: Mapped[str] = mapped_column(Text)
    evidence: Mapped[str] = mapped_column(Text, default="")
    member: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    offset: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    result: Mapped[FileResult] = relationship(back_populates="findings")


class Triage(Base):
    """An analyst's decision on a content's findings (rule None: the whole file)."""

    __tablename__ = "triage"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    content_key: Mapped[str] = mapped_column(String(80), index=True)
    rule: Mapped[str | None] = mapped_column(String(128), nullable=True)
    decision: Mapped[str] = mapped_column(String(16))  # accepted | escalated | rescan
    reason: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class ScanRun(Base):
    __tablename__ = "scan_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mode: Mapped[str] = mapped_column(String(16))  # watch | backfill | once
    source: Mapped[str] = mapped_column(String(1024))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    repos_checked: Mapped[int] = mapped_column(Integer, default=0)
    revisions_new: Mapped[int] = mapped_column(Integer, default=0)
    files_queued: Mapped[int] = mapped_column(Integer, default=0)
    files_known: Mapped[int] = mapped_column(Integer, default=0)  # already scanned: deduplicated
    errors: Mapped[int] = mapped_column(Integer, default=0)
    error_text: Mapped[str] = mapped_column(Text, default="")


class Alert(Base):
    """An alert sent once per de-duplication key (content key + verdict + channel)."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dedup_key: Mapped[str] = mapped_column(String(300), unique=True)
    content_key: Mapped[str] = mapped_column(String(80), index=True)
    verdict: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str | None] = mapped_column(String(16), nullable=True)
    repo: Mapped[str] = mapped_column(String(600), default="")
    path: Mapped[str] = mapped_column(String(2048), default="")
    channel: Mapped[str] = mapped_column(String(32))  # webhook | log
    status: Mapped[str] = mapped_column(String(16), default="sent")  # sent | failed
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


Index("ix_revision_files_revision_content", RevisionFile.revision_id, RevisionFile.content_key)
