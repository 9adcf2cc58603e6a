"""Where the monitor finds repositories: three sources behind one interface.

- `HubEndpointSource`: a Hugging Face compatible endpoint (huggingface.co or a self-hosted
  mirror). Repositories are listed through its API (`/api/models`, `/api/datasets`,
  `/api/spaces`, most downloaded or most recently modified first) where the endpoint offers
  it, otherwise from a list file. Each repository's commit and file listing come from the API.
- `GitMirrorsSource`: a folder of git mirrors laid out `<root>/<models|datasets|spaces>/<org>/<name>`
  (as olah serves them); git itself gives heads, listings and diffs.
- `RepoListSource`: an explicit list of repository ids on an endpoint.

Each gives `RepoRef`s (kind, name, priority) and, for one repository, its current commit
(`head`), its files with their content identity (`files`: LFS sha256 or git blob id, size) and
the paths two commits differ in (`changed_paths`; None when the source cannot tell cheaply,
and the monitor then compares listings).
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..keys import content_key
from . import gitmirror

KINDS = ("model", "dataset", "space")
DEFAULT_KINDS = ("model", "dataset")
API_TIMEOUT = 30.0
LISTING_FIELDS = ["sha", "downloads", "likes", "lastModified", "createdAt"]
_PREFIX_KINDS = {"models": "model", "datasets": "dataset", "spaces": "space"}
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


class SourceError(Exception):
    """The source as a whole cannot be read (no listing, unreachable endpoint)."""


class RepoGone(Exception):
    """The repository is no longer at the source (deleted, made private, no longer mirrored)."""


@dataclass(frozen=True)
class RepoRef:
    """A repository as a listing gives it.

    priority: popularity, higher first (0..999 from downloads and likes when known).
    commit: the current commit when the listing already tells it (saves one request).
    """

    kind: str
    name: str
    priority: int = 0
    commit: str | None = None
    last_modified: str | None = None

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


@dataclass(frozen=True)
class FileEntry:
    """One file of a commit with its content identity."""

    path: str
    content_key: str  # sha256:<hex> (LFS) or git:<blob id>
    size: int | None
    sha256: str | None = None  # the LFS sha256 when known: the scanner need not hash


def popularity(downloads: int | None, likes: int | None) -> int:
    """0..999: about 100 per tenfold downloads plus 50 per tenfold likes."""
    score = 100 * math.log10(1 + max(0, downloads or 0)) + 50 * math.log10(1 + max(0, likes or 0))
    return min(999, int(score))


def parse_repo_id(text: str, default_kind: str = "model") -> tuple[str, str]:
    """`org/name`, `models/org/name`, `datasets/org/name`, `spaces/org/name` or `hf://...`."""
    value = text.strip()
    if value.startswith("hf://"):
        value = value[len("hf://"):]
    value = value.strip("/").split("@", 1)[0]
    kind = default_kind
    head, sep, rest = value.partition("/")
    if head in _PREFIX_KINDS and sep and "/" in rest:
        kind, value = _PREFIX_KINDS[head], rest
    if not _REPO_ID.match(value):
        raise ValueError(f"not a repository id: {text!r}")
    return kind, value


def read_list_file(path: str | os.PathLike) -> list[str]:
    """Repository ids from a file, one a line; blank lines and `#` comments are skipped."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


class Source:
    """The interface every source offers."""

    location: str  # what the store and the scan jobs call it: an endpoint URL or a folder
    complete: bool = True  # its listing names every repository it has (absence means gone)

    def repos(self, kinds: Iterable[str]) -> list[RepoRef]:
        raise NotImplementedError

    def head(self, ref: RepoRef) -> str:
        raise NotImplementedError

    def files(self, ref: RepoRef, commit: str) -> list[FileEntry]:
        raise NotImplementedError

    def changed_paths(self, ref: RepoRef, old: str, new: str) -> set[str] | None:
        return None

    def close(self) -> None:
        pass


