"""A local folder as a repository. Links that leave it are reported, never followed."""
from __future__ import annotations

import os
from functools import partial
from pathlib import Path

from .base import RepoFile, Repository

SKIPPED_DIRS = (".git", ".hg", ".svn", "__pycache__")


def folder_repository(root: str | os.PathLike, follow_symlinks: bool = False) -> Repository:
    root_path = Path(root)
    real_root = root_path.resolve()
    allowed = [real_root] + _cache_blobs(real_root)
    repo = Repository(location=str(root), type="folder")
    for folder, dirs, files in os.walk(root_path, followlinks=follow_symlinks):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        for name in sorted(files):
            path = Path(folder) / name
            relative = path.relative_to(root_path).as_posix()
            problem = None
            if path.is_symlink() and not follow_symlinks and not any(_inside(path, a) for a in allowed):
                problem = f"link leaves the repository (to {os.readlink(path)}): not read"
            size = None
            try:
                size = path.stat().st_size if problem is None else None
            except OSError:
                pass  # a broken link: opening it reports the reason
            repo.files.append(RepoFile(relative, partial(open, path, "rb"), size, display=str(path),
                                       problem=problem))
    return repo


def _cache_blobs(root: Path) -> list:
    """A hub cache snapshot (`<repo>/snapshots/<commit>`) links into `<repo>/blobs`: still inside."""
    if root.parent.name == "snapshots" and (root.parent.parent / "blobs").is_dir():
        return [(root.parent.parent / "blobs").resolve()]
    return []


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root)
        return True
    except (ValueError, OSError, RuntimeError):
        return False
