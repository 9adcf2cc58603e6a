"""Heuristic text patterns (YARA-X rules) for shell one-liners, stealers, miners and the like.

The rules live in `malhug/rules/yara/*.yar`; each carries its own id, category, severity and
description in its `meta:` section. A match says a pattern is present, not that it runs: the
caller weighs it against what the surrounding code really does.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import yara_x

from ..findings import Severity
from ..limits import MIB, LimitExceeded

CATEGORIES = {
    "reverse_shell": "hands a shell to a remote peer",
    "download_exec": "fetches a payload and runs it",
    "credential_theft": "reaches for stored credentials or secrets",
    "recon_exfil": "surveys the host or ships data out",
    "command_exec": "runs an operating-system command",
    "persistence": "survives a restart or a new login",
    "crypto_mining": "mines cryptocurrency",
    "poc": "harmless demonstration of code execution",
    "exfil_service": "names a service commonly used to receive stolen data",
    "obfuscation": "hides code from a reader",
    "file_tamper": "destroys files or traces",
    "model_tamper": "changes how models or modules load in the running process",
}

DEFAULT_MAX_BYTES = 16 * MIB
SCAN_TIMEOUT_SECONDS = 20
MATCHED_CHARS = 120

_RULES_PACKAGE = "malhug.rules"
_RULES_FOLDER = "yara"
_ID_SHAPE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*\Z")
_REQUIRED_META = ("id", "category", "severity", "description")


class PatternRuleError(ValueError):
    """A rule file that does not compile or whose metadata is missing or invalid."""


@dataclass(frozen=True)
class PatternMatch:
    rule: str
    category: str
    severity: str
    description: str
    offset: int
    matched: str


@dataclass(frozen=True)
class PatternRule:
    rule: str
    category: str
    severity: str
    description: str


class _Compiled:
    def __init__(self, rules: yara_x.Rules, info: dict[str, PatternRule]):
        self.rules = rules
        self.info = info  # keyed by YARA rule identifier
        self._local = threading.local()

    def scanner(self) -> yara_x.Scanner:
        scanner = getattr(self._local, "scanner", None)
        if scanner is None:
            scanner = yara_x.Scanner(self.rules)
            scanner.set_timeout(SCAN_TIMEOUT_SECONDS)
            scanner.max_matches_per_pattern(1)
            self._local.scanner = scanner
        return scanner


def _rule_sources() -> list[tuple[str, str]]:
    folder = resources.files(_RULES_PACKAGE).joinpath(_RULES_FOLDER)
    files = sorted((entry for entry in folder.iterdir() if entry.name.endswith(".yar")),
                   key=lambda entry: entry.name)
    return [(entry.name, entry.read_text("utf-8")) for entry in files]


def _validate(identifier: str, origin: str, metadata) -> PatternRule:
    meta = {key: _as_text(value) for key, value in metadata}
    where = f"{origin}: rule {identifier}"
    missing = [key for key in _REQUIRED_META if not isinstance(meta.get(key), str) or not meta[key]]
    if missing:
        raise PatternRuleError(f"{where}: missing or non-text meta {', '.join(missing)}")
    if not _ID_SHAPE.match(meta["id"]):
        raise PatternRuleError(f"{where}: id {meta['id']!r} is not lower-case words joined by '-'")
    if meta["category"] not in CATEGORIES:
        raise PatternRuleError(f"{where}: unknown category {meta['category']!r}")
    try:
        severity = Severity.parse(meta["severity"])
    except KeyError:
        raise PatternRuleError(f"{where}: unknown severity {meta['severity']!r}") from None
    if meta["severity"] != str(severity):
        raise PatternRuleError(f"{where}: severity must be written {str(severity)!r}")
    return PatternRule(meta["id"], meta["category"], meta["severity"], meta["description"])


def _as_text(value):
    # escaped characters in a meta string make yara-x hand it over as bytes
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return value


def compile_rules(sources: list[tuple[str, str]]) -> _Compiled:
    """Compile (origin, text) rule sources and check every rule's metadata."""
    compiler = yara_x.Compiler()
    for origin, text in sources:
        try:
            compiler.add_source(text, origin=origin)
        except yara_x.CompileError as error:
            raise PatternRuleError(f"{origin}: {error}") from None
    rules = compiler.build()
    origins = _identifier_origins(sources)
    info: dict[str, PatternRule] = {}
    seen_ids: dict[str, str] = {}
    for rule in rules:
        origin = origins.get(rule.identifier, "?")
        entry = _validate(rule.identifier, origin, rule.metadata)
        if entry.rule in seen_ids:
            raise PatternRuleError(
                f"{origin}: id {entry.rule!r} of rule {rule.identifier} is already used by "
                f"rule {seen_ids[entry.rule]}")
        seen_ids[entry.rule] = rule.identifier
        info[rule.identifier] = entry
    if not info:
        raise PatternRuleError("no pattern rules found")
    return _Compiled(rules, info)


def _identifier_origins(sources: list[tuple[str, str]]) -> dict[str, str]:
    declared = re.compile(r"^\s*(?:private\s+|global\s+)*rule\s+(\w+)", re.MULTILINE)
    return {name: origin for origin, text in sources for name in declared.findall(text)}


@lru_cache(maxsize=1)
def _compiled() -> _Compiled:
    return compile_rules(_rule_sources())


def rule_ids() -> frozenset[str]:
    return frozenset(entry.rule for entry in _compiled().info.values())


def rule_info() -> dict[str, PatternRule]:
    """Metadata of every rule, keyed by rule id."""
    return {entry.rule: entry for entry in _compiled().info.values()}


def scan_bytes(data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> list[PatternMatch]:
    """One match per matching rule (its first match), looking at the first max_bytes only."""
    data = bytes(data[:max(0, max_bytes)])
    compiled = _compiled()
    try:
        results = compiled.scanner().scan(data)
    except yara_x.TimeoutError:
        raise LimitExceeded("pattern_scan_seconds", f"{SCAN_TIMEOUT_SECONDS}s") from None
    found = []
    for rule in results.matching_rules:
        first = _first_match(rule)
        if first is None:
            continue
        offset, matched = _matched_text(data, *first)
        entry = compiled.info[rule.identifier]
        found.append(PatternMatch(entry.rule, entry.category, entry.severity,
                                  entry.description, offset, matched))
    found.sort(key=lambda match: (match.offset, match.rule))
    return found


def scan_text(text: str) -> list[PatternMatch]:
    """Like scan_bytes, with offsets counted in characters of text."""
    data = text.encode("utf-8", errors="surrogatepass")
    return [_char_offset(match, data) for match in scan_bytes(data, max_bytes=len(data))]


def _first_match(rule) -> tuple[int, int] | None:
    spans = [(match.offset, match.length) for pattern in rule.patterns for match in pattern.matches]
    return min(spans) if spans else None


def _matched_text(data: bytes, offset: int, length: int) -> tuple[int, str]:
    raw = data[offset:offset + length]
    stripped = raw.lstrip()
    offset += len(raw) - len(stripped)
    text = stripped.rstrip().decode("utf-8", errors="replace")
    return offset, text[:MATCHED_CHARS]


def _char_offset(match: PatternMatch, data: bytes) -> PatternMatch:
    prefix = data[:match.offset]
    try:
        chars = len(prefix.decode("utf-8", errors="surrogatepass"))
    except UnicodeDecodeError:
        chars = len(prefix.decode("utf-8", errors="replace"))
    return PatternMatch(match.rule, match.category, match.severity, match.description,
                        chars, match.matched)
