"""`malhug explain`: show the code inside one file, with the findings on the lines they concern.

A pickle (or a pickle member of a zip or PyTorch file) is shown as the whole program its load
would run; a Python source or notebook as its source; a GGUF file, tokenizer_config.json or a
Jinja file as its chat templates. Nothing is run: the file is scanned as `malhug scan` does,
keeping the pickle traces, and the rest is read as text."""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

from .findings import FileResult, Finding
from .limits import DEFAULT_LIMITS, Limits
from .report.text_report import safe

EXPLAIN_LITERAL = 64 * 1024  # characters of a literal shown before it is cut
EXPLAIN_CHARS = 4 * 1024 * 1024  # of a whole program
MAX_SOURCE_BYTES = 16 * 1024 * 1024
SOURCE_FORMATS = ("python", "torchscript_code", "template")


@dataclass
class Section:
    """One listing: a title, numbered lines, and the findings placed on them."""

    title: str
    lines: list[str]
    marks: dict = field(default_factory=dict)  # line number -> [Finding]
    unplaced: list = field(default_factory=list)  # findings that concern this listing, no line
    note: str = ""


@dataclass
class Explanation:
    result: FileResult
    member: str | None
    sections: list[Section]

    def render(self) -> str:
        return render_explanation(self)


def split_target(spec: str) -> tuple[str, str | None]:
    """FILE or FILE:MEMBER (the longest prefix that is a file names the file)."""
    if os.path.exists(spec):
        return spec, None
    parts = spec.split(":")
    for cut in range(len(parts) - 1, 0, -1):
        head = ":".join(parts[:cut])
        if os.path.isfile(head):
            return head, ":".join(parts[cut:])
    raise ValueError(f"{spec}: no such file")


def explain(spec: str, limits: Limits = DEFAULT_LIMITS) -> Explanation:
    from .scanner import ScanOptions, scan_file

    path, member = split_target(spec)
    if os.path.isdir(path):
        raise ValueError(f"{path}: explain takes a file, not a folder")
    result = scan_file(path, ScanOptions(limits=limits, keep_traces=True, cache=None, memo=None))
    traces = getattr(result, "traces", {}) or {}
    if member is not None:
        member = _resolve_member(member, result, traces)
    sections = _pickle_sections(result, traces, member, limits)
    if not sections:
        sections = _text_sections(path, result, member)
    return Explanation(result, member, sections)


def _members_of(result: FileResult, traces: dict) -> set[str]:
    names = {m.name for m in result.members if m.name != "(file)"} | {k for k in traces if k}
    names |= {f.location.member for f in result.findings if f.location.member}
    names |= {p.location.member for p in result.problems if p.location.member}
    return names


def _resolve_member(member: str, result: FileResult, traces: dict) -> str:
    known = _members_of(result, traces)
    if member in known:
        return member
    ends = sorted(name for name in known if name.endswith("/" + member) or name.endswith(":" + member))
    if len(ends) == 1:
        return ends[0]
    if "/" in member:  # the top folder of a PyTorch archive is named after the file it was saved as
        tail = member.split("/", 1)[1]
        same = sorted(name for name in known if "/" in name and name.split("/", 1)[1] == tail)
        if len(same) == 1:
            return same[0]
    listing = ", ".join(sorted(known)[:20]) or "none"
    raise ValueError(f"{result.path} has no member {member!r} (members: {listing})")


def _concerns(finding_member: str | None, member: str) -> bool:
    return (finding_member or "") == member


# ---- pickles ----

def _pickle_sections(result: FileResult, traces: dict, member: str | None, limits: Limits) -> list[Section]:
    if member is not None:
        keys = [member] if member in traces else []
    else:
        keys = sorted(traces, key=lambda k: (k != "", k))
    return [_pickle_section(result, key, traces[key], limits) for key in keys]


