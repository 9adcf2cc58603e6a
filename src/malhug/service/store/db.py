"""Engines for the results store: SQLite for one machine, PostgreSQL for production.

SQLite: write-ahead log (readers never wait for the writer), a busy timeout (writers from other
processes wait their turn instead of failing at once), foreign keys enforced, and write
transactions opened with BEGIN IMMEDIATE, so that a transaction that reads and then writes never
finds the database changed under it. An in-memory URL ("sqlite://") keeps one shared connection.

PostgreSQL: pool_pre_ping, so a connection lost to a restarted server is replaced before it is
used, and a short connect timeout, so an unreachable server is reported quickly.
"""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool

SQLITE_BUSY_SECONDS = 30.0
CONNECT_TIMEOUT_SECONDS = 10
# execution option asking for a write transaction (BEGIN IMMEDIATE on SQLite)
WRITE_OPTION = "malhug_write"


def make_engine(url: str | URL) -> Engine:
    url = make_url(url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    connect_args = {}
    if url.get_backend_name() == "postgresql":
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args)


def _sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    in_memory = database in ("", ":memory:") or url.query.get("mode") == "memory"
    if in_memory:
        engine = create_engine(url, poolclass=StaticPool,
                               connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_SECONDS})
    else:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record):
        # the driver's own implicit transactions are turned off: "begin" below opens them
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_SECONDS * 1000)}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection):
        if connection.get_execution_options().get(WRITE_OPTION):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")

    return engine


def safe_url(url: str | URL) -> str:
    """The URL with any password hidden, for messages."""
    return make_url(url).render_as_string(hide_password=True)
