"""Jinja templates (chat templates of tokenizer configs, GGUF metadata, `.jinja` files): parsed,
never rendered, and walked for expressions that climb from template values into Python.

A chat template only formats messages. One that reads `__class__`, `__globals__` or `os` is a
server-side template injection: rendered by an engine outside a sandbox, it runs code.
"""
from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from functools import lru_cache
from typing import BinaryIO

from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..findings import Finding, Severity
from ..limits import MIB
from .base import ScanContext

MAX_TEMPLATE_BYTES = 4 * MIB
MAX_FOLD_CHARS = 512  # a folded string longer than this is no attribute name
MAX_FOLD_NODES = 200_000  # per template
MAX_FINDINGS_PER_TEMPLATE = 12

# Reaching one of these from a template is reaching code execution.
REACH_ATTRS = frozenset({
    "__globals__", "__builtins__", "__subclasses__", "__import__", "__code__", "__closure__",
    "__loader__", "__spec__", "func_globals", "f_globals", "f_builtins", "f_locals", "gi_frame",
    "cr_frame", "ag_frame", "tb_frame", "f_back", "_TemplateReference__context",
})
COMMAND_NAMES = frozenset({
    "os", "posix", "nt", "subprocess", "popen", "popen2", "system", "Popen", "check_output", "check_call",
    "getoutput", "getstatusoutput", "spawnl", "spawnlp", "spawnv", "spawnvp", "execl", "execlp",
    "execv", "execve", "execvp", "posix_spawn", "pty", "commands",
})
CODE_NAMES = frozenset({
    "eval", "exec", "execfile", "compile", "__import__", "import_module", "importlib", "load_module",
    "getattr", "setattr", "delattr", "builtins", "sys", "modules", "globals", "locals", "vars",
    "breakpoint", "pickle", "marshal", "ctypes",
})
FILE_NAMES = frozenset({"open", "read", "readlines", "listdir", "scandir", "remove", "unlink", "rmtree",
                        "write", "environ", "getenv"})
# Suspicious as soon as they are read as an attribute.
ACCESS_SUSPICIOUS = frozenset({
    "os", "posix", "subprocess", "popen", "Popen", "check_output", "check_call", "getoutput",
    "getstatusoutput", "importlib", "import_module", "load_module", "mro", "application", "environ",
    "builtins", "modules", "pty", "ctypes", "marshal",
})
# Ordinary words for a template variable or key; suspicious only when called.
CALL_SUSPICIOUS = frozenset({
    "system", "open", "read", "readlines", "eval", "exec", "execfile", "compile", "getattr", "setattr",
    "delattr", "listdir", "scandir", "remove", "unlink", "rmtree", "write", "getenv", "spawnl",
    "spawnv", "execl", "execv", "execve", "posix_spawn", "globals", "locals", "vars", "breakpoint",
})
# Undefined variables (from the rendering context) that are Python or web-framework objects.
SUSPICIOUS_GLOBALS = frozenset({
    "os", "sys", "subprocess", "builtins", "importlib", "eval", "exec", "compile", "getattr",
    "setattr", "open", "__import__", "__builtins__", "globals", "locals", "vars", "request", "config",
    "url_for", "get_flashed_messages", "session",
})
# Jinja globals and helpers that are Python functions or classes (their __globals__ are modules).
GADGET_GLOBALS = frozenset({
    "cycler", "joiner", "namespace", "lipsum", "range", "dict", "self", "request", "config",
    "url_for", "get_flashed_messages", "raise_exception", "strftime_now",
})
KNOWN_DUNDERS = frozenset({
    "__class__", "__mro__", "__subclasses__", "__globals__", "__builtins__", "__init__", "__import__",
    "__dict__", "__base__", "__bases__", "__getattribute__", "__reduce__", "__reduce_ex__", "__code__",
    "__closure__", "__func__", "__self__", "__module__", "__loader__", "__spec__", "__getitem__",
    "__call__", "__new__", "__subclasshook__", "__qualname__", "__name__", "__doc__", "__getattr__",
    "__setattr__", "__delattr__", "__wrapped__", "__enter__", "__exit__", "__kwdefaults__",
    "__defaults__", "__file__", "__path__", "__package__", "__weakref__", "__slots__",
})
# Filters that read an attribute named by an argument.
ATTRIBUTE_FILTERS = {"attr": 0, "selectattr": 0, "rejectattr": 0, "groupby": 0, "sort": None, "sum": None,
                     "unique": None, "min": None, "max": None, "map": None}