def _pickle_section(result: FileResult, key: str, trace, limits: Limits) -> Section:
    from .pickle.decompile import Renderer, _import_of
    from .pickle.values import Global

    program = Renderer(limits, max_literal=EXPLAIN_LITERAL).program(trace, EXPLAIN_CHARS)
    lines = program.source.rstrip("\n").split("\n") if program.source.strip() else []
    by_offset: dict[int, int] = {}
    for call, (line, offset) in zip(trace.calls, program.lines):
        by_offset.setdefault(offset, line)
        callee_offset = getattr(call.func, "offset", None)
        if isinstance(callee_offset, int):
            by_offset.setdefault(callee_offset, line)
    imports = {text[len("import "):]: number for number, text in enumerate(lines, 1) if text.startswith("import ")}
    for glob in trace.globals:
        if isinstance(glob, Global) and glob.offset not in by_offset:
            line = imports.get(_import_of(glob.qualname) or "")
            if line is not None:
                by_offset[glob.offset] = line
    section = Section(f"{result.path}{':' + key if key else ''}: the program loading this pickle runs",
                      lines)
    for finding in result.findings:
        if not _concerns(finding.location.member, key):
            continue
        line = by_offset.get(finding.location.offset) if finding.location.offset is not None else None
        if line is None:
            section.unplaced.append(finding)
        else:
            section.marks.setdefault(line, []).append(finding)
    facts = [f"{len(trace.calls)} call(s)", f"{trace.opcodes} opcode(s)", f"protocol {trace.protocol}"]
    if program.truncated:
        facts.append("program cut: too long to show whole")
    if trace.error:
        facts.append(f"stream broken at offset {trace.error_offset}: {trace.error}")
    section.note = ", ".join(facts)
    return section


# ---- sources, notebooks, templates ----

def _text_sections(path: str, result: FileResult, member: str | None) -> list[Section]:
    if member is None:
        if result.format in SOURCE_FORMATS:
            return [_source_section(path, result)]
        if result.format == "notebook":
            return _notebook_sections(path, result)
        if result.format == "gguf":
            return _gguf_sections(path, result)
        if result.format in ("json", "text"):
            return _json_template_sections(path, result)
    return []


def _read_text(path: str) -> str:
    with open(path, "rb") as stream:
        raw = stream.read(MAX_SOURCE_BYTES + 1)
    if len(raw) > MAX_SOURCE_BYTES:
        raise ValueError(f"{path}: larger than {MAX_SOURCE_BYTES} bytes, too large to list")
    return raw.decode("utf-8-sig", "replace")


def _place_by_line(section: Section, findings) -> None:
    for finding in findings:
        line = finding.location.line
        if line is not None and 1 <= line <= len(section.lines):
            section.marks.setdefault(line, []).append(finding)
        else:
            section.unplaced.append(finding)


def _source_section(path: str, result: FileResult) -> Section:
    section = Section(f"{result.path}: {result.format} source", _read_text(path).splitlines())
    _place_by_line(section, [f for f in result.findings if not f.location.member])
    return section


_CELL = re.compile(r"notebook cell (\d+)")


def _notebook_sections(path: str, result: FileResult) -> list[Section]:
    try:
        cells = json.loads(_read_text(path)).get("cells", [])
    except (ValueError, AttributeError):
        return []
    per_cell: dict[int, list[Finding]] = {}
    loose = []
    for finding in result.findings:
        match = _CELL.search(finding.message)
        if match and not finding.location.member:
            per_cell.setdefault(int(match.group(1)), []).append(finding)
        else:
            loose.append(finding)
    sections = []
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        section = Section(f"{result.path}: notebook cell {index}", source.splitlines())
        _place_by_line(section, per_cell.pop(index, []))
        sections.append(section)
    if sections:
        sections[-1].unplaced.extend(loose + [f for rest in per_cell.values() for f in rest])
    return sections


def _template_section(result: FileResult, name: str, text: str, where: str) -> Section:
    section = Section(f"{result.path}: {where}", text.splitlines())
    _place_by_line(section, [f for f in result.findings if (f.location.member or "") == name])
    return section


