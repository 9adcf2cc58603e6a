"""The results store's first schema: repos, revisions and their files, scan results and their
findings, triage decisions, monitor runs and alerts.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _timestamp(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _indexes(table: str, *columns: str) -> None:
    for column in columns:
        op.create_index(op.f(f"ix_{table}_{column}"), table, [column])


def upgrade() -> None:
    op.create_table(
        "repos",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=1024), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("last_commit", sa.String(length=64), nullable=True),
        sa.Column("verdict", sa.String(length=16), nullable=True),
        sa.Column("gone", sa.Boolean(), nullable=False),
        _timestamp("first_seen_at"),
        _timestamp("checked_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_repos")),
        sa.UniqueConstraint("source", "kind", "name", name=op.f("uq_repos_source_kind_name")),
    )
    op.create_table(
        "revisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repo_id", sa.Integer(), nullable=False),
        sa.Column("commit", sa.String(length=64), nullable=False),
        _timestamp("seen_at"),
        sa.Column("verdict", sa.String(length=16), nullable=True),
        _timestamp("completed_at", nullable=True),
        sa.ForeignKeyConstraint(["repo_id"], ["repos.id"], name=op.f("fk_revisions_repo_id_repos"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_revisions")),
        sa.UniqueConstraint("repo_id", "commit", name=op.f("uq_revisions_repo_id_commit")),
    )
    _indexes("revisions", "repo_id", "completed_at")
    op.create_table(
        "revision_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("revision_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=2048), nullable=False),
        sa.Column("content_key", sa.String(length=80), nullable=False),
        sa.Column("result_key", sa.String(length=200), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["revision_id"], ["revisions.id"],
                                name=op.f("fk_revision_files_revision_id_revisions"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_revision_files")),
        sa.UniqueConstraint("revision_id", "path", name=op.f("uq_revision_files_revision_id_path")),
    )
    _indexes("revision_files", "revision_id", "content_key", "result_key")
    op.create_index("ix_revision_files_revision_content", "revision_files", ["revision_id", "content_key"])
    op.create_table(
        "file_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("result_key", sa.String(length=200), nullable=False),
        sa.Column("content_key", sa.String(length=80), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("format", sa.String(length=64), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=False),
        _timestamp("scanned_at"),
        sa.Column("problems", sa.Text(), nullable=False),
        sa.Column("report", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_file_results")),
        sa.UniqueConstraint("result_key", name=op.f("uq_file_results_result_key")),
    )
    _indexes("file_results", "content_key", "fingerprint", "verdict", "scanned_at")
    op.create_table(
        "findings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("result_id", sa.Integer(), nullable=False),
        sa.Column("content_key", sa.String(length=80), nullable=False),
        sa.Column("rule", sa.String(length=128), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("member", sa.String(length=2048), nullable=True),
        sa.Column("offset", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["result_id"], ["file_results.id"],
                                name=op.f("fk_findings_result_id_file_results"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_findings")),
    )
    _indexes("findings", "result_id", "content_key", "rule", "severity", "category")
    op.create_table(
        "triage",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("content_key", sa.String(length=80), nullable=False),
        sa.Column("rule", sa.String(length=128), nullable=True),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_triage")),
    )
    _indexes("triage", "content_key", "created_at")
    op.create_table(
        "scan_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=1024), nullable=False),
        _timestamp("started_at"),
        _timestamp("finished_at", nullable=True),
        sa.Column("repos_checked", sa.Integer(), nullable=False),
        sa.Column("revisions_new", sa.Integer(), nullable=False),
        sa.Column("files_queued", sa.Integer(), nullable=False),
        sa.Column("files_known", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("error_text", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scan_runs")),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dedup_key", sa.String(length=300), nullable=False),
        sa.Column("content_key", sa.String(length=80), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=True),
        sa.Column("repo", sa.String(length=600), nullable=False),
        sa.Column("path", sa.String(length=2048), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        _timestamp("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("dedup_key", name=op.f("uq_alerts_dedup_key")),
    )
    _indexes("alerts", "content_key")


def downgrade() -> None:
    for table in ("alerts", "scan_runs", "triage", "findings", "file_results", "revision_files", "revisions",
                  "repos"):
        op.drop_table(table)
