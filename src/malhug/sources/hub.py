"""Hugging Face Hub repositories: resolved to one commit, listed, read remotely by range.

Targets: `hf://[models/|datasets/|spaces/]org/name[@revision][/path]` and web addresses
`https://huggingface.co/[datasets/|spaces/]org/name[/tree|blob|resolve/<revision>[/path]]`, or
the same under `$HF_ENDPOINT`. The revision is resolved to a commit sha first and every file is
read at that sha, so a branch moving during the scan cannot mix two revisions. `HF_TOKEN` (or
the token saved by `hf auth login`) is sent to the hub and never shown.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import partial
from urllib.parse import unquote, urlsplit

from .base import RepoFile, Repository
from .remote_file import FetchStats, RemoteFile

DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_REVISION = "main"
API_TIMEOUT = 30.0
TYPE_PREFIXES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHA = re.compile(r"^[0-9a-f]{40}$")
_URL_ACTIONS = ("tree", "blob", "resolve", "commit")


class HubError(Exception):
    """A hub target that cannot be scanned: not found, private, gated, unreachable, offline."""


@dataclass(frozen=True)
class HubRef:
    type: str  # model | dataset | space
    repo_id: str
    revision: str | None = None
    path: str | None = None  # a folder or a file inside the repository

    def display(self, sha: str, path: str = "") -> str:
        base = f"hf://{URL_PREFIXES[self.type]}{self.repo_id}@{sha[:12]}"
        return f"{base}/{path}" if path else base


# -- parsing targets ------------------------------------------------------------------------------
def parse_target(target: str, endpoint: str | None = None) -> HubRef:
    endpoint = (endpoint or hub_endpoint()).rstrip("/")
    if target.startswith("hf://"):
        return _parse_hf(target[len("hf://"):], target)
    for base in (endpoint, DEFAULT_ENDPOINT, "http://huggingface.co"):
        if target == base or target.startswith(base + "/"):
            return _parse_url(urlsplit(target[len(base):]).path, target)
    raise HubError(f"not a hub reference: {target}")


def _parse_hf(rest: str, target: str) -> HubRef:
    kind, rest = _split_type(rest.strip("/"))
    revision = None
    if "@" in rest:
        repo_part, _, after = rest.partition("@")
        revision, path = _split_revision(after)
        segments = repo_part.strip("/").split("/")
    else:
        segments = rest.split("/")
        path = "/".join(segments[2:]) or None
        segments = segments[:2]
    return _ref(kind, segments, revision, path, target)


def _parse_url(path: str, target: str) -> HubRef:
    kind, rest = _split_type(unquote(path).strip("/"))
    segments = [s for s in rest.split("/") if s]
    if len(segments) >= 2 and segments[1] in _URL_ACTIONS:
        repo, tail = segments[:1], segments[1:]
    else:
        repo, tail = segments[:2], segments[2:]
    revision = sub = None
    if tail:
        if tail[0] not in _URL_ACTIONS or len(tail) < 2:
            raise HubError(f"not a repository address: {target}")
        revision, sub = _split_revision("/".join(tail[1:]))
    return _ref(kind, repo, revision, sub, target)


def _split_type(rest: str) -> tuple[str, str]:
    head, sep, tail = rest.partition("/")
    if head in TYPE_PREFIXES and sep and tail:
        return TYPE_PREFIXES[head], tail
    return "model", rest


def _split_revision(text: str) -> tuple[str | None, str | None]:
    """`rev/path`: a revision is one segment, except `refs/pr/N` and `refs/convert/NAME`."""
    segments = text.split("/")
    count = 3 if len(segments) >= 3 and segments[0] == "refs" and segments[1] in ("pr", "convert") else 1
    revision = unquote("/".join(segments[:count])) or None
    path = "/".join(s for s in segments[count:] if s) or None
    return revision, path


def _ref(kind: str, segments: list, revision: str | None, path: str | None, target: str) -> HubRef:
    if not 1 <= len(segments) <= 2 or not all(_NAME.match(s or "") for s in segments):
        raise HubError(f"not a hub repository name: {target}")
    if path and any(part in ("", ".", "..") for part in path.split("/")):
        raise HubError(f"not a path inside a repository: {path}")
    return HubRef(kind, "/".join(segments), revision, path)


# -- environment ------------------------------------------------------------------------------------
def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def _offline() -> bool:
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE"):
            return True
    return False


def _token() -> str | None:
    from huggingface_hub import get_token

    return get_token()


def _cache_dir() -> str:
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return os.path.join(home, "hub")


def cached_snapshot(ref: HubRef) -> str | None:
    """The local hub cache's snapshot folder of this revision, when there is one."""
    folder = os.path.join(_cache_dir(), f"{ref.type}s--{ref.repo_id.replace('/', '--')}")
    revision = ref.revision or DEFAULT_REVISION
    sha = revision if _SHA.match(revision) else None
    if sha is None:
        try:
            with open(os.path.join(folder, "refs", revision), encoding="utf-8") as handle:
                sha = handle.read().strip()
        except OSError:
            return None
    snapshot = os.path.join(folder, "snapshots", sha)
    return snapshot if os.path.isdir(snapshot) else None


