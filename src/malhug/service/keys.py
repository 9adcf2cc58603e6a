"""Keys that make a file's content scanned once, ever, per malhug version and knowledge.

content key: what the bytes are, independent of where they live: `sha256:<hex>` when the
    sha256 is known (LFS metadata, or hashed locally), else `git:<blob id>` (the git object id
    of the blob, which the hub and every git mirror give for free).
fingerprint: what decides a verdict: malhug's version and the digest of its rules, engine
    sources and limits (`malhug.cache.knowledge_digest`). A changed rule changes it, so every
    stored result under the old fingerprint becomes stale and is re-scanned.
result key: content key + the name's suffix (a text file is read as Python when its name ends
    in .py) + fingerprint. A task's result is stored under it, so a redelivered task is harmless.
"""
from __future__ import annotations

import hashlib
import re
from functools import lru_cache

from .. import __version__
from ..cache import knowledge_digest
from ..limits import DEFAULT_LIMITS, Limits

_SHA256 = re.compile(r"[0-9a-f]{64}")
_SHA1 = re.compile(r"[0-9a-f]{40}")
_SUFFIX = re.compile(r"\.([A-Za-z0-9_-]{1,16})$")


def content_key(sha256: str | None = None, blob_id: str | None = None) -> str:
    """The content key from whichever identity is known; sha256 wins."""
    if sha256 and _SHA256.fullmatch(sha256.lower()):
        return "sha256:" + sha256.lower()
    if blob_id and (_SHA1.fullmatch(blob_id.lower()) or _SHA256.fullmatch(blob_id.lower())):
        return "git:" + blob_id.lower()
    raise ValueError("a content key needs a sha256 or a git blob id")


def git_blob_id(data: bytes) -> str:
    """The git (sha1) object id of a blob with these bytes."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def name_class(path: str) -> str:
    """The part of a file's name that can change how it is read: its lower-cased suffix."""
    match = _SUFFIX.search(path.rsplit("/", 1)[-1])
    return match.group(1).lower() if match else ""


@lru_cache(maxsize=8)
def fingerprint(limits: Limits = DEFAULT_LIMITS) -> str:
    """malhug's version and the digest of everything that decides a verdict."""
    return f"{__version__}+{knowledge_digest(limits)[:16]}"


def result_key(content: str, path: str, print_: str | None = None) -> str:
    return f"{content}|{name_class(path)}|{print_ or fingerprint()}"
