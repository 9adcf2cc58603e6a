"""`malhug monitor`, `malhug worker` and `malhug serve`: parsers and dispatch.

Each command lives in its own module, which offers `add_arguments(parser)` and
`main(args, settings) -> int` and imports nothing beyond the standard library at import time
(the scanner's own commands must start fast, and work without the service extras).
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = (
    ("monitor", "malhug.service.monitor.command",
     "watch a hub endpoint, a folder of git mirrors or a list of repositories and keep their verdicts current"),
    ("worker", "malhug.service.worker_command", "scan queued files (embedded SQLite queue or Celery)"),
    ("serve", "malhug.service.api.command", "the REST API, the dashboard and /metrics"),
)


def add_commands(commands) -> None:
    for name, module_name, help_text in COMMANDS:
        parser = commands.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        _add_common(parser)
        module = importlib.import_module(module_name)
        module.add_arguments(parser)
        parser.set_defaults(service_command=lambda args, module_name=module_name: _run(module_name, args))


def _add_common(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("service settings (also MALHUG_* environment variables)")
    group.add_argument("--state-dir", help="where the embedded store and queue live (MALHUG_STATE_DIR)")
    group.add_argument("--database-url", help="SQLAlchemy URL of the results store, e.g. "
                       "postgresql+psycopg://user@host/malhug (default: SQLite in the state folder)")
    group.add_argument("--queue", choices=("sqlite", "celery"), help="job queue backend (default sqlite)")
    group.add_argument("--broker-url", help="Celery broker, e.g. redis://127.0.0.1:6379/0")


def _run(module_name: str, args) -> int:
    from .settings import ServiceSettings

    try:
        settings = ServiceSettings.from_env(state_dir=args.state_dir, database_url=args.database_url,
                                            queue=args.queue, broker_url=args.broker_url)
    except ValueError as exc:
        print(f"malhug: error: {exc}", file=sys.stderr)
        return 3
    try:
        module = importlib.import_module(module_name)
        return module.main(args, settings)
    except ModuleNotFoundError as exc:
        if (exc.name or "").startswith("malhug"):
            raise
        print(f"malhug: error: {exc.name or exc}: this command needs the service extras: "
              "pip install 'malhug[service]' (and 'malhug[distributed]' for Celery or PostgreSQL)",
              file=sys.stderr)
        return 3
