"""One module per output format; each turns a Report into text."""
from __future__ import annotations

from ..findings import Report

FORMATS = ("text", "json", "sarif", "html", "markdown")


def render(report: Report, fmt: str, **options) -> str:
    if fmt == "json":
        from .json_report import render_json
        return render_json(report)
    if fmt == "text":
        from .text_report import render_text
        return render_text(report, **options)
    if fmt == "sarif":
        from .sarif import render_sarif
        return render_sarif(report, **options)
    if fmt == "html":
        from .html import render_html
        return render_html(report)
    if fmt == "markdown":
        from .markdown import render_markdown
        return render_markdown(report)
    raise ValueError(f"unknown format {fmt!r}")