# -- opening ------------------------------------------------------------------------------------------
def open_hub_repository(target: str, options=None) -> Repository:
    endpoint = hub_endpoint()
    ref = parse_target(target, endpoint)
    if _offline():
        raise HubError(_offline_message(ref))
    from huggingface_hub import HfApi

    token = _token()
    api = HfApi(endpoint=endpoint, token=token, library_name="malhug")
    info = _call(ref, token, endpoint, lambda: api.repo_info(
        ref.repo_id, repo_type=ref.type, revision=ref.revision or DEFAULT_REVISION,
        timeout=API_TIMEOUT), api)
    sha = getattr(info, "sha", None)
    if not sha:
        raise HubError(f"{_name(ref)}: the hub did not tell which commit "
                       f"{ref.revision or DEFAULT_REVISION!r} is")
    entries = _call(ref, token, endpoint, lambda: _list_files(api, ref, sha), api)
    if ref.path:
        entries = [e for e in entries if e.path == ref.path or e.path.startswith(ref.path + "/")]
        if not entries:
            raise HubError(f"{_name(ref)}@{sha[:12]}: no file or folder {ref.path!r}")
    if getattr(info, "gated", False) and entries:
        _check_gate(ref, token, endpoint, sha, entries)
    return _repository(target, ref, sha, entries, token, endpoint)


def _list_files(api, ref: HubRef, sha: str) -> list:
    from huggingface_hub.hf_api import RepoFile as HubFile

    listing = api.list_repo_tree(ref.repo_id, recursive=True, expand=False, revision=sha,
                                 repo_type=ref.type)
    return sorted((e for e in listing if isinstance(e, HubFile)), key=lambda e: e.path)


def _repository(target: str, ref: HubRef, sha: str, entries: list, token: str | None,
                endpoint: str) -> Repository:
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    from .. import __version__

    headers = build_hf_headers(token=token or False, library_name="malhug",
                               library_version=__version__)
    stats = FetchStats()
    files = []
    for entry in entries:
        url = hf_hub_url(ref.repo_id, entry.path, repo_type=ref.type, revision=sha,
                         endpoint=endpoint)
        lfs = getattr(entry, "lfs", None)
        display = ref.display(sha, entry.path)
        opener = partial(RemoteFile, url, entry.size, headers=headers, stats=stats, name=display)
        files.append(RepoFile(entry.path, opener, entry.size, sha256=_lfs_sha256(lfs),
                              display=display, hash_max_bytes=REMOTE_HASH_MAX_BYTES))
    repo = Repository(location=target, files=files, id=ref.repo_id, type=ref.type, revision=sha,
                      total_bytes=sum(f.size or 0 for f in files),
                      fetched_bytes=lambda: stats.bytes, notes=partial(_fetch_notes, stats))
    repo.fetch_stats = stats
    return repo


