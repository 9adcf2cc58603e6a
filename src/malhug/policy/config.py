"""malhug.toml / [tool.malhug]: what a project decides about its scans, read and checked.

Anything malformed is a ConfigError naming the file and the key: a policy that is not
understood is never half applied.
"""
from __future__ import annotations

import dataclasses
import datetime
import os
import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

from ..findings import Finding, Severity
from .globs import check_pattern, path_matches

CONFIG_FILE = "malhug.toml"
PYPROJECT = "pyproject.toml"
FAIL_ON = ("critical", "high", "medium", "low", "suspicious")  # the CLI's --fail-on choices
_LIST_KEYS = ("rules", "exclude_rules", "include", "exclude")
_KEYS = ("fail_on", "min_severity", *_LIST_KEYS, "max_file_size", "timeout", "suppressions", "baseline")
_SUPPRESSION_KEYS = ("rule", "file", "sha256", "member", "reason", "expires")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?|b)?", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}


class ConfigError(ValueError):
    """A configuration or baseline that cannot be used as written (the CLI exits 3)."""


@dataclass(frozen=True)
class Suppression:
    """Accept the findings of `rule` (an id or a glob) in the files `file` (a path glob) or with
    content `sha256`, optionally only in archive member `member` (a glob), for `reason`, until
    `expires` (inclusive)."""

    rule: str
    reason: str
    file: str | None = None
    sha256: str | None = None
    member: str | None = None
    expires: datetime.date | None = None

    @property
    def target(self) -> str:
        return f"file {self.file}" if self.file is not None else f"sha256 {self.sha256}"

    def expired(self, today: datetime.date) -> bool:
        return self.expires is not None and self.expires < today

    def matches(self, finding: Finding, path: str, sha256: str | None) -> bool:
        """path: the finding's file as the policy sees it (relative to the config's folder)."""
        if not fnmatchcase(finding.rule, self.rule):
            return False
        if self.member is not None and not fnmatchcase(finding.location.member or "", self.member):
            return False
        if self.sha256 is not None:
            return sha256 is not None and sha256.lower() == self.sha256
        return path_matches(self.file, path)


@dataclass(frozen=True)
class Config:
    fail_on: str = "suspicious"
    min_severity: Severity | None = None  # shown from this severity on; verdicts are unchanged
    rules: tuple[str, ...] = ()  # only these rule ids or globs count (empty: every rule)
    exclude_rules: tuple[str, ...] = ()  # and never these
    include: tuple[str, ...] = ()  # path globs of the files of folders and repositories to scan
    exclude: tuple[str, ...] = ()
    max_file_size: int | None = None  # bytes; larger files are listed as not analysed
    timeout: float | None = None  # seconds per file
    suppressions: tuple[Suppression, ...] = ()
    baseline: str | None = None  # absolute path of the baseline file
    path: str | None = None  # the file this was read from
    root: str = field(default_factory=os.getcwd)  # suppression globs are relative to this folder

    def merged(self, **cli_values) -> "Config":
        """These values over the file's (the command line wins); None means 'not given'.
        Relative paths (baseline) are taken from the current folder."""
        changes = {}
        for key, value in cli_values.items():
            if key not in _KEYS:
                raise ConfigError(f"unknown option {key!r}")
            if value is None:
                continue
            if key in _LIST_KEYS and isinstance(value, str):
                value = [part.strip() for part in value.split(",") if part.strip()]
            if key == "baseline":
                value = os.path.abspath(os.fspath(value))
            changes[key] = _parse_value(key, value, "command line", os.getcwd())
        return dataclasses.replace(self, **changes)

    def scan_options(self, base=None):
        """The ScanOptions (malhug.scanner) that carry include, exclude, max_file_size and timeout."""
        from ..scanner import ScanOptions

        base = base or ScanOptions()
        changes = {}
        if self.include:
            changes["include"] = self.include
        if self.exclude:
            changes["exclude"] = self.exclude
        if self.max_file_size is not None:
            changes["max_file_size"] = self.max_file_size
        if self.timeout is not None:
            changes["limits"] = base.limits.with_overrides(seconds_per_file=float(self.timeout))
        return dataclasses.replace(base, **changes)

    def selects(self, rule: str) -> bool:
        """Whether findings of this rule count and are shown at all (rules / exclude_rules)."""
        if self.rules and not any(fnmatchcase(rule, glob) for glob in self.rules):
            return False
        return not any(fnmatchcase(rule, glob) for glob in self.exclude_rules)


def load_config(path: str | os.PathLike | None, start_dir: str | os.PathLike) -> Config:
    """The explicit file, else the nearest malhug.toml or pyproject.toml with [tool.malhug] in
    start_dir or its parents (stopping at the git root), else the defaults."""
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"{path}: no such configuration file")
        table = _read(file)
        if file.name == PYPROJECT:
            table = table.get("tool", {}).get("malhug")
            if table is None:
                raise ConfigError(f"{path}: no [tool.malhug] table")
        return _config(table, file)
    found = discover(start_dir)
    if found is None:
        return Config(root=os.path.abspath(start_dir))
    file, table = found
    return _config(table, file)


