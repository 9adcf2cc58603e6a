"""Judge a pickle trace with the knowledge base: findings, and nested payloads to read next."""
from __future__ import annotations

from dataclasses import dataclass

from ..findings import Finding, Location, Severity
from ..limits import DEFAULT_LIMITS, Limits
from ..rules import KnowledgeBase, knowledge_base
from .decompile import dotted, render_call
from .machine import Trace
from .values import Blob, Call, Const, DictValue, DynamicGlobal, Global, ListValue, Result, SetValue, TupleValue

METHOD_CALLS = {"build", "setitem", "append", "extend", "add"}
CONSTRUCTING_CALLS = {"reduce", "newobj", "newobj_ex", "obj", "inst"}


@dataclass
class NestedPayload:
    """Serialized bytes a call would load: either kept whole or a region of the stream."""

    label: str
    data: bytes | None = None
    offset: int | None = None
    length: int | None = None


@dataclass
class TraceVerdict:
    findings: list
    nested: list


def check_trace(trace: Trace, location: Location, limits: Limits = DEFAULT_LIMITS,
                kb: KnowledgeBase | None = None) -> TraceVerdict:
    kb = kb or knowledge_base()
    findings: list[Finding] = []
    nested: list[NestedPayload] = []
    uses = _first_uses(trace)

    def at(offset: int) -> Location:
        return Location(location.file, location.member, offset)

    seen: set[str] = set()
    for glob in trace.globals:
        if isinstance(glob, DynamicGlobal):
            findings.append(Finding(
                "pickle-dynamic-import", Severity.HIGH, "import_indirection",
                "imports a name computed at load time (hides what is imported)",
                at(glob.offset), _evidence(uses.get(id(glob)), limits, "getattr(__import__(...), ...)"),
            ))
            continue
        if glob.qualname in seen:
            continue
        seen.add(glob.qualname)
        verdict = kb.classify(glob.module, glob.name)
        call = uses.get(id(glob))
        verb = "calls" if call is not None and call.func is glob else "imports"
        via = "" if glob.opcode in ("GLOBAL", "STACK_GLOBAL") else f" (through {glob.opcode})"
        if verdict.kind == "dangerous":
            rule = verdict.rule
            shown = verdict.matched if verdict.matched == verdict.qualname else f"{verdict.qualname} (= {verdict.matched})"
            findings.append(Finding(
                "pickle-dangerous-callable", rule.severity, rule.category,
                f"{verb} {shown}{via}: {rule.message}",
                at(call.offset if call else glob.offset), _evidence(call, limits, dotted(glob.qualname)),
            ))
        elif verdict.kind == "unknown":
            findings.append(Finding(
                "pickle-unknown-global", Severity.MEDIUM, "unknown_global",
                f"{verb} {glob.qualname}{via}, which is not known to be safe",
                at(call.offset if call else glob.offset), _evidence(call, limits, dotted(glob.qualname)),
            ))
        elif glob.opcode == "EXT":
            findings.append(Finding(
                "pickle-extension-import", Severity.MEDIUM, "import_indirection",
                f"imports {glob.qualname} through an extension code", at(glob.offset), dotted(glob.qualname),
            ))

    for call in trace.calls:
        target = call.func
        if call.kind in METHOD_CALLS and isinstance(target, (Global, DynamicGlobal)):
            name = target.qualname if isinstance(target, Global) else "an imported object"
            findings.append(Finding(
                "pickle-object-tampering", Severity.HIGH, "tampering",
                f"changes {name} in the loading process ({call.method})",
                at(call.offset), render_call(call, limits),
            ))
        elif call.kind in CONSTRUCTING_CALLS and isinstance(target, Result):
            findings.append(Finding(
                "pickle-indirect-call", Severity.MEDIUM, "import_indirection",
                "calls a value computed at load time", at(call.offset), render_call(call, limits),
            ))
        if isinstance(target, Global):
            payload = _payload(call, target, kb)
            if payload is not None:
                nested.append(payload)

    for anomaly in trace.anomalies:
        findings.append(Finding("pickle-anomaly", Severity.INFO, "unknown_global", anomaly.message,
                                at(anomaly.offset), ""))
    hostile = _hostile_shape(trace)
    if hostile:
        findings.append(Finding("hostile-shape", Severity.MEDIUM, "tampering",
                                f"input built to exhaust a scanner or loader ({hostile})",
                                at(trace.start_offset), ""))
    return TraceVerdict(findings, nested)


# pickle.dumps cannot nest deeper than the recursion limit (1000 by default), and shares a
# value only where the data shares it: deeper nesting, or references that expand to vastly
# more values than the stream has opcodes (a billion laughs), are written by hand
MAX_VALUE_DEPTH = 10_000
MAX_EXPANSION = 10_000_000
EXPANSION_PER_OPCODE = 100
SHAPE_WORK = 4_000_000  # container items looked at before the shape is left unjudged