LOCAL_NAMES = frozenset({"loop", "caller", "varargs", "kwargs"})

_DUNDER = re.compile(r"__[A-Za-z_][A-Za-z0-9_]*__\Z")
_MANGLED = re.compile(r"_[A-Za-z][A-Za-z0-9]*__[A-Za-z_][A-Za-z0-9_]*\Z")
_HUGE_FORMAT = re.compile(r"%[^A-Za-z%]*(\*|\d{4,})")
_DUNDER_WORDS = re.compile(r"class|mro|subclasses|globals|builtins|import|getattribute|bases|popen")


class _GenerationBlock(Extension):
    """`{% generation %}...{% endgeneration %}` (assistant masks in transformers) as a plain block."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


@lru_cache(maxsize=1)
def _parser() -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(
        extensions=["jinja2.ext.loopcontrols", "jinja2.ext.do", _GenerationBlock])


@dataclass
class _Event:
    kind: str  # dunder | private | name | include | dynamic
    key: str
    line: int
    top: nodes.Node
    reason: str = ""


@dataclass
class _Walk:
    called: set = field(default_factory=set)
    bound: set = field(default_factory=set)
    constants: dict = field(default_factory=dict)
    events: list = field(default_factory=list)
    folded: dict = field(default_factory=dict)
    fold_budget: int = MAX_FOLD_NODES


def handle(stream: BinaryIO, ctx: ScanContext, member: str | None, depth: int) -> str:
    raw = stream.read(MAX_TEMPLATE_BYTES + 1)
    if len(raw) > MAX_TEMPLATE_BYTES:
        ctx.add_problem(member, f"template larger than {MAX_TEMPLATE_BYTES} bytes: not analysed")
        return "template"
    analyse_template(raw.decode("utf-8", "replace"), ctx, member, "template")
    return "template"


def analyse_template(source: str, ctx: ScanContext, member: str | None, where: str = "chat template",
                     line_offset: int = 0, offset: int | None = None) -> bool:
    """Parse one Jinja template (never render it) and report what its expressions reach.
    Returns whether it parsed; one that does not is reported as a problem."""
    _pattern_findings(source, ctx, member, where, line_offset, offset)
    if len(source) > MAX_TEMPLATE_BYTES:
        ctx.add_problem(member, f"{where} longer than {MAX_TEMPLATE_BYTES} characters: not analysed", offset)
        return False
    try:
        tree = _parser().parse(source)
    except RecursionError:
        ctx.add_problem(member, f"{where} nests too deeply to parse", offset)
        return False
    except Exception as exc:  # noqa: BLE001 - any parser failure leaves the template unread
        line = getattr(exc, "lineno", None)
        message = getattr(exc, "message", None) or str(exc)
        ctx.add_problem(member, f"{where} does not parse as Jinja"
                        + (f" (line {line})" if line else "") + f": {message}"[:300], offset)
        _unparsed_dunders(source, ctx, member, where, line_offset, offset)
        return False
    try:
        walk = _walk(tree)
    except RecursionError:
        ctx.add_problem(member, f"{where} nests too deeply to analyse", offset)
        return True
    _report(walk, source, ctx, member, where, line_offset, offset)
    return True


# --- walking ---------------------------------------------------------------------------------

def _walk(tree: nodes.Template) -> _Walk:
    walk = _Walk()
    walk.called = {id(call.node) for call in tree.find_all(nodes.Call)}
    for name in tree.find_all(nodes.Name):
        if name.ctx in ("store", "param"):
            walk.bound.add(name.name)
    for macro in tree.find_all(nodes.Macro):
        walk.bound.add(macro.name)
    for ref in tree.find_all(nodes.NSRef):
        walk.bound.add(ref.name)
    walk.bound |= LOCAL_NAMES
    _collect_constants(tree, walk)
    _visit(tree, None, walk)
    return walk


def _collect_constants(tree: nodes.Template, walk: _Walk) -> None:
    values: dict[str, list] = {}
    for assign in tree.find_all(nodes.Assign):
        if isinstance(assign.target, nodes.Name):
            values.setdefault(assign.target.name, []).append(assign.node)
    for name, assigned in values.items():
        if len(assigned) == 1:
            walk.constants[name] = assigned[0]


def _visit(node: nodes.Node, top: nodes.Node | None, walk: _Walk) -> None:
    if top is None and isinstance(node, (nodes.Expr, nodes.Helper)):
        top = node
    _inspect(node, top, walk)
    for child in node.iter_child_nodes():
        _visit(child, None if isinstance(child, nodes.Stmt) else top, walk)


def _inspect(node: nodes.Node, top: nodes.Node | None, walk: _Walk) -> None:
    line = getattr(node, "lineno", 1) or 1
    called = id(node) in walk.called
    if isinstance(node, nodes.Getattr):
        _access(node.attr, called, line, top or node, walk)
    elif isinstance(node, nodes.Getitem):
        key = _fold(node.arg, walk)
        if isinstance(key, str):
            _access(key, called, line, top or node, walk, item=True)
        elif key is None:
            _dynamic_key(node.arg, line, top or node, walk, "item")
    elif isinstance(node, nodes.Filter) and node.name in ATTRIBUTE_FILTERS:
        _attribute_filter(node, called, line, top or node, walk)
    elif isinstance(node, nodes.Name) and node.ctx == "load":
        if node.name not in walk.bound and node.name in SUSPICIOUS_GLOBALS:
            walk.events.append(_Event("name", node.name, line, top or node, _name_reason(node.name)))
        elif node.name not in walk.bound and _DUNDER.match(node.name):
            walk.events.append(_Event("dunder", node.name, line, top or node))
    elif isinstance(node, nodes.Keyword) and _DUNDER.match(node.key):
        walk.events.append(_Event("dunder", node.key, line, top or node))
    elif isinstance(node, (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
        walk.events.append(_Event("include", _render(node.template), line, node,
                                  "another template, whose loading reads files of the rendering host"))
    if isinstance(node, nodes.Expr) and not isinstance(node, (nodes.Name, nodes.Getattr)):
        folded = _fold(node, walk)
        if isinstance(folded, str) and folded in KNOWN_DUNDERS:
            walk.events.append(_Event("dunder", folded, line, top or node))


def _access(key: str, called: bool, line: int, top: nodes.Node, walk: _Walk, item: bool = False) -> None:
    if _DUNDER.match(key) or _MANGLED.match(key):
        walk.events.append(_Event("dunder", key, line, top))
    elif key in REACH_ATTRS:
        walk.events.append(_Event("dunder", key, line, top))
    elif item:
        return  # messages['system'], tool['function']: keys are data
    elif key.startswith("_"):
        walk.events.append(_Event("private", key, line, top, "a private attribute"))
    elif key in ACCESS_SUSPICIOUS or (called and key in CALL_SUSPICIOUS):
        walk.events.append(_Event("name", key, line, top, _name_reason(key)))


def _attribute_filter(node: nodes.Filter, called: bool, line: int, top: nodes.Node, walk: _Walk) -> None:
    position = ATTRIBUTE_FILTERS[node.name]
    names = [kw.value for kw in node.kwargs if kw.key == "attribute"]
    if position is not None and len(node.args) > position:
        names.append(node.args[position])
    if node.name == "map" and node.args and _fold(node.args[0], walk) == "attr" and len(node.args) > 1:
        names.append(node.args[1])
    for expression in names:
        key = _fold(expression, walk)
        if isinstance(key, str):
            for part in key.split("."):  # jinja reads dotted attribute paths one by one
                _access(part, called and node.name == "attr", line, top, walk)
        elif node.name == "attr" or key is None:
            _dynamic_key(expression, line, top, walk, "attribute")


def _dynamic_key(expression: nodes.Node, line: int, top: nodes.Node, walk: _Walk, what: str) -> None:
    """A name computed at render time: flag it when it is assembled from pieces of a dunder word,
    or from the characters of an object's text (`(lipsum|string|list)[18]` is an underscore)."""
    parts = _with_assignments(expression, walk)
    fragments = "".join(c.value for part in parts for c in _constants(part) if isinstance(c.value, str))
    from_text = any(_reads_object_text(part) for part in parts)
    assembled = "__" in fragments or from_text or any(
        isinstance(n, nodes.Mod) or (isinstance(n, nodes.Filter) and n.name == "format")
        for part in parts for n in [part, *part.find_all((nodes.Mod, nodes.Filter))])
    word = _DUNDER_WORDS.search(fragments) if assembled else None
    if word:
        key = word.group(0) if word.group(0) == "popen" else f"__{word.group(0)}__"
        walk.events.append(_Event("dunder", key, line, top, f"assembled from {fragments[:60]!r}"))
        return
    if what == "attribute" or from_text:
        walk.events.append(_Event("dynamic", _render(expression), line, top,
                                  f"an {what} name computed at render time"))


