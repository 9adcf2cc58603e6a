"""A project's policy over its scans: configuration (malhug.toml or [tool.malhug] in
pyproject.toml), suppressions, baselines, rule selection and what is shown.

    config = load_config(args.config, os.getcwd()).merged(fail_on=args.fail_on, ...)
    report = scan_paths(targets, config.scan_options(options))
    report, warnings = apply(report, config)
"""
from __future__ import annotations

from .baseline import Baseline, load_baseline, policy_path, write_baseline
from .config import FAIL_ON, Config, ConfigError, Suppression, load_config, parse_size
from .enforce import PolicyResult, apply, visible
from .globs import path_matches

__all__ = [
    "Baseline", "Config", "ConfigError", "FAIL_ON", "PolicyResult", "Suppression", "apply",
    "load_baseline", "load_config", "parse_size", "path_matches", "policy_path", "visible",
    "write_baseline",
]
