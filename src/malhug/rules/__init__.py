"""Knowledge kept as data: which callables are dangerous, which rebuild ordinary data."""
from __future__ import annotations

import fnmatch
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from ..findings import Severity

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

CATEGORIES = {
    "command_exec": "runs an operating-system command",
    "code_exec": "runs Python code",
    "import_indirection": "reaches arbitrary objects by name at load time",
    "deserialization": "loads another serialized payload",
    "network": "opens a network connection",
    "file_write": "writes, moves or deletes files",
    "file_read": "reads files or lists directories",
    "recon": "collects facts about the host",
    "tampering": "changes modules or objects of the loading process",
    "code_object": "carries executable code",
    "native_code": "loads native code",
    "unknown_global": "imports a name that is neither known-safe nor known-dangerous",
    "poc": "harmless demonstration of code execution",
}


@dataclass(frozen=True)
class CallableRule:
    pattern: str
    category: str
    severity: Severity
    message: str
    payload_arg: int | None = None  # index of an argument that is itself a serialized payload


@dataclass(frozen=True)
class Classification:
    kind: str  # "dangerous" | "safe" | "unknown"
    qualname: str
    matched: str | None = None  # the dotted name that matched (may be a tail of qualname)
    rule: CallableRule | None = None


_WILDCARDS = "*?["
# No module or attribute chain that a loader can import is this long; longer names are judged
# unknown without trying every glob on them (a crafted pickle repeats names of 100,000s of chars).
MAX_NAME_CHARS = 1024


class _Patterns:
    """Exact names in a dict; glob patterns tried in order, a plain `prefix*` as a string
    prefix and any other glob as a compiled regex (compiling hundreds of regexes would cost
    every scan's start)."""

    def __init__(self, entries):
        self.exact: dict[str, object] = {}
        # globs by their literal first dotted component ("os" for "os.*"); globs whose first
        # component has a wildcard are tried for every name. Each keeps its position, so the
        # first glob in file order still wins.
        self.by_head: dict[str, list[tuple[int, str | re.Pattern, object]]] = {}
        self.anywhere: list[tuple[int, str | re.Pattern, object]] = []
        for index, (pattern, value) in enumerate(entries):
            if not any(ch in pattern for ch in _WILDCARDS):
                self.exact[pattern] = value
                continue
            if pattern.endswith("*") and not any(ch in pattern[:-1] for ch in _WILDCARDS):
                glob = (index, pattern[:-1], value)
            else:
                glob = (index, re.compile(fnmatch.translate(pattern)), value)
            head, dot, _ = pattern.partition(".")
            if dot and not any(ch in head for ch in _WILDCARDS):
                self.by_head.setdefault(head, []).append(glob)
            else:
                self.anywhere.append(glob)
        # each head's globs merged once with those tried for every name, in file order
        for head, bucket in self.by_head.items():
            self.by_head[head] = sorted(bucket + self.anywhere, key=lambda glob: glob[0])

    def lookup(self, name: str):
        if name in self.exact:
            return self.exact[name]
        for _, matcher, value in self.by_head.get(name.partition(".")[0], self.anywhere):
            if name.startswith(matcher) if isinstance(matcher, str) else matcher.match(name):
                return value
        return None


class KnowledgeBase:
    def __init__(self, data: dict):
        self.aliases: dict[str, str] = dict(data.get("aliases", {}))
        self._alias_parts = max((alias.count(".") + 1 for alias in self.aliases), default=0)
        self.rules = [
            CallableRule(
                pattern=entry["match"],
                category=entry["category"],
                severity=Severity.parse(entry["severity"]),
                message=entry["message"],
                payload_arg=entry.get("payload_arg"),
            )
            for entry in data.get("dangerous", [])
        ]
        for rule in self.rules:
            if rule.category not in CATEGORIES:
                raise ValueError(f"unknown category {rule.category!r} for {rule.pattern}")
        self._dangerous = _Patterns((rule.pattern, rule) for rule in self.rules)
        safe = data.get("safe", {})
        self.safe_names: list[str] = list(safe.get("names", []))
        self.safe_class_patterns: list[str] = list(safe.get("classes", []))
        self._safe = _Patterns((name, True) for name in self.safe_names)
        self._safe_classes = _Patterns((name, True) for name in self.safe_class_patterns)

    def unalias(self, name: str) -> str:
        parts = name.split(".")
        # no alias is longer than _alias_parts parts, so no longer prefix can be one
        for length in range(min(len(parts), self._alias_parts), 0, -1):
            prefix = ".".join(parts[:length])
            if prefix in self.aliases:
                return self.aliases[prefix] + name[len(prefix):]
        return name

    def dangerous_rule(self, names: list[str]) -> tuple[str, CallableRule] | None:
        """The most severe dangerous rule matching any of the names a global may really be
        (names longer than MAX_NAME_CHARS name nothing importable and stay unknown)."""
        best = None
        for candidate in names:
            if len(candidate) > MAX_NAME_CHARS:
                continue
            name = self.unalias(candidate)
            rule = self._dangerous.lookup(name)
            if rule is not None and (best is None or rule.severity > best[1].severity):
                best = (name, rule)
        return best

    def is_safe(self, qualname: str) -> bool:
        if len(qualname) > MAX_NAME_CHARS:
            return False
        name = self.unalias(qualname)
        if self._safe.lookup(name):
            return True
        last = name.rsplit(".", 1)[-1]
        return bool(last[:1].isupper() and self._safe_classes.lookup(name))

    def classify(self, module: str, name: str = "") -> Classification:
        """Judge what `GLOBAL module name` would import (name may be dotted, or empty when
        module is already a full dotted name such as `os.system`)."""
        from ..pickle.names import candidates, canonical_name

        if not name and "." in module:
            module, name = module.rsplit(".", 1)
        qualname = canonical_name(module, name)
        found = self.dangerous_rule(candidates(module, name))
        if found is not None:
            return Classification("dangerous", qualname, found[0], found[1])
        if self.is_safe(qualname):
            return Classification("safe", qualname)
        return Classification("unknown", qualname)


@lru_cache(maxsize=1)
def knowledge_base() -> KnowledgeBase:
    text = resources.files(__package__).joinpath("callables.toml").read_text("utf-8")
    return KnowledgeBase(tomllib.loads(text))