def _with_assignments(expression: nodes.Node, walk: _Walk, rounds: int = 4) -> list:
    """The expression and what the variables it reads were set to (a few assignments deep)."""
    found, frontier = [expression], [expression]
    for _ in range(rounds):
        assigned = []
        for node in frontier:
            names = [node] if isinstance(node, nodes.Name) else list(node.find_all(nodes.Name))
            for name in names:
                value = walk.constants.get(name.name)
                if value is not None and all(value is not seen for seen in found):
                    assigned.append(value)
        if not assigned:
            break
        found += assigned
        frontier = assigned
    return found


def _reads_object_text(expression: nodes.Node) -> bool:
    filters = [expression] if isinstance(expression, nodes.Filter) else []
    for flt in filters + list(expression.find_all(nodes.Filter)):
        if flt.name in ("string", "list", "format", "pprint") and isinstance(flt.node, (nodes.Name, nodes.Getattr)):
            root = flt.node
            while isinstance(root, nodes.Getattr):
                root = root.node
            if isinstance(root, nodes.Name) and root.name in GADGET_GLOBALS:
                return True
    return False


def _constants(node: nodes.Node) -> list:
    found = [node] if isinstance(node, nodes.Const) else []
    return found + list(node.find_all(nodes.Const))


def _name_reason(name: str) -> str:
    if name in ("request", "config", "session", "url_for", "get_flashed_messages"):
        return "a web application's object, which reaches its configuration and Python internals"
    if name in COMMAND_NAMES:
        return "which runs operating-system commands"
    if name in FILE_NAMES:
        return "which reads or changes files"
    if name in ("mro", "application", "builtins", "modules"):
        return "a step towards Python internals"
    return "which runs or reaches Python code"