def _json_template_sections(path: str, result: FileResult) -> list[Section]:
    try:
        from .formats.json_files import TEMPLATE_KEY, _named_templates
        from .formats.base import ScanContext
    except ImportError:
        return []
    try:
        data = json.loads(_read_text(path))
    except ValueError:
        return []
    if not isinstance(data, dict) or TEMPLATE_KEY not in data:
        return []
    sections = []
    for name, source in _named_templates(data[TEMPLATE_KEY], ScanContext(path), None):
        label = TEMPLATE_KEY if name is None else f"{TEMPLATE_KEY}.{name}"
        sections.append(_template_section(result, label, source, f"chat template {label}"))
    return sections


def _gguf_sections(path: str, result: FileResult) -> list[Section]:
    """The chat templates of a GGUF file's metadata, read with the GGUF reader (never rendered)."""
    from .formats.gguf import chat_templates

    try:
        with open(path, "rb") as stream:
            templates = chat_templates(stream, path)
    except OSError:
        return []
    return [_template_section(result, key, text, f"GGUF chat template {key}") for key, text in templates]


# ---- rendering ----

def _finding_text(finding: Finding) -> str:
    where = finding.location
    at = f" @{where.offset}" if where.offset is not None else ""
    return f"[{finding.severity}] {finding.rule} ({finding.category}): {finding.message}{at}"


def _section_text(section: Section) -> list[str]:
    out = [f"== {safe(section.title)} =="]
    if section.note:
        out.append(f"   ({safe(section.note)})")
    width = max(len(str(len(section.lines))), 3)
    for number, line in enumerate(section.lines, 1):
        marks = section.marks.get(number, [])
        out.append(f"{'>' if marks else ' '} {number:>{width}}  {safe(line)}")
        for finding in sorted(marks, key=lambda f: -f.severity):
            out.append(f"  {' ' * width}  ^ {safe(_finding_text(finding))}")
    if not section.lines:
        out.append("   (empty)")
    for finding in sorted(section.unplaced, key=lambda f: -f.severity):
        out.append(f"  * {safe(_finding_text(finding))}")
        if finding.evidence:
            out.append(f"      {safe(finding.evidence)}")
    return out


def render_explanation(explanation: Explanation) -> str:
    result = explanation.result
    out: list[str] = []
    shown: set[int] = set()
    for section in explanation.sections:
        out.extend(_section_text(section))
        out.append("")
        shown.update(id(f) for marks in section.marks.values() for f in marks)
        shown.update(id(f) for f in section.unplaced)
    rest = [f for f in result.findings if id(f) not in shown and
            (explanation.member is None or _inside(f.location.member, explanation.member))]
    problems = [p for p in result.problems if explanation.member is None or
                _inside(p.location.member, explanation.member)]
    if not explanation.sections:
        out.append(f"== {safe(result.path)}"
                   f"{':' + safe(explanation.member) if explanation.member else ''} ({safe(result.format)}): "
                   "no code listing for this format; its findings ==")
    elif rest:
        out.append("== other findings ==")
    for finding in sorted(rest, key=lambda f: -f.severity):
        out.append(f"  * {safe(_finding_text(finding))}")
        out.append(f"      at {safe(finding.location.describe())}")
        if finding.evidence:
            out.append(f"      {safe(finding.evidence)}")
    if problems:
        out.append("== not fully read (inconclusive) ==")
    for problem in problems:
        out.append(f"  * {safe(problem.reason)}")
        out.append(f"      at {safe(problem.location.describe())}")
    out.append(f"{safe(result.path)}: {str(result.verdict).upper()} ({safe(result.format)}); "
               f"{len(result.findings)} finding(s), {len(result.problems)} problem(s)")
    return "\n".join(out) + "\n"


def _inside(location_member: str | None, member: str) -> bool:
    name = location_member or ""
    return name == member or name.startswith(member + ":")

