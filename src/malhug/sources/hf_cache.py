"""The local Hugging Face cache: one repository per downloaded snapshot.

Layout: `<root>/models--org--name/{blobs/<hash>, snapshots/<commit>/<path>, refs/<name>}`
(also `datasets--` and `spaces--`). Snapshot files are links into `../../blobs`. A blob name is
only a claim about its content, so it is never used as the content hash: the scanner hashes
what it reads, and content linked from many snapshots (or cached by many repositories) is
still scanned once per run, by that hash.
"""
from __future__ import annotations

import os
from functools import partial
from pathlib import Path

from .base import RepoFile, Repository

KINDS = {"models": "model", "datasets": "dataset", "spaces": "space"}
INCOMPLETE_SUFFIX = ".incomplete"


class HfCacheError(OSError):
    """The folder named is not a Hugging Face cache."""


def default_hf_cache_root() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def hf_cache_repositories(root: str | os.PathLike | None = None) -> list[Repository]:
    """Every snapshot in a hub cache (or in one cached repository folder), as repositories."""
    root_path = Path(root) if root is not None else default_hf_cache_root()
    if not root_path.is_dir():
        raise HfCacheError(f"no Hugging Face cache at {root_path}")
    if _kind_and_id(root_path.name) is not None:
        folders = [root_path]
    else:
        folders = sorted(p for p in root_path.iterdir() if p.is_dir() and _kind_and_id(p.name) is not None)
    repositories = []
    for folder in folders:
        repositories.extend(cached_repositories(folder))
    return repositories


def cached_repositories(folder: Path) -> list[Repository]:
    """The snapshots of one cached repository (`models--org--name`)."""
    kind, repo_id = _kind_and_id(folder.name)
    real_folder = folder.resolve()
    shared = [(None, reason) for reason in _incomplete_downloads(folder)]
    snapshots_dir = folder / "snapshots"
    snapshots = sorted(p for p in snapshots_dir.iterdir() if p.is_dir()) if snapshots_dir.is_dir() else []
    repositories = []
    for snapshot in snapshots:
        problems = list(shared)
        if snapshot.is_symlink() and not _inside(snapshot, real_folder):
            problems.append((None, f"snapshot link leaves the repository (to {os.readlink(snapshot)}): not read"))
            files = []
        else:
            files = _snapshot_files(snapshot, real_folder)
        repositories.append(Repository(
            location=str(snapshot), files=files, id=repo_id, type=kind, revision=snapshot.name,
            problems=problems, total_bytes=sum(f.size or 0 for f in files),
        ))
    if not repositories and shared:  # a first download that never finished: nothing to read yet
        repositories.append(Repository(location=str(folder), id=repo_id, type=kind, problems=shared))
    return repositories


def _snapshot_files(snapshot: Path, real_folder: Path) -> list[RepoFile]:
    files = []
    for current, dirs, names in os.walk(snapshot):
        here = Path(current)
        linked_dirs = [d for d in dirs if (here / d).is_symlink()]
        dirs[:] = sorted(d for d in dirs if d not in linked_dirs)
        for name in sorted(names + linked_dirs):
            path = here / name
            files.append(_snapshot_file(path, path.relative_to(snapshot).as_posix(), real_folder))
    return files


def _snapshot_file(path: Path, relative: str, real_folder: Path) -> RepoFile:
    display = str(path)
    real = Path(os.path.realpath(path))
    problem = None
    if path.is_symlink() and not _inside_real(real, real_folder):
        problem = f"link leaves the repository (to {os.readlink(path)}): not read"
    elif not real.exists():
        problem = f"link points to a missing blob ({os.readlink(path)}): download incomplete or cache pruned"
    elif real.is_dir():
        problem = f"link to a folder ({os.readlink(path)}): not followed"
    if problem is not None:
        return RepoFile(relative, partial(_refuse, problem), display=display, problem=problem)
    try:
        size = real.stat().st_size
    except OSError:
        size = None
    return RepoFile(relative, partial(open, real, "rb"), size, display=display)


def _refuse(reason: str):
    raise OSError(reason)


def _incomplete_downloads(folder: Path) -> list[str]:
    blobs = folder / "blobs"
    if not blobs.is_dir():
        return []
    return [f"download did not finish: blobs/{entry.name}"
            for entry in sorted(blobs.iterdir()) if entry.name.endswith(INCOMPLETE_SUFFIX)]


def _kind_and_id(name: str) -> tuple[str, str] | None:
    prefix, sep, rest = name.partition("--")
    if not sep or prefix not in KINDS or not rest:
        return None
    return KINDS[prefix], rest.replace("--", "/")


def _inside(path: Path, root: Path) -> bool:
    return _inside_real(Path(os.path.realpath(path)), root)


def _inside_real(real: Path, root: Path) -> bool:
    try:
        real.relative_to(root)
        return True
    except ValueError:
        return False
