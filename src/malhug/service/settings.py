"""Settings shared by `malhug monitor`, `malhug worker` and `malhug serve`.

Every setting comes from, in order: the command line, the environment (MALHUG_*), a default.
The defaults make one machine work with nothing but malhug installed: a SQLite store and a
SQLite job queue in the state folder.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from .queue.base import DEFAULT_LEASE_SECONDS, DEFAULT_MAX_ATTEMPTS

ENV_PREFIX = "MALHUG_"


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME")
    return (Path(base) if base else Path.home() / ".local" / "state") / "malhug"


@dataclass(frozen=True)
class ServiceSettings:
    """state_dir: where the embedded store and queue live.
    database_url: SQLAlchemy URL of the results store (sqlite:///... or postgresql+psycopg://...).
    queue: "sqlite" (embedded) or "celery" (distributed; broker_url names the broker).
    queue_path: the SQLite job queue's file.
    api_token: what write operations of the API must present (Authorization: Bearer ...);
        None refuses every write.
    webhook_url: where alerts are POSTed as JSON (None: log alerts only).
    alert_on: the lowest verdict that alerts: "suspicious" or "malicious".
    max_attempts: the poison cap; lease_seconds: how long a claimed job stays leased.
    """

    state_dir: Path = dataclasses.field(default_factory=default_state_dir)
    database_url: str | None = None
    queue: str = "sqlite"
    queue_path: Path | None = None
    broker_url: str = "redis://127.0.0.1:6379/0"
    api_token: str | None = None
    webhook_url: str | None = None
    alert_on: str = "suspicious"
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    lease_seconds: float = DEFAULT_LEASE_SECONDS

    @property
    def store_url(self) -> str:
        return self.database_url or f"sqlite:///{self.state_dir / 'store.sqlite'}"

    @property
    def queue_file(self) -> Path:
        return self.queue_path or self.state_dir / "queue.sqlite"

    @classmethod
    def from_env(cls, environ: dict | None = None, **overrides) -> "ServiceSettings":
        """Settings from MALHUG_STATE_DIR, MALHUG_DATABASE_URL, MALHUG_QUEUE, MALHUG_QUEUE_PATH,
        MALHUG_BROKER_URL, MALHUG_API_TOKEN, MALHUG_WEBHOOK_URL, MALHUG_ALERT_ON,
        MALHUG_MAX_ATTEMPTS, MALHUG_LEASE_SECONDS; `overrides` that are not None win."""
        environ = os.environ if environ is None else environ
        values = {}
        for field in dataclasses.fields(cls):
            text = environ.get(ENV_PREFIX + field.name.upper())
            if text is not None and text != "":
                values[field.name] = _convert(field.name, text)
        values.update({name: value for name, value in overrides.items() if value is not None})
        for name in ("state_dir", "queue_path"):
            if isinstance(values.get(name), str):
                values[name] = Path(values[name])
        settings = cls(**values)
        if settings.queue not in ("sqlite", "celery"):
            raise ValueError(f"unknown queue backend {settings.queue!r}: sqlite or celery")
        if settings.alert_on not in ("suspicious", "malicious"):
            raise ValueError(f"alert_on must be suspicious or malicious, not {settings.alert_on!r}")
        return settings


def _convert(name: str, text: str):
    if name == "max_attempts":
        return int(text)
    if name == "lease_seconds":
        return float(text)
    return text
