"""Alembic's environment for the results store: runs on the connection the caller hands over.

`malhug.service.store.migrations.upgrade` passes an open connection in `config.attributes`;
without one (Alembic's own command line with an ini file) the URL comes from `sqlalchemy.url`.
SQLite gets batch mode, so later revisions can alter its tables by copying them.
"""
from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

from malhug.service.store.models import Base

target_metadata = Base.metadata


def _configure(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite", compare_type=True)


def run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = engine_from_config(context.config.get_section(context.config.config_ini_section, {}),
                                prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as connection:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()


def run_offline() -> None:
    context.configure(url=context.config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
