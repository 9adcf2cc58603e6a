"""Reading a folder of git mirrors with git itself: heads, listings, diffs, blobs, LFS objects.

The folder is laid out as olah serves it: `<root>/<models|datasets|spaces>/<org>/<name>`, each a
git repository (with a working tree, the objects in `.git`, or bare). A file kept in LFS is a
small pointer blob in git (`oid sha256:<hex>` and `size N`); its content is the object
`<git dir>/lfs/objects/<h[0:2]>/<h[2:4]>/<h>` of the mirror's LFS store.

Nothing here interprets a blob beyond recognising an LFS pointer: blobs are copied to files
for the scanner, never run.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

KIND_FOLDERS = {"model": "models", "dataset": "datasets", "space": "spaces"}
GIT_TIMEOUT = 120.0  # seconds for one git command (a listing of a very large repository)
POINTER_MAX_BYTES = 1024  # LFS pointers are about 130 bytes; larger blobs are content
_POINTER = re.compile(rb"^version https://git-lfs\.github\.com/spec/v1\noid sha256:([0-9a-f]{64})\n"
                      rb"size ([0-9]+)\n", re.S)
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}


class GitError(Exception):
    """A git command that failed (a missing object, a broken repository, a time-out)."""


@dataclass(frozen=True)
class TreeEntry:
    """One file of a commit: its path, git blob id, blob size, and mode."""

    path: str
    blob_id: str
    size: int
    mode: str


@dataclass(frozen=True)
class LfsPointer:
    sha256: str
    size: int


def repo_folder(root: str | os.PathLike, kind: str, name: str) -> Path:
    """Where the mirror of `kind` `org/name` lives; names that could leave the root are refused."""
    parts = name.split("/")
    if kind not in KIND_FOLDERS or len(parts) != 2 or not all(_NAME.match(p) for p in parts):
        raise GitError(f"not a repository name: {kind} {name!r}")
    return Path(root) / KIND_FOLDERS[kind] / parts[0] / parts[1]


def git_dir(folder: Path) -> Path | None:
    """The git directory of a mirror (its `.git`, or the folder itself when bare), if any."""
    dot_git = folder / ".git"
    if dot_git.is_dir():
        return dot_git
    if (folder / "HEAD").is_file() and (folder / "objects").is_dir():
        return folder
    return None


def discover(root: str | os.PathLike, kinds) -> list[tuple[str, str, Path]]:
    """(kind, org/name, git dir) of every mirror under the root, for the given kinds."""
    found = []
    for kind in kinds:
        base = Path(root) / KIND_FOLDERS[kind]
        for org in _subfolders(base):
            for repo in _subfolders(org):
                gdir = git_dir(repo)
                if gdir is not None and _NAME.match(org.name) and _NAME.match(repo.name):
                    found.append((kind, f"{org.name}/{repo.name}", gdir))
    return found


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        return []


def run_git(gdir: Path, *args: str, input: bytes | None = None, timeout: float = GIT_TIMEOUT) -> bytes:
    env = dict(os.environ, **GIT_ENV)
    try:
        done = subprocess.run(["git", f"--git-dir={gdir}", *args], input=input, env=env,
                              capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} timed out after {timeout:g}s in {gdir}") from None
    except OSError as exc:
        raise GitError(f"cannot run git: {exc}") from None
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise GitError(f"git {args[0]} failed in {gdir}: {message[-1] if message else done.returncode}")
    return done.stdout


def head_commit(gdir: Path, branch: str | None = None) -> str:
    """The commit the mirror's HEAD (or `branch`) points at: refs read directly, git as fallback."""
    ref = f"refs/heads/{branch}" if branch else None
    if ref is None:
        try:
            text = (gdir / "HEAD").read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise GitError(f"no HEAD in {gdir}: {exc}") from None
        if _SHA.match(text):
            return text
        if not text.startswith("ref: "):
            raise GitError(f"unreadable HEAD in {gdir}")
        ref = text[len("ref: "):]
    sha = _read_ref(gdir, ref)
    if sha is None:
        sha = run_git(gdir, "rev-parse", "--verify", "-q", ref + "^{commit}").decode().strip()
    if not _SHA.match(sha):
        raise GitError(f"{ref} in {gdir} is not a commit")
    return sha