# --- folding constant strings ----------------------------------------------------------------

def _fold(node: nodes.Node, walk: _Walk):
    """The value of a constant expression (strings, numbers, lists of them), or None."""
    key = id(node)
    if key in walk.folded:
        return walk.folded[key]
    if walk.fold_budget <= 0:
        return None
    walk.fold_budget -= 1
    walk.folded[key] = None  # an expression that refers to itself folds to nothing
    value = _fold_node(node, walk)
    if isinstance(value, (str, list)) and len(value) > MAX_FOLD_CHARS:
        value = None
    walk.folded[key] = value
    return value


def _fold_node(node: nodes.Node, walk: _Walk):
    if isinstance(node, nodes.Const):
        return node.value if isinstance(node.value, (str, int, float)) and not isinstance(node.value, bool) else None
    if isinstance(node, nodes.Name) and node.ctx == "load" and node.name in walk.constants:
        return _fold(walk.constants[node.name], walk)
    if isinstance(node, nodes.Neg):
        inner = _fold(node.node, walk)
        return -inner if isinstance(inner, (int, float)) and not isinstance(inner, bool) else None
    if isinstance(node, (nodes.List, nodes.Tuple)):
        items = [_fold(item, walk) for item in node.items]
        return None if any(i is None for i in items) else items
    if isinstance(node, nodes.Concat):
        parts = [_fold(part, walk) for part in node.nodes]
        return None if any(p is None or isinstance(p, list) for p in parts) else "".join(map(str, parts))
    if isinstance(node, (nodes.Add, nodes.Mul, nodes.Mod)):
        return _fold_binary(node, _fold(node.left, walk), _fold(node.right, walk))
    if isinstance(node, nodes.Getitem):
        return _fold_item(_fold(node.node, walk), node.arg, walk)
    if isinstance(node, nodes.Filter) and node.node is not None:
        args = [_fold(arg, walk) for arg in node.args]
        return _fold_filter(node.name, _fold(node.node, walk), args)
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr):
        args = [_fold(arg, walk) for arg in node.args]
        if node.kwargs or node.dyn_args or node.dyn_kwargs:
            return None
        return _fold_method(node.node.attr, _fold(node.node.node, walk), args)
    return None


