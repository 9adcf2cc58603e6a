"""What a repository's layout says: dataset scripts, remote code, configs (first version)."""
from __future__ import annotations

from dataclasses import dataclass, field

from .base import Repository


@dataclass
class Layout:
    type: str | None = None  # model | dataset | space, when the layout tells
    roles: dict = field(default_factory=dict)  # path -> role
    findings: list = field(default_factory=list)  # Finding about the repository itself
    problems: list = field(default_factory=list)  # (path or None, reason)


def analyse_layout(repo: Repository) -> Layout:
    return Layout()
