"""Path globs with gitignore-like meaning, shared by include/exclude and suppressions.

A pattern is split on '/'; '*', '?' and '[...]' match within one path segment and '**' matches
any number of segments (none included). A pattern that does not start with '/' matches any run
of consecutive segments of the path: `*.pkl` matches `a/b/x.pkl`, `fixtures` matches every file
under any folder named `fixtures`, `models/*.bin` matches `org/models/x.bin`. A leading '/'
anchors the pattern at the start of the path (`/vendor` is the top folder only).
"""
from __future__ import annotations

from fnmatch import fnmatchcase
from functools import lru_cache


def path_matches(pattern: str, path: str) -> bool:
    anchored = pattern.startswith("/")
    parts = _pattern_parts(pattern)
    if not parts:
        return False
    segments = _path_segments(path)
    starts = (0,) if anchored else range(len(segments))
    for start in starts:
        for end in range(start + 1, len(segments) + 1):
            if _match(parts, tuple(segments[start:end])):
                return True
    return False


def any_match(patterns, path: str) -> bool:
    return any(path_matches(pattern, path) for pattern in patterns)


def check_pattern(pattern) -> str | None:
    """Why a glob is unusable, or None."""
    if not isinstance(pattern, str) or not pattern.strip():
        return "a glob must be a non-empty string"
    if not _pattern_parts(pattern):
        return f"glob {pattern!r} matches nothing"
    return None


@lru_cache(maxsize=1024)
def _pattern_parts(pattern: str) -> tuple[str, ...]:
    return tuple(part for part in pattern.strip().replace("\\", "/").split("/") if part and part != ".")


def _path_segments(path: str) -> list[str]:
    return [part for part in path.replace("\\", "/").split("/") if part and part != "."]


def _match(parts: tuple[str, ...], segments: tuple[str, ...]) -> bool:
    if not parts:
        return not segments
    head, rest = parts[0], parts[1:]
    if head == "**":
        return any(_match(rest, segments[skip:]) for skip in range(len(segments) + 1))
    return bool(segments) and fnmatchcase(segments[0], head) and _match(rest, segments[1:])