def _fold_binary(node: nodes.BinExpr, left, right):
    if left is None or right is None:
        return None
    if isinstance(node, nodes.Add):
        if isinstance(left, str) and isinstance(right, str):
            return left + right
        if isinstance(left, list) and isinstance(right, list):
            return left + right
        return None
    if isinstance(node, nodes.Mul):
        if isinstance(left, int) and isinstance(right, str):
            left, right = right, left
        if isinstance(left, str) and isinstance(right, int) and len(left) * max(right, 0) <= MAX_FOLD_CHARS:
            return left * right
        return None
    if isinstance(left, str) and "%" in left:
        values = right if isinstance(right, list) else [right]
        return _percent_format(left, values)
    return None


def _percent_format(fmt: str, values: list):
    if _HUGE_FORMAT.search(fmt) or any(isinstance(v, list) for v in values):
        return None
    try:
        return fmt % tuple(values)
    except (TypeError, ValueError, OverflowError):
        return None


def _fold_item(value, arg: nodes.Node, walk: _Walk):
    if not isinstance(value, (str, list)):
        return None
    if isinstance(arg, nodes.Slice):
        bounds = [None if part is None else _fold(part, walk)
                  for part in (arg.start, arg.stop, arg.step)]
        if any(b is not None and not isinstance(b, int) for b in bounds) or bounds[2] == 0:
            return None
        return value[slice(*bounds)]
    index = _fold(arg, walk)
    if isinstance(index, int) and -len(value) <= index < len(value):
        return value[index]
    return None


def _fold_filter(name: str, value, args: list):
    if value is None or any(a is None for a in args):
        return None
    if name == "join" and isinstance(value, (list, str)):
        separator = args[0] if args else ""
        if isinstance(separator, str) and all(isinstance(v, (str, int)) for v in value):
            return separator.join(map(str, value))
    elif name == "reverse" and isinstance(value, (str, list)):
        return value[::-1]
    elif name == "format" and isinstance(value, str):
        return _percent_format(value, args)
    elif name in ("string", "trim", "lower", "upper", "capitalize", "title") and isinstance(value, (str, int)):
        text = str(value)
        return {"string": text, "trim": text.strip(), "lower": text.lower(), "upper": text.upper(),
                "capitalize": text.capitalize(), "title": text.title()}[name]
    elif name == "replace" and isinstance(value, str) and len(args) >= 2 and all(isinstance(a, str) for a in args[:2]):
        if len(args[1]) <= 1 or len(value) * len(args[1]) <= MAX_FOLD_CHARS:
            return value.replace(args[0], args[1])
    elif name == "list" and isinstance(value, (str, list)):
        return list(value)
    elif name in ("first", "last") and isinstance(value, (str, list)) and value:
        return value[0] if name == "first" else value[-1]
    return None


def _fold_method(method: str, value, args: list):
    if value is None or any(a is None for a in args):
        return None
    if isinstance(value, str):
        if method == "join" and len(args) == 1 and isinstance(args[0], list):
            return value.join(args[0]) if all(isinstance(a, str) for a in args[0]) else None
        if method == "format":
            return _brace_format(value, args)
        if method in ("lower", "upper", "strip", "title", "capitalize") and not args:
            return getattr(value, method)()
        if method == "replace" and len(args) == 2 and all(isinstance(a, str) for a in args):
            if len(args[1]) <= 1 or len(value) * len(args[1]) <= MAX_FOLD_CHARS:
                return value.replace(args[0], args[1])
    return None


