"""The results store's schema history (Alembic), run from inside the package: no alembic.ini.

`upgrade(engine)` brings a database to the newest revision; `Store(url, create=True)` calls it.
On PostgreSQL an advisory lock makes concurrent starters (a monitor and its workers) take turns;
on SQLite the write transaction does the same. `python -m malhug.service.store.migrations URL`
upgrades a database by hand and prints its revision.
"""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, func, select

from ..db import WRITE_OPTION

SCRIPT_LOCATION = Path(__file__).resolve().parent
# any constant will do: it names the lock that serialises schema upgrades on PostgreSQL
_UPGRADE_LOCK = 0x6D616C687567


def config(connection=None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    """The newest revision this malhug knows."""
    return ScriptDirectory.from_config(config()).get_current_head()


def current(engine: Engine) -> str | None:
    """The revision a database is at (None before the first upgrade)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    with engine.execution_options(**{WRITE_OPTION: True}).begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(select(func.pg_advisory_xact_lock(_UPGRADE_LOCK)))
        command.upgrade(config(connection), revision)
