"""pip requirement files: what a repository asks to have installed, and from where.

Installing a package from anywhere but the package index runs whatever setup code that
place serves, so every source outside the index is a finding. Names from the index are not
judged here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# Options that name where packages come from (short and long spellings).
INDEX_OPTIONS = {
    "-i": "index", "--index-url": "index", "--extra-index-url": "extra index",
    "-f": "find-links", "--find-links": "find-links",
}
INCLUDE_OPTIONS = {"-r", "--requirement", "-c", "--constraint"}
EDITABLE_OPTIONS = {"-e", "--editable"}
URL_SCHEME = re.compile(r"^(?:git|hg|svn|bzr)\+[a-z]+://|^[a-z][a-z0-9+.-]*://|^file:", re.I)
NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?(?:\s*\[[^\]]*\])?\s*"
                  r"(?:(?:===|==|!=|<=|>=|~=|<|>)\s*[^\s,;]+\s*(?:,\s*(?:===|==|!=|<=|>=|~=|<|>)\s*[^\s,;]+\s*)*)?$")
ARCHIVE_SUFFIXES = (".whl", ".tar.gz", ".tgz", ".tar.bz2", ".zip", ".egg")


@dataclass(frozen=True)
class Requirement:
    line: int
    text: str  # the logical line, comments removed
    source: str | None  # where it installs from, when that is not the package index
    include: str | None = None  # a file named by -r / -c
    unparsed: bool = False


def parse_requirements(text: str) -> list[Requirement]:
    """Every logical line of a requirements file, with what it installs from."""
    entries = []
    for number, line in _logical_lines(text):
        entry = _parse_line(number, line)
        if entry is not None:
            entries.append(entry)
    return entries


def _logical_lines(text: str):
    pending, start = "", None
    for number, raw in enumerate(text.splitlines(), 1):
        line = _strip_comment(raw)
        if start is None:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield start, (pending + line).strip()
        pending, start = "", None
    if pending.strip():
        yield start, pending.strip()


def _strip_comment(line: str) -> str:
    if line.lstrip().startswith("#"):
        return ""
    match = re.search(r"\s#", line)
    return (line[:match.start()] if match else line).rstrip()


def _parse_line(number: int, line: str) -> Requirement | None:
    if not line:
        return None
    option, value = _option(line)
    if option in INDEX_OPTIONS:
        return Requirement(number, line, f"{INDEX_OPTIONS[option]} {value}".strip())
    if option in INCLUDE_OPTIONS:
        if value and URL_SCHEME.match(value):
            return Requirement(number, line, value)
        return Requirement(number, line, None, include=value or None)
    if option in EDITABLE_OPTIONS:
        return Requirement(number, line, _describe_source(value) or value or "an editable install")
    if option is not None:
        return None  # --pre, --no-binary, --trusted-host ... change how, not where
    requirement = re.split(r"\s+--?[A-Za-z]", line, maxsplit=1)[0].strip()  # per-line --hash=...
    source = _describe_source(requirement)
    if source:
        return Requirement(number, line, source)
    if NAME.match(requirement.split(";", 1)[0].strip()):
        return Requirement(number, line, None)
    return Requirement(number, line, None, unparsed=True)


def _option(line: str) -> tuple[str | None, str]:
    """The option a line starts with and its first value (`--opt=v`, `--opt v`, `-ov`, `-o v`)."""
    if not line.startswith("-"):
        return None, ""
    if line.startswith("--"):
        match = re.match(r"^(--[\w-]*)(.*)$", line)
        name, rest = match.group(1), match.group(2)
    else:
        name, rest = line[:2], line[2:]
    value = rest.lstrip("= \t").split()
    return name, value[0] if value else ""


def _describe_source(requirement: str) -> str | None:
    """The URL or path a requirement installs from, or None for a plain index name."""
    if "@" in requirement:
        name, _, target = requirement.partition("@")
        if NAME.match(name.strip()) and target.strip():
            return target.strip().split(";", 1)[0].strip()
    if URL_SCHEME.match(requirement):
        return requirement.split(";", 1)[0].strip()
    head = requirement.split(";", 1)[0].strip()
    if head.startswith((".", "/", "~", "\\")) or "/" in head or "\\" in head or \
            re.match(r"^[A-Za-z]:[\\/]", head) or head.lower().endswith(ARCHIVE_SUFFIXES):
        return head
    return None