def _brace_format(fmt: str, args: list):
    """str.format with plain positional fields only (no attribute or index lookups, no widths)."""
    try:
        parsed = list(string.Formatter().parse(fmt))
    except ValueError:
        return None
    out, automatic = [], 0
    for literal, field_name, spec, conversion in parsed:
        out.append(literal)
        if field_name is None:
            continue
        if spec or conversion or (field_name and not field_name.isdigit()):
            return None
        index = int(field_name) if field_name else automatic
        automatic += 1
        if index >= len(args) or isinstance(args[index], list):
            return None
        out.append(str(args[index]))
    return "".join(out)


# --- reporting -------------------------------------------------------------------------------

def _report(walk: _Walk, source: str, ctx: ScanContext, member: str | None, where: str,
            line_offset: int, offset: int | None) -> None:
    if not walk.events:
        return
    keys = {e.key for e in walk.events}
    names = keys | _string_constants(walk)
    dunders = [e for e in walk.events if e.kind == "dunder"]
    reaches = bool(keys & REACH_ATTRS) or bool(dunders and names & (COMMAND_NAMES | CODE_NAMES))
    commands = sorted(names & COMMAND_NAMES)
    category = "command_exec" if commands else "code_exec"
    by_line: dict[int, list[_Event]] = {}
    for event in walk.events:
        by_line.setdefault(event.line, []).append(event)
    reported = 0
    for line in sorted(by_line):
        if reported >= MAX_FINDINGS_PER_TEMPLATE:
            break
        events = by_line[line]
        finding = _line_finding(events, reaches, commands, category, where)
        if finding is None:
            continue
        rule, severity, finding_category, message = finding
        evidence = _render(events[0].top)[:ctx.limits.max_evidence_chars]
        ctx.add_finding(Finding(rule, severity, finding_category, message,
                                ctx.location(member, offset, line + line_offset), evidence))
        reported += 1


def _line_finding(events: list[_Event], reaches: bool, commands: list[str], category: str, where: str):
    dunder_keys = _unique(e.key for e in events if e.kind == "dunder")
    if dunder_keys:
        listed = ", ".join(dunder_keys[:6])
        if reaches:
            target = f"operating-system commands ({', '.join(commands[:4])})" if commands else "arbitrary Python code"
            return ("template-injection", Severity.CRITICAL, category,
                    f"{where} climbs from template values into Python internals ({listed}) to reach "
                    f"{target} when rendered (server-side template injection)")
        return ("template-dunder-access", Severity.HIGH, "code_exec",
                f"{where} reads Python internals ({listed}) when rendered; a template has no reason to")
    for kind, rule in (("include", "template-include"), ("private", "template-suspicious-name"),
                       ("name", "template-suspicious-name"), ("dynamic", "template-suspicious-name")):
        chosen = [e for e in events if e.kind == kind]
        if chosen:
            event = chosen[0]
            return (rule, Severity.MEDIUM, _event_category(event), f"{where} uses `{event.key}`, {event.reason}")
    return None


def _event_category(event: _Event) -> str:
    if event.kind == "include" or event.key in FILE_NAMES:
        return "file_read"
    if event.key in COMMAND_NAMES:
        return "command_exec"
    if event.key in ("request", "config", "session", "url_for", "get_flashed_messages", "application"):
        return "recon"
    return "code_exec"


def _string_constants(walk: _Walk) -> set:
    found = set()
    for event in walk.events:
        for const in _constants(event.top):
            if isinstance(const.value, str) and len(const.value) < 64:
                found.update(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", const.value))
    return found


def _unique(items) -> list:
    seen: dict = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)