def _hostile_shape(trace: Trace) -> str | None:
    roots = list(trace.results) + [arg for call in trace.calls for arg in call.args]
    shape = _shape(roots)
    if shape is None:
        return None
    expanded, depth = shape
    if depth > MAX_VALUE_DEPTH:
        return f"values nested {depth} deep"
    if expanded > MAX_EXPANSION and expanded > EXPANSION_PER_OPCODE * max(trace.opcodes, 1):
        return f"shared references expand to {expanded:.3g} values from {trace.opcodes} opcodes"
    return None


def _children(value) -> tuple:
    if isinstance(value, (ListValue, TupleValue, SetValue)):
        return tuple(value.items)
    if isinstance(value, DictValue):
        return tuple(part for pair in value.items for part in pair)
    if isinstance(value, Result):
        return tuple(value.call.args) + tuple(v for pair in value.call.kwargs for v in pair)
    return ()


_CONTAINERS = (ListValue, TupleValue, SetValue, DictValue, Result)


def _shape(roots: list) -> tuple[int, int] | None:
    """(values the roots expand to when every reference is copied, deepest nesting), walking
    each container once; None when that is more work than SHAPE_WORK. Values hash by identity."""
    size: dict = {}
    depth: dict = {}
    pending: dict = {}  # being walked -> its children; a reference back to one is a cycle
    work = 0
    total, deepest = 0, 0
    for root in roots:
        if not isinstance(root, _CONTAINERS):
            total += 1
            continue
        stack = [root]
        while stack:
            value = stack[-1]
            if value in size:
                stack.pop()
                continue
            children = pending.pop(value, None)
            if children is not None:
                stack.pop()
                own_size, own_depth = 1, 0
                for child in children:
                    own_size += size.get(child, 1)
                    child_depth = depth.get(child, 0)
                    if child_depth > own_depth:
                        own_depth = child_depth
                size[value] = own_size if own_size < 1 << 62 else 1 << 62
                depth[value] = own_depth + 1
                continue
            children = _children(value)
            pending[value] = children
            work += len(children) + 1
            if work > SHAPE_WORK:
                return None
            for child in children:
                if isinstance(child, _CONTAINERS) and child not in size and child not in pending:
                    stack.append(child)
        total = min(total + size[root], 1 << 62)
        deepest = max(deepest, depth[root])
    return total, deepest


def _first_uses(trace: Trace) -> dict[int, Call]:
    """For each global, the first call that calls it, or else the first that passes it along."""
    called: dict[int, Call] = {}
    passed: dict[int, Call] = {}
    for call in trace.calls:
        if isinstance(call.func, (Global, DynamicGlobal)):
            called.setdefault(id(call.func), call)
        for value in _shallow(call.args):
            if isinstance(value, (Global, DynamicGlobal)):
                passed.setdefault(id(value), call)
    return {**passed, **called}


def _shallow(values, depth: int = 2):
    """Values in the arguments, looking two container levels deep (bounded work per call)."""
    for value in values[:64]:
        yield value
        if depth <= 0:
            continue
        if isinstance(value, (ListValue, TupleValue, SetValue)):
            yield from _shallow(tuple(value.items[:64]), depth - 1)
        elif isinstance(value, DictValue):
            for key, item in value.items[:64]:
                yield key
                yield from _shallow((item,), depth - 1)


def _evidence(call: Call | None, limits: Limits, fallback: str) -> str:
    return render_call(call, limits) if call is not None else fallback


def _payload(call: Call, func: Global, kb: KnowledgeBase) -> NestedPayload | None:
    verdict = kb.classify(func.module, func.name)
    rule = verdict.rule
    if rule is None or rule.payload_arg is None or call.kind not in CONSTRUCTING_CALLS:
        return None
    if rule.payload_arg >= len(call.args):
        return None
    value = call.args[rule.payload_arg]
    label = f"{verdict.matched} argument @{call.offset}"
    if isinstance(value, Blob):
        return NestedPayload(label, offset=value.offset, length=value.length)
    data = constant_bytes(value)
    return NestedPayload(label, data=data) if data is not None else None


_TEXT_CODECS = {"latin1": "latin-1", "latin-1": "latin-1", "iso-8859-1": "latin-1",
                "utf-8": "utf-8", "utf8": "utf-8", "ascii": "ascii"}


def constant_bytes(value) -> bytes | None:
    """The bytes a value certainly holds, folding the encodings pickle itself uses."""
    if isinstance(value, Const):
        if isinstance(value.value, (bytes, bytearray)):
            return bytes(value.value)
        if isinstance(value.value, str):
            return value.value.encode("latin-1", "replace")
    if isinstance(value, Result) and isinstance(value.call.func, Global):
        name = value.call.func.qualname.replace("_codecs.", "codecs.")
        args = value.call.args
        if name == "codecs.encode" and args and isinstance(args[0], Const) and isinstance(args[0].value, str):
            encoding = args[1].value if len(args) > 1 and isinstance(args[1], Const) else "utf-8"
            codec = _TEXT_CODECS.get(str(encoding).lower().replace("_", "-"))
            if codec is None:  # never look a codec up by a name the input chose
                return None
            try:
                return args[0].value.encode(codec)
            except UnicodeEncodeError:
                return None
        if name in ("builtins.bytes", "builtins.bytearray") and args:
            return constant_bytes(args[0])
    return None

