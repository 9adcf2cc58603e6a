"""The data-flow knowledge (rules/flows.toml) in a form the interpreter can query quickly."""
from __future__ import annotations

import fnmatch
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _glob_regex(patterns) -> re.Pattern | None:
    patterns = list(patterns)
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns), re.IGNORECASE)


@dataclass(frozen=True)
class FlowKnowledge:
    sources_exact: dict
    sources_globs: tuple
    secret_paths: re.Pattern | None
    secret_env: re.Pattern | None
    persistence_paths: re.Pattern | None
    sensitive_paths: re.Pattern | None
    spawners: dict
    path_sources: dict
    code_strings: dict
    tamper_targets: re.Pattern | None
    local_arguments: dict
    egress: re.Pattern | None

    def source(self, name: str) -> str | None:
        if name in self.sources_exact:
            return self.sources_exact[name]
        for regex, label in self.sources_globs:
            if regex.match(name):
                return label
        return None

    @staticmethod
    def _matches(regex, text: str) -> bool:
        return bool(regex and regex.match(text.replace("\\\\", "\\")))

    def is_secret_path(self, path: str) -> bool:
        return self._matches(self.secret_paths, path)

    def is_secret_env(self, name: str) -> bool:
        return self._matches(self.secret_env, name)

    def is_persistence_path(self, path: str) -> bool:
        return self._matches(self.persistence_paths, path)

    def is_sensitive_path(self, path: str) -> bool:
        return self._matches(self.sensitive_paths, path)

    def is_egress(self, name: str) -> bool:
        return self._matches(self.egress, name)

    def is_tamper_target(self, name: str) -> bool:
        return self._matches(self.tamper_targets, name)


def load_flows(data: dict) -> FlowKnowledge:
    sources = data.get("sources", {})
    exact = {k: v for k, v in sources.items() if not any(c in k for c in "*?[")}
    globs = tuple((re.compile(fnmatch.translate(k)), v) for k, v in sources.items() if k not in exact)
    return FlowKnowledge(
        sources_exact=exact,
        sources_globs=globs,
        secret_paths=_glob_regex(data.get("secret_paths", {}).get("patterns", [])),
        secret_env=_glob_regex(data.get("secret_env", {}).get("patterns", [])),
        persistence_paths=_glob_regex(data.get("persistence_paths", {}).get("patterns", [])),
        sensitive_paths=_glob_regex(data.get("sensitive_paths", {}).get("patterns", [])),
        spawners=dict(data.get("spawners", {})),
        path_sources=dict(data.get("path_sources", {})),
        code_strings=dict(data.get("code_strings", {})),
        tamper_targets=_glob_regex(data.get("tamper_targets", {}).get("patterns", [])),
        local_arguments={k: tuple(v) for k, v in data.get("local_arguments", {}).items()},
        egress=_glob_regex(data.get("egress", {}).get("patterns", [])),
    )


@lru_cache(maxsize=1)
def flow_knowledge() -> FlowKnowledge:
    text = resources.files("malhug.rules").joinpath("flows.toml").read_text("utf-8")
    return load_flows(tomllib.loads(text))