def discover(start_dir: str | os.PathLike) -> tuple[Path, dict] | None:
    folder = Path(os.path.abspath(start_dir))
    for candidate in [folder, *folder.parents]:
        own = candidate / CONFIG_FILE
        if own.is_file():
            return own, _read(own)
        pyproject = candidate / PYPROJECT
        if pyproject.is_file():
            table = _read(pyproject).get("tool", {}).get("malhug")
            if table is not None:
                return pyproject, table
        if (candidate / ".git").exists():
            return None
    return None


def _read(file: Path) -> dict:
    try:
        with open(file, "rb") as stream:
            return tomllib.load(stream)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror or exc}") from None


def _config(table, file: Path) -> Config:
    where = str(file)
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: the malhug settings must be a table")
    unknown = sorted(set(table) - set(_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(_KEYS)})")
    root = os.path.dirname(os.path.abspath(file))
    values = {key: _parse_value(key, value, where, root) for key, value in table.items()}
    return Config(path=str(file), root=root, **values)


def _parse_value(key: str, value, where: str, root: str):
    def fail(message: str):
        raise ConfigError(f"{where}: {key}: {message}")

    if key == "fail_on":
        if value not in FAIL_ON:
            fail(f"must be one of {', '.join(FAIL_ON)}, not {value!r}")
        return value
    if key == "min_severity":
        if isinstance(value, Severity):
            return value
        try:
            return Severity.parse(value)
        except (KeyError, AttributeError):
            fail(f"must be one of {', '.join(str(s) for s in Severity)}, not {value!r}")
    if key in _LIST_KEYS:
        if not isinstance(value, (list, tuple)):
            fail("must be a list of strings")
        for item in value:
            problem = check_pattern(item)
            if problem:
                fail(problem)
        return tuple(item.strip() for item in value)
    if key == "max_file_size":
        return parse_size(value, fail)
    if key == "timeout":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            fail(f"must be a positive number of seconds, not {value!r}")
        return float(value)
    if key == "baseline":
        if not isinstance(value, str) or not value.strip():
            fail("must be the path of a baseline file")
        return os.path.normpath(os.path.join(root, value))
    if key == "suppressions":
        if not isinstance(value, (list, tuple)):
            fail("must be a list of tables ([[suppressions]])")
        return tuple(_suppression(entry, f"{where}: suppressions[{index}]")
                     for index, entry in enumerate(value))
    fail("unknown key")


def parse_size(value, fail=None) -> int:
    """Bytes from 1048576, "1048576", "100MB", "1.5 GiB", "512k" (units are powers of 1024)."""
    def default_fail(message: str):
        raise ConfigError(f"size: {message}")

    fail = fail or default_fail
    if isinstance(value, bool):
        fail(f"must be a size such as 100MB, not {value!r}")
    if isinstance(value, int):
        if value < 0:
            fail("cannot be negative")
        return value
    if isinstance(value, str):
        match = _SIZE.fullmatch(value.strip())
        if match:
            return int(float(match.group(1)) * _UNITS[(match.group(2) or "").lower()])
    fail(f"must be a size such as 100MB, not {value!r}")


def _suppression(entry, where: str) -> Suppression:
    def fail(message: str):
        raise ConfigError(f"{where}: {message}")

    if not isinstance(entry, dict):
        fail("must be a table with rule, file or sha256, and reason")
    unknown = sorted(set(entry) - set(_SUPPRESSION_KEYS))
    if unknown:
        fail(f"unknown key(s) {', '.join(unknown)} (known: {', '.join(_SUPPRESSION_KEYS)})")
    rule = entry.get("rule")
    if not isinstance(rule, str) or not rule.strip():
        fail("needs a rule (an id such as pickle-unknown-global, or a glob)")
    reason = entry.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        fail("needs a reason: say why these findings are accepted")
    file, sha256 = entry.get("file"), entry.get("sha256")
    if (file is None) == (sha256 is None):
        fail("needs exactly one of file (a path glob) or sha256 (of the file's content)")
    if file is not None and check_pattern(file):
        fail(f"file: {check_pattern(file)}")
    if sha256 is not None and (not isinstance(sha256, str) or not _SHA256.fullmatch(sha256.strip())):
        fail(f"sha256 must be 64 hexadecimal digits, not {sha256!r}")
    member = entry.get("member")
    if member is not None and (not isinstance(member, str) or not member.strip()):
        fail("member must be a non-empty glob")
    return Suppression(rule=rule.strip(), reason=reason.strip(),
                       file=file.strip() if file is not None else None,
                       sha256=sha256.strip().lower() if sha256 is not None else None,
                       member=member, expires=_date(entry.get("expires"), fail))


def _date(value, fail) -> datetime.date | None:
    if value is None:
        return None
    if isinstance(value, datetime.datetime) or not isinstance(value, (str, datetime.date)):
        fail(f"expires must be a date (YYYY-MM-DD), not {value!r}")
    if isinstance(value, datetime.date):
        return value
    if not _DATE.fullmatch(value.strip()):
        fail(f"expires must be a date (YYYY-MM-DD), not {value!r}")
    try:
        return datetime.date.fromisoformat(value.strip())
    except ValueError:
        fail(f"expires is not a real date: {value!r}")
