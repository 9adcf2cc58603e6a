"""What every source hands the scanner: a repository of files it can open."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import BinaryIO, Callable


@dataclass
class RepoFile:
    path: str  # path inside the repository, with '/' separators
    open: Callable[[], BinaryIO]  # a fresh binary stream (seekable where the source allows)
    size: int | None = None
    sha256: str | None = None  # content hash when the source knows it without reading (LFS oid)
    display: str | None = None  # how reports name it (default: the repository's location + path)
    problem: str | None = None  # why it cannot be read at all (a link leaving the repository ...)
    hash_max_bytes: int | None = None  # hash for the verdict cache only up to this size (remote files)


@dataclass
class Repository:
    location: str  # what the user named
    files: list = field(default_factory=list)  # RepoFile
    id: str | None = None
    type: str = "folder"  # model | dataset | space | folder
    revision: str | None = None
    problems: list = field(default_factory=list)  # (path or None, reason) that concern it all
    total_bytes: int | None = None
    fetched_bytes: Callable[[], int] | None = None  # remote sources count what they download
    notes: Callable[[], list] | None = None  # facts about the reading, known once it is done

    def display(self, file: RepoFile) -> str:
        if file.display:
            return file.display
        return self.display_path(file.path)

    def display_path(self, path: str) -> str:
        return f"{self.location.rstrip('/')}/{path}"