def _read_ref(gdir: Path, ref: str) -> str | None:
    if ".." in ref or not ref.startswith("refs/"):
        return None
    try:
        text = (gdir / ref).read_text(encoding="utf-8").strip()
        return text if _SHA.match(text) else None
    except OSError:
        pass
    try:
        with open(gdir / "packed-refs", encoding="utf-8") as handle:
            for line in handle:
                sha, _, name = line.strip().partition(" ")
                if name == ref and _SHA.match(sha):
                    return sha
    except OSError:
        pass
    return None


def list_tree(gdir: Path, commit: str) -> list[TreeEntry]:
    """Every file (blob, including symlinks) of a commit, with its blob id and size."""
    out = run_git(gdir, "ls-tree", "-r", "-l", "-z", "--full-tree", commit)
    entries = []
    for record in out.split(b"\0"):
        if not record:
            continue
        meta, _, path = record.partition(b"\t")
        fields = meta.split()
        if len(fields) != 4 or fields[1] != b"blob":
            continue  # submodules (commits) carry no content here
        size = int(fields[3]) if fields[3].isdigit() else 0
        entries.append(TreeEntry(path.decode("utf-8", "surrogateescape"), fields[2].decode(), size,
                                 fields[0].decode()))
    return entries


def read_blobs(gdir: Path, blob_ids: list[str]) -> dict[str, bytes]:
    """The bytes of several (small) blobs in one `git cat-file --batch`."""
    if not blob_ids:
        return {}
    out = run_git(gdir, "cat-file", "--batch", input="".join(b + "\n" for b in blob_ids).encode())
    blobs, offset = {}, 0
    for blob_id in blob_ids:
        end = out.index(b"\n", offset)
        header = out[offset:end].split()
        offset = end + 1
        if len(header) != 3:
            continue  # "<id> missing"
        size = int(header[2])
        blobs[blob_id] = out[offset:offset + size]
        offset += size + 1
    return blobs


def lfs_pointer(data: bytes) -> LfsPointer | None:
    match = _POINTER.match(data) if len(data) <= POINTER_MAX_BYTES else None
    return LfsPointer(match.group(1).decode(), int(match.group(2))) if match else None


def changed_paths(gdir: Path, old: str, new: str) -> set[str] | None:
    """Paths that differ between two commits (None when the old commit is no longer there)."""
    try:
        out = run_git(gdir, "diff-tree", "-r", "-z", "--no-commit-id", "--name-only", "--no-renames",
                      old, new)
    except GitError:
        return None  # a rewritten history: the caller treats every path as changed
    return {p.decode("utf-8", "surrogateescape") for p in out.split(b"\0") if p}


def entry_at(gdir: Path, commit: str, path: str) -> TreeEntry | None:
    """The file at `path` in `commit`, or None when the commit has no such file."""
    out = run_git(gdir, "ls-tree", "-l", "-z", commit, "--", path)
    for record in out.split(b"\0"):
        meta, _, name = record.partition(b"\t")
        fields = meta.split()
        if len(fields) == 4 and fields[1] == b"blob" and name.decode("utf-8", "surrogateescape") == path:
            return TreeEntry(path, fields[2].decode(), int(fields[3]), fields[0].decode())
    return None


def copy_blob(gdir: Path, blob_id: str, destination: Path, timeout: float = GIT_TIMEOUT) -> int:
    """Stream a blob into `destination` with `git cat-file blob`; returns the bytes written."""
    env = dict(os.environ, **GIT_ENV)
    with open(destination, "wb") as out:
        try:
            process = subprocess.Popen(["git", f"--git-dir={gdir}", "cat-file", "blob", blob_id],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        except OSError as exc:
            raise GitError(f"cannot run git: {exc}") from None
        try:
            shutil.copyfileobj(process.stdout, out, 1 << 20)
            _, error = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise GitError(f"git cat-file timed out after {timeout:g}s in {gdir}") from None
    if process.returncode != 0:
        raise GitError(f"git cat-file failed for blob {blob_id}: "
                       f"{error.decode('utf-8', 'replace').strip() or process.returncode}")
    return destination.stat().st_size


def lfs_object(gdir: Path, sha256: str) -> Path:
    """Where the mirror's LFS store keeps the object with this sha256."""
    return gdir / "lfs" / "objects" / sha256[:2] / sha256[2:4] / sha256