# Files the server gives no hash for are hashed (for the verdict cache) only when small: hashing
# a large one would mean downloading all of it.
REMOTE_HASH_MAX_BYTES = 1024 * 1024


def _fetch_notes(stats) -> list:
    if stats.ranges_ignored:
        return [f"the server ignored HTTP Range requests {stats.ranges_ignored} time(s): "
                "those files were downloaded whole"]
    return []


def _lfs_sha256(lfs) -> str | None:
    if lfs is None:
        return None
    value = getattr(lfs, "sha256", None) or (lfs.get("sha256") if isinstance(lfs, dict) else None)
    return value if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value) else None


def _check_gate(ref: HubRef, token: str | None, endpoint: str, sha: str, entries: list) -> None:
    """A gated repository lists its files to anyone; reading them needs accepted conditions."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(ref.repo_id, entries[0].path, repo_type=ref.type, revision=sha,
                     endpoint=endpoint)
    _call(ref, token, endpoint, lambda: get_hf_file_metadata(url, token=token or False,
                                                             timeout=API_TIMEOUT), None)


# -- errors -----------------------------------------------------------------------------------------
def _call(ref: HubRef, token: str | None, endpoint: str, action, api):
    import httpx2
    from huggingface_hub import errors

    try:
        return action()
    except errors.GatedRepoError:
        raise HubError(f"{_name(ref)} is gated: accept its conditions on the hub and set HF_TOKEN "
                       "to a token of an account with access") from None
    except errors.RevisionNotFoundError:
        raise HubError(f"{_name(ref)}: revision {ref.revision!r} not found") from None
    except errors.DisabledRepoError:
        raise HubError(f"{_name(ref)} has been disabled on the hub") from None
    except errors.RepositoryNotFoundError:
        raise HubError(_not_found(ref, token, api)) from None
    except errors.HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status in (401, 403, 404):
            raise HubError(_not_found(ref, token, api)) from None
        raise HubError(f"{_name(ref)}: the hub answered HTTP {status}") from None
    except errors.OfflineModeIsEnabled:
        raise HubError(_offline_message(ref)) from None
    except errors.HFValidationError as exc:
        raise HubError(f"not a hub repository name: {ref.repo_id} ({exc})") from None
    except httpx2.TimeoutException:
        raise HubError(f"cannot reach {endpoint}: timed out") from None
    except (httpx2.HTTPError, OSError) as exc:
        raise HubError(f"cannot reach {endpoint}: {_short(exc)}") from None


def _not_found(ref: HubRef, token: str | None, api) -> str:
    if ref.revision and ref.revision != DEFAULT_REVISION and api is not None and \
            _revision_exists(api, ref, DEFAULT_REVISION):
        return f"{_name(ref)}: revision {ref.revision!r} not found"
    if token:
        return f"{_name(ref)} not found, or the token in use has no access to it"
    return f"{_name(ref)} not found or private: set HF_TOKEN to scan a private repository"


def _revision_exists(api, ref: HubRef, revision: str) -> bool:
    try:
        api.repo_info(ref.repo_id, repo_type=ref.type, revision=revision, timeout=API_TIMEOUT)
        return True
    except Exception:
        return False


def _offline_message(ref: HubRef) -> str:
    message = f"{_name(ref)}: HF_HUB_OFFLINE is set, so the hub cannot be asked what the revision holds"
    snapshot = cached_snapshot(ref)
    if snapshot:
        message += f"; a cached snapshot of it is in {snapshot} (scan that folder)"
    return message


def _name(ref: HubRef) -> str:
    return f"{ref.type} {ref.repo_id}"


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
