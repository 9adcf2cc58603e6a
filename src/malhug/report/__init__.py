"""One module per output format; each turns a Report into text."""
from __future__ import annotations

from ..findings import Report


def render(report: Report, fmt: str, **options) -> str:
    if fmt == "json":
        from .json_report import render_json
        return render_json(report)
    if fmt == "text":
        from .text_report import render_text
        return render_text(report, **options)
    raise ValueError(f"unknown format {fmt!r}")


FORMATS = ("text", "json")
