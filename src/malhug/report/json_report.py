"""The JSON report (schema documented in docs/json-report.md; fields are only ever added)."""
from __future__ import annotations

import json

from ..findings import Report

SCHEMA_VERSION = 1


def report_dict(report: Report) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "malhug", "version": report.tool_version},
        "targets": list(report.targets),
        "repositories": [repository.to_dict() for repository in report.repositories],
        "files": [file.to_dict() for file in report.files],
        "summary": report.summary(),
    }


def render_json(report: Report) -> str:
    return json.dumps(report_dict(report), indent=2, ensure_ascii=False) + "\n"