def _render(node: nodes.Node | None, depth: int = 0) -> str:
    """A short reading of an expression, as it would be written in the template."""
    if node is None:
        return ""
    if depth > 24:
        return "…"
    r = lambda child: _render(child, depth + 1)  # noqa: E731
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Const):
        text = repr(node.value)
        return text if len(text) <= 60 else text[:57] + "…'"
    if isinstance(node, nodes.Getattr):
        return f"{_operand(node.node, depth)}.{node.attr}"
    if isinstance(node, nodes.Getitem):
        return f"{_operand(node.node, depth)}[{r(node.arg)}]"
    if isinstance(node, nodes.Slice):
        return ":".join(r(part) if part is not None else "" for part in (node.start, node.stop, node.step))
    if isinstance(node, nodes.Call):
        args = [r(a) for a in node.args] + [f"{k.key}={r(k.value)}" for k in node.kwargs]
        return f"{r(node.node)}({', '.join(args)})"
    if isinstance(node, nodes.Filter):
        args = [r(a) for a in node.args] + [f"{k.key}={r(k.value)}" for k in node.kwargs]
        call = f"({', '.join(args)})" if args else ""
        return f"{r(node.node)}|{node.name}{call}"
    if isinstance(node, nodes.Test):
        return f"{r(node.node)} is {node.name}"
    if isinstance(node, nodes.Concat):
        return " ~ ".join(r(part) for part in node.nodes)
    if isinstance(node, nodes.BinExpr):
        return f"({r(node.left)} {node.operator} {r(node.right)})"
    if isinstance(node, nodes.UnaryExpr):
        return f"{node.operator}{r(node.node)}"
    if isinstance(node, (nodes.List, nodes.Tuple)):
        inner = ", ".join(r(item) for item in node.items)
        return f"[{inner}]" if isinstance(node, nodes.List) else f"({inner})"
    if isinstance(node, nodes.Dict):
        return "{" + ", ".join(f"{r(p.key)}: {r(p.value)}" for p in node.items) + "}"
    if isinstance(node, (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
        return f"{type(node).__name__.lower()} {r(node.template)}"
    if isinstance(node, nodes.Compare):
        return r(node.expr) + "".join(f" {op.op} {r(op.expr)}" for op in node.ops)
    if isinstance(node, nodes.CondExpr):
        return f"{r(node.expr1)} if {r(node.test)} else {r(node.expr2)}"
    return type(node).__name__


def _operand(node: nodes.Node, depth: int) -> str:
    text = _render(node, depth + 1)
    return f"({text})" if isinstance(node, (nodes.Filter, nodes.Test, nodes.Concat, nodes.CondExpr)) else text


# --- text that is not a parsed template ------------------------------------------------------

_RAW_DUNDER = re.compile(r"__(?:" + "|".join(sorted(d.strip("_") for d in KNOWN_DUNDERS)) + r")__")


def _unparsed_dunders(source: str, ctx: ScanContext, member: str | None, where: str,
                      line_offset: int, offset: int | None) -> None:
    """An unparsable template is rendered by no Jinja engine, but a dialect that accepts it
    might: dunder names in its expressions are worth a look."""
    for match in _RAW_DUNDER.finditer(source):
        line = source.count("\n", 0, match.start()) + 1
        start = source.rfind("\n", 0, match.start()) + 1
        end = source.find("\n", match.end())
        text = source[start:end if end >= 0 else len(source)].strip()
        ctx.add_finding(Finding(
            "template-dunder-access", Severity.MEDIUM, "code_exec",
            f"{where} (not valid Jinja) names the Python internal {match.group(0)}",
            ctx.location(member, offset, line + line_offset), text[:ctx.limits.max_evidence_chars]))
        return


def _pattern_findings(source: str, ctx: ScanContext, member: str | None, where: str,
                      line_offset: int, offset: int | None) -> None:
    """Text patterns inform; they never make a template suspicious on their own."""
    try:
        from ..code.patterns import scan_text
    except ImportError:
        return
    try:
        matches = scan_text(source[:MAX_TEMPLATE_BYTES])
    except Exception as exc:  # noqa: BLE001 - a pattern engine failure leaves the text unread
        ctx.add_problem(member, f"pattern scan of {where} failed: {exc}", offset)
        return
    seen = set()
    for match in matches:
        if match.rule in seen:
            continue
        seen.add(match.rule)
        line = source.count("\n", 0, match.offset) + 1
        ctx.add_finding(Finding(f"pattern-{match.rule}", Severity.INFO, match.category,
                                f"{where}: {match.description}",
                                ctx.location(member, offset, line + line_offset), match.matched))


HANDLERS = {"template": handle}