# -- hub endpoints ----------------------------------------------------------------------------------
class HubEndpointSource(Source):
    """A Hugging Face compatible endpoint, listed through its API or from a list file."""

    def __init__(self, endpoint: str, *, list_file: str | os.PathLike | None = None,
                 sort: str = "downloads", limit: int | None = None, token: str | None = None):
        self.location = endpoint.rstrip("/")
        self.list_file = list_file
        self.sort = sort
        self.limit = limit
        self.complete = limit is None
        self._token = token
        self._api = None

    @property
    def api(self):
        if self._api is None:
            from huggingface_hub import HfApi

            from ...sources.hub import _token

            self._api = HfApi(endpoint=self.location, token=self._token or _token(), library_name="malhug")
        return self._api

    def repos(self, kinds: Iterable[str]) -> list[RepoRef]:
        kinds = list(kinds)
        try:
            refs = []
            for kind in kinds:
                refs.extend(self._api_listing(kind))
            return refs
        except SourceError:
            if self.list_file is None:
                raise
        self.complete = True  # the list file is the whole source
        return _refs_from_ids(read_list_file(self.list_file), kinds)

    def _api_listing(self, kind: str) -> list[RepoRef]:
        import httpx2
        from huggingface_hub import errors

        listing = {"model": self.api.list_models, "dataset": self.api.list_datasets,
                   "space": self.api.list_spaces}[kind]
        try:
            infos = listing(sort=self.sort, limit=self.limit, expand=LISTING_FIELDS)
            return [_ref_from_info(kind, info) for info in infos]
        except (errors.HfHubHTTPError, httpx2.HTTPError, OSError, ValueError, KeyError, TypeError) as exc:
            raise SourceError(f"{self.location} offers no {kind} listing ({_short(exc)}): "
                              "give the repositories in a list file") from None

    def head(self, ref: RepoRef) -> str:
        if ref.commit:
            return ref.commit
        info = self._call(ref, lambda: self.api.repo_info(ref.name, repo_type=ref.kind, revision="main",
                                                          timeout=API_TIMEOUT))
        sha = getattr(info, "sha", None)
        if not sha:
            raise SourceError(f"{ref}: the endpoint did not tell which commit main is")
        return sha

    def files(self, ref: RepoRef, commit: str) -> list[FileEntry]:
        from huggingface_hub.hf_api import RepoFile

        listing = self._call(ref, lambda: list(self.api.list_repo_tree(
            ref.name, recursive=True, revision=commit, repo_type=ref.kind)))
        entries = []
        for item in listing:
            if not isinstance(item, RepoFile):
                continue
            sha256 = _lfs_sha256(getattr(item, "lfs", None))
            entries.append(FileEntry(item.path, content_key(sha256=sha256, blob_id=item.blob_id),
                                     item.size, sha256))
        return sorted(entries, key=lambda e: e.path)

    def _call(self, ref: RepoRef, action):
        import httpx2
        from huggingface_hub import errors

        try:
            return action()
        except (errors.RepositoryNotFoundError, errors.GatedRepoError, errors.DisabledRepoError) as exc:
            raise RepoGone(f"{ref}: {_short(exc)}") from None
        except errors.RevisionNotFoundError as exc:
            raise RepoGone(f"{ref}: {_short(exc)}") from None
        except errors.HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            if status in (401, 403, 404, 410):
                raise RepoGone(f"{ref}: HTTP {status}") from None
            raise SourceError(f"{ref}: the endpoint answered HTTP {status}") from None
        except (httpx2.HTTPError, OSError) as exc:
            raise SourceError(f"{ref}: cannot reach {self.location}: {_short(exc)}") from None


class RepoListSource(HubEndpointSource):
    """An explicit list of repository ids (`org/name`, `datasets/org/name`...) on an endpoint."""

    def __init__(self, endpoint: str, ids: Iterable[str], *, token: str | None = None):
        super().__init__(endpoint, token=token)
        self.ids = list(ids)
        self.complete = False  # other repositories of the endpoint are not ours to mark gone

    def repos(self, kinds: Iterable[str]) -> list[RepoRef]:
        return _refs_from_ids(self.ids, list(kinds))


def _refs_from_ids(ids: list[str], kinds: list[str]) -> list[RepoRef]:
    refs, seen = [], set()
    for text in ids:
        kind, name = parse_repo_id(text)
        if kind in kinds and (kind, name) not in seen:
            seen.add((kind, name))
            refs.append(RepoRef(kind, name))
    return refs


def _ref_from_info(kind: str, info) -> RepoRef:
    modified = getattr(info, "last_modified", None) or getattr(info, "created_at", None)
    return RepoRef(kind, info.id, popularity(getattr(info, "downloads", None), getattr(info, "likes", None)),
                   getattr(info, "sha", None) or None, modified.isoformat() if modified else None)


def _lfs_sha256(lfs) -> str | None:
    if lfs is None:
        return None
    value = getattr(lfs, "sha256", None) or (lfs.get("sha256") if isinstance(lfs, dict) else None)
    return value if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value) else None


# -- folders of git mirrors ---------------------------------------------------------------------------
class GitMirrorsSource(Source):
    """A folder of git mirrors: `<root>/<models|datasets|spaces>/<org>/<name>`."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()
        self.location = str(self.root)
        self.complete = True
        if not self.root.is_dir():
            raise SourceError(f"{self.root} is not a folder")

    def repos(self, kinds: Iterable[str]) -> list[RepoRef]:
        return [RepoRef(kind, name) for kind, name, _ in gitmirror.discover(self.root, list(kinds))]

    def _gdir(self, ref: RepoRef) -> Path:
        try:
            gdir = gitmirror.git_dir(gitmirror.repo_folder(self.root, ref.kind, ref.name))
        except gitmirror.GitError as exc:
            raise RepoGone(str(exc)) from None
        if gdir is None:
            raise RepoGone(f"{ref}: no longer in {self.root}")
        return gdir

    def head(self, ref: RepoRef) -> str:
        gdir = self._gdir(ref)
        try:
            return gitmirror.head_commit(gdir)
        except gitmirror.GitError as exc:
            raise SourceError(f"{ref}: {exc}") from None

    def files(self, ref: RepoRef, commit: str) -> list[FileEntry]:
        gdir = self._gdir(ref)
        try:
            tree = gitmirror.list_tree(gdir, commit)
            small = [e.blob_id for e in tree if 0 < e.size <= gitmirror.POINTER_MAX_BYTES
                     and not e.mode.startswith("120")]
            pointers = {}
            for blob_id, data in gitmirror.read_blobs(gdir, sorted(set(small))).items():
                pointer = gitmirror.lfs_pointer(data)
                if pointer is not None:
                    pointers[blob_id] = pointer
        except gitmirror.GitError as exc:
            raise SourceError(f"{ref}: {exc}") from None
        entries = []
        for item in tree:
            pointer = pointers.get(item.blob_id)
            if pointer is not None:
                entries.append(FileEntry(item.path, content_key(sha256=pointer.sha256), pointer.size,
                                         pointer.sha256))
            else:
                entries.append(FileEntry(item.path, content_key(blob_id=item.blob_id), item.size))
        return entries

    def changed_paths(self, ref: RepoRef, old: str, new: str) -> set[str] | None:
        return gitmirror.changed_paths(self._gdir(ref), old, new)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
