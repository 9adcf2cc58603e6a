"""A scan job: one file's content, where to fetch it, and under which key its result is kept."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass


@dataclass(frozen=True)
class ScanJob:
    """One file to scan.

    key: the result key (malhug.service.keys.result_key); the queue holds at most one live job
        per key, and the store keeps one result per key.
    source: where the repository lives: a hub endpoint URL (`http://127.0.0.1:8090`) or the
        path of a folder of git mirrors (`/srv/mirrors`), as the monitor's source names it.
    repo_type: "model", "dataset" or "space"; repo_id: "org/name"; revision: a commit sha.
    path: the file inside the repository; size: bytes (None when unknown).
    sha256: known LFS sha256 (lets the scanner skip hashing); priority: higher runs first.
    """

    key: str
    content_key: str
    fingerprint: str
    source: str
    repo_type: str
    repo_id: str
    revision: str
    path: str
    size: int | None = None
    sha256: str | None = None
    priority: int = 0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ScanJob":
        data = json.loads(text)
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{name: value for name, value in data.items() if name in names})
