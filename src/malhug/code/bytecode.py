"""From a code object read by the marshal reader to evidence and to Python source for the engine.

When the code comes from the running interpreter's Python version (and its bytecode decodes
cleanly with this interpreter's opcode tables), the instructions are followed symbolically and
the calls they make are written back as Python statements (`__import__('os').system('id')`).
Otherwise, only the names and constants are used: every dotted name they can form that the
knowledge base calls dangerous becomes a call whose arguments are the code's string constants.
Nothing is ever turned into a live code object.
"""
from __future__ import annotations

import ast
import builtins
import keyword
import opcode
import sys
from dataclasses import dataclass, field

from ..rules import knowledge_base
from .marshal_reader import CodeInfo, Cycle

RUNNING = sys.version_info[:2]
MAX_CODE_OBJECTS = 256
MAX_CONST_CHARS = 64 * 1024
MAX_SOURCE_CHARS = 2 * 1024 * 1024
MAX_INSTRUCTIONS = 200_000  # followed symbolically, over all code objects of one function
MAX_NAMES_FOR_CHAINS = 64
MAX_CALL_ARGS = 8
MAX_LISTING_ITEMS = 40

_BUILTIN_NAMES = frozenset(dir(builtins))


@dataclass
class Lowered:
    """What one code object (with the code nested in it) amounts to."""

    source: str  # Python-like source for the engine
    listing: str  # names, strings, nested functions (and disassembly when the version matches)
    disassembled: bool
    strings: list = field(default_factory=list)  # every string constant, nested code included
    names: list = field(default_factory=list)  # every name, nested code included


def lower(code: CodeInfo) -> Lowered:
    objects = _code_objects(code)
    strings = _unique(s for obj in objects for s in _string_consts(obj))
    names = _unique(n for obj in objects for n in obj.names)
    decodable = all(_matches_running(obj) for obj in objects)
    blocks, listing = [], []
    budget = MAX_INSTRUCTIONS
    for obj in objects:
        listing.append(_summary(obj))
        budget -= len(obj.code) // 2
        if decodable and budget >= 0:
            instructions = list(_instructions(obj.code))
            listing.extend(f"    {off:>4} {name} {_argrepr(obj, name, arg)}".rstrip()
                           for off, name, arg, _ in instructions[:MAX_LISTING_ITEMS * 4])
            blocks.append(_header(obj) + _Renderer(obj, instructions).render())  # scan-safe: disassembly text
        else:
            blocks.append(_header(obj) + _conservative(obj))
    source = "\n".join(blocks)
    if len(source) > MAX_SOURCE_CHARS:
        source = source[:source.rfind("\n", 0, MAX_SOURCE_CHARS) + 1]
    return Lowered(source, "\n".join(listing), decodable, strings, names)


# -- walking and listing

def _code_objects(code: CodeInfo) -> list[CodeInfo]:
    """The code object and every code object nested in its constants (each once)."""
    seen: set[int] = set()
    found: list[CodeInfo] = []
    pending = [code]
    budget = MAX_CODE_OBJECTS * 64
    while pending and len(found) < MAX_CODE_OBJECTS and budget > 0:
        value = pending.pop()
        budget -= 1
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, CodeInfo):
            found.append(value)
            pending.extend(reversed(value.consts))
        elif isinstance(value, (tuple, list, frozenset, set)):
            pending.extend(value)
    return found


def _string_consts(code: CodeInfo) -> list[str]:
    out = []
    pending = list(code.consts)
    budget = 10_000
    while pending and budget > 0:
        value = pending.pop(0)
        budget -= 1
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, bytes):
            out.append(value.decode("latin-1"))
        elif isinstance(value, (tuple, list, frozenset, set)):
            pending.extend(value)
    return out


def _unique(items) -> list:
    seen: dict = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)


def _summary(code: CodeInfo) -> str:
    versions = f"{code.versions[0][0]}.{code.versions[0][1]}"
    if len(code.versions) > 1:
        versions += f"-{code.versions[-1][0]}.{code.versions[-1][1]}"
    strings = [_short(s) for s in _string_consts(code)[:MAX_LISTING_ITEMS]]
    nested = [c.name for c in code.nested()]
    parts = [f"code {code.qualname!r} ({code.filename}:{code.firstlineno}, Python {versions})",
             f"  args: {', '.join(code.varnames[:code.argcount + code.kwonlyargcount]) or '-'}",
             f"  names: {', '.join(code.names[:MAX_LISTING_ITEMS]) or '-'}",
             f"  strings: {', '.join(strings) or '-'}"]
    if nested:
        parts.append(f"  nested: {', '.join(nested)}")
    return "\n".join(parts)


def _short(text: str, size: int = 80) -> str:
    return repr(text if len(text) <= size else text[:size] + "...")


def _header(code: CodeInfo) -> str:
    return f"# code {_comment(code.qualname)} from {_comment(code.filename)}:{code.firstlineno}\n"


def _comment(text: str) -> str:
    return repr(text).replace("\n", " ")[:200]


# -- the conservative rendering (any Python version)

def _conservative(code: CodeInfo) -> str:
    """A call for each name that can end a dangerous dotted name, with the code's strings.

    Names are listed in the order of first use, so the name before an attribute is the likeliest
    object it was taken from; after a builtin such as `__import__` or `getattr`, the object is
    rather a module named by a string. Strings can name both (`getattr(__import__('os'), 'system')`)."""
    kb = knowledge_base()
    names = [n for n in code.names if _is_identifier(n)][:MAX_NAMES_FOR_CHAINS]
    strings = _string_consts(code)
    modules = [s for s in strings if _is_dotted(s)][:MAX_NAMES_FOR_CHAINS]
    chains = []
    for index, name in enumerate(names):
        chain = next((c for c in _chains_ending(name, index, names, modules)
                      if kb.classify(*c).kind == "dangerous"), None)
        if chain is not None:
            chains.append(chain)
    for module in modules:
        for attribute in modules:
            if attribute != module and _is_identifier(attribute) \
                    and attribute not in {ending for _, ending in chains} \
                    and kb.classify(module, attribute).kind == "dangerous":
                chains.append((module, attribute))
    lines = []
    for module, name in chains:
        used = {module, name, *module.split(".")}
        args = [_literal(s) for s in strings if s not in used][:MAX_CALL_ARGS]
        if module == "builtins":
            lines.append(f"{name}({', '.join(args)})")
        else:
            lines.append(f"import {module}")
            lines.append(f"{module}.{name}({', '.join(args)})")
    return "\n".join(lines) + ("\n" if lines else "")


def _chains_ending(name: str, index: int, names: list, modules: list):
    previous = names[index - 1] if index >= 1 else None
    if previous is not None and previous not in _BUILTIN_NAMES:
        yield previous, name
        if index >= 2:
            yield f"{names[index - 2]}.{previous}", name
    for module in modules:
        if module != name:
            yield module, name
    if name in _BUILTIN_NAMES:
        yield "builtins", name
    for earlier in names[:index]:
        yield earlier, name


def _is_identifier(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


def _is_dotted(text: str) -> bool:
    return 0 < len(text) <= 200 and all(_is_identifier(part) for part in text.split("."))


def _literal(value: str) -> str:
    return repr(value[:MAX_CONST_CHARS])


# -- the running interpreter's bytecode

_OPNAME = opcode.opname
_HAVE_ARGUMENT = opcode.HAVE_ARGUMENT
_EXTENDED_ARG = opcode.opmap.get("EXTENDED_ARG", 144)
_CACHE = opcode.opmap.get("CACHE", 0)


def _cache_entries(op: int) -> int:
    table = getattr(opcode, "_inline_cache_entries", None)
    if table is None:
        return 0
    if isinstance(table, dict):
        return table.get(_OPNAME[op], 0)
    return table[op] if op < len(table) else 0


def _matches_running(code: CodeInfo) -> bool:
    """True when the bytecode is this interpreter's: every opcode known, every cache empty."""
    if RUNNING not in code.versions:
        return False
    data = code.code
    if len(data) % 2 or len(data) > 2 * MAX_INSTRUCTIONS:
        return False
    i = 0
    while i < len(data):
        op = data[i]
        if _OPNAME[op].startswith("<") or (op == _CACHE and RUNNING >= (3, 11)):
            return False
        caches = _cache_entries(op)
        for k in range(1, caches + 1):
            j = i + 2 * k
            if j + 1 >= len(data) or data[j] != _CACHE or data[j + 1] != 0:
                return False
        i += 2 * (caches + 1)
    return True


def _instructions(data: bytes):
    """(offset, name, argument, jump target or None) for each instruction."""
    extended = 0
    start = None
    i = 0
    while i + 1 < len(data):
        op, arg = data[i], data[i + 1]
        offset = i if start is None else start
        i += 2 * (_cache_entries(op) + 1)
        if op == _EXTENDED_ARG:
            extended = (extended | arg) << 8
            start = offset
            continue
        full = (extended | arg) if op >= _HAVE_ARGUMENT else None
        extended = 0
        start = None
        yield offset, _OPNAME[op], full, _jump_target(op, full, i)


def _jump_target(op: int, arg, following: int):
    if arg is None:
        return None
    if op in opcode.hasjabs:
        return arg * 2 if RUNNING >= (3, 10) else arg
    if op in opcode.hasjrel:
        step = arg * 2 if RUNNING >= (3, 10) else arg
        return following - step if "BACKWARD" in _OPNAME[op] else following + step
    return None


def _argrepr(code: CodeInfo, name: str, arg) -> str:
    if arg is None:
        return ""
    try:
        if name in _NAME_OPS:
            return f"{arg} ({code.names[_name_index(name, arg)]})"
        if name in ("LOAD_CONST", "RETURN_CONST", "KW_NAMES"):
            value = code.consts[arg]
            text = f"<code {value.name}>" if isinstance(value, CodeInfo) else repr(value)[:60]
            return f"{arg} ({text})"
        if name in _LOCAL_OPS:
            return f"{arg} ({code.localsplus[arg]})"
        if name in _DEREF_OPS:
            return f"{arg} ({_deref_name(code, arg)})"
    except (IndexError, TypeError):
        return f"{arg} (?)"
    return str(arg)


_NAME_OPS = {"LOAD_GLOBAL", "LOAD_NAME", "STORE_NAME", "STORE_GLOBAL", "DELETE_NAME", "DELETE_GLOBAL",
             "LOAD_ATTR", "LOAD_METHOD", "STORE_ATTR", "DELETE_ATTR", "IMPORT_NAME", "IMPORT_FROM",
             "LOAD_SUPER_ATTR", "LOAD_FROM_DICT_OR_GLOBALS"}
_LOCAL_OPS = {"LOAD_FAST", "STORE_FAST", "DELETE_FAST", "LOAD_FAST_CHECK", "LOAD_FAST_AND_CLEAR"}
_DEREF_OPS = {"LOAD_DEREF", "STORE_DEREF", "LOAD_CLOSURE", "LOAD_CLASSDEREF", "DELETE_DEREF",
              "LOAD_FROM_DICT_OR_DEREF", "MAKE_CELL"}


def _name_index(name: str, arg: int) -> int:
    if name == "LOAD_GLOBAL" and RUNNING >= (3, 11):
        return arg >> 1
    if name == "LOAD_ATTR" and RUNNING >= (3, 12):
        return arg >> 1
    if name == "LOAD_SUPER_ATTR":
        return arg >> 2
    return arg


def _deref_name(code: CodeInfo, arg: int) -> str:
    if RUNNING >= (3, 11):
        return code.localsplus[arg]
    return (code.cellvars + code.freevars)[arg]


class _Marker:
    def __init__(self, name: str):
        self.name = name

    def __str__(self) -> str:
        return "_"


NULL = _Marker("NULL")
SELF = _Marker("SELF")


class _Const(str):
    """A constant's source text that remembers the constant."""

    value: object

    @classmethod
    def of(cls, value) -> "_Const":
        text = cls(_const_source(value))
        text.value = value
        return text


class _Module(str):
    """What IMPORT_NAME pushed: written as an import statement when it is stored."""

    module: str
    fromlist: object

    @classmethod
    def of(cls, module: str, fromlist, level) -> "_Module":
        call = f"__import__({module!r}" + (f", fromlist={fromlist}" if fromlist not in ("None", "_") else "")
        text = cls(call + ")")
        text.module = module
        text.fromlist = fromlist
        text.level = level
        return text


class _FromItem(str):
    module: str
    attribute: str


def _const_source(value, depth: int = 0) -> str:
    if isinstance(value, CodeInfo):
        return _code_name(value)
    if isinstance(value, str):
        return repr(value[:MAX_CONST_CHARS])
    if isinstance(value, bytes):
        return repr(value[:MAX_CONST_CHARS])
    if isinstance(value, (bool, type(None), int, float, complex)) or value is Ellipsis:
        text = repr(value)
        return text if len(text) <= 64 else "0"
    if depth < 8 and isinstance(value, tuple):
        items = [_const_source(item, depth + 1) for item in value[:256]]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if depth < 8 and isinstance(value, (frozenset, set)):
        items = [_const_source(item, depth + 1) for item in list(value)[:256]]
        return "frozenset({" + ", ".join(items) + "})" if items else "frozenset()"
    if value is StopIteration:
        return "StopIteration"
    if isinstance(value, Cycle):
        return "None"
    return "None"


def _code_name(code: CodeInfo) -> str:
    base = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in code.name)[:40]
    return f"_code_{base}"


def _identifier(name: str) -> str:
    if _is_identifier(name):
        return name
    cleaned = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name)[:60]
    return "_v_" + cleaned


_BINARY = {"BINARY_ADD": "+", "BINARY_SUBTRACT": "-", "BINARY_MULTIPLY": "*", "BINARY_TRUE_DIVIDE": "/",
           "BINARY_FLOOR_DIVIDE": "//", "BINARY_MODULO": "%", "BINARY_POWER": "**", "BINARY_LSHIFT": "<<",
           "BINARY_RSHIFT": ">>", "BINARY_AND": "&", "BINARY_OR": "|", "BINARY_XOR": "^",
           "BINARY_MATRIX_MULTIPLY": "@"}
_BINARY.update({"INPLACE_" + k[len("BINARY_"):]: v for k, v in _BINARY.items()})
_UNARY = {"UNARY_NEGATIVE": "-", "UNARY_POSITIVE": "+", "UNARY_NOT": "not ", "UNARY_INVERT": "~"}
_NO_EFFECT = {"NOP", "RESUME", "CACHE", "PRECALL", "COPY_FREE_VARS", "MAKE_CELL", "RETURN_GENERATOR",
              "GEN_START", "SETUP_ANNOTATIONS", "TO_BOOL", "EXTENDED_ARG", "NOT_TAKEN", "CONVERT_VALUE",
              "CALL_INTRINSIC_1", "GET_ITER", "GET_AITER", "GET_YIELD_FROM_ITER", "LIST_TO_TUPLE",
              "INTERPRETER_EXIT", "END_ASYNC_FOR", "LOAD_ASSERTION_ERROR"}
_ENDS_BLOCK = {"RETURN_VALUE", "RETURN_CONST", "RAISE_VARARGS", "RERAISE"}
_STORES = {"STORE_NAME", "STORE_FAST", "STORE_GLOBAL", "STORE_DEREF"}
_LOADS_NAME = {"LOAD_NAME", "LOAD_FROM_DICT_OR_GLOBALS"}


def _binary_symbol(arg: int) -> str:
    import dis

    table = getattr(dis, "_nb_ops", None) or getattr(opcode, "_nb_ops", None)
    try:
        symbol = table[arg][1]
    except (TypeError, IndexError):
        return "+"
    return symbol[:-1] if symbol.endswith("=") and symbol not in ("==", "!=", "<=", ">=") else symbol


class _Renderer:
    """Follows one code object's instructions with a stack of source texts."""

    def __init__(self, code: CodeInfo, instructions: list):
        self.code = code
        self.instructions = instructions
        self.stack: list = []
        self.lines: list[str] = []
        self.kwnames: tuple = ()
        self.saved: dict[int, list] = {}  # jump target -> the stack a jump brings there

    def render(self) -> str:
        reachable = True
        for offset, name, arg, target in self.instructions:
            if offset in self.saved:
                saved = self.saved.pop(offset)
                self.stack = self.merge(self.stack, saved) if reachable else saved
                reachable = True
            elif not reachable:
                self.stack = []  # an exception handler, or code after a loop's back edge
                reachable = True
            try:
                reachable = self.flow(name, arg, target)
            except (IndexError, TypeError, AttributeError, ValueError):
                self.flush()
        self.flush()
        for saved in self.saved.values():
            for item in saved:
                self.discard(item)
        checked = [line for line in self.lines if _parses(line)]
        return "\n".join(checked) + ("\n" if checked else "")

    # -- the stack

    def push(self, item) -> None:
        self.stack.append(item)

    def pop(self):
        return self.stack.pop() if self.stack else "_"

    def pops(self, count: int) -> list:
        count = max(0, min(count, 4096))
        items = [self.pop() for _ in range(count)]
        return items[::-1]

    def emit(self, line: str) -> None:
        self.lines.append(line)

    def discard(self, item) -> None:
        """A value no one uses: kept as a statement when it does something (calls)."""
        if isinstance(item, _Marker) or isinstance(item, (_Const, _Module)):
            return
        text = str(item)
        if "(" in text:
            self.emit(text)

    def flush(self) -> None:
        """Control flow merges here: what is on the stack is written out and forgotten."""
        while self.stack:
            self.discard(self.stack.pop(0))

    # -- control flow

    def flow(self, name: str, arg, target) -> bool:
        """Run one instruction; False when the next one is not reached by falling through."""
        if name in ("JUMP_IF_TRUE_OR_POP", "JUMP_IF_FALSE_OR_POP"):
            self.jump(target, list(self.stack))
            self.pop()  # still on the stack the jump takes
            return True
        if "JUMP" in name and "IF" in name:
            self.discard(self.pop())
            self.jump(target, list(self.stack))
            return True
        if name == "FOR_ITER":
            self.jump(target, list(self.stack))
            self.push("_item")
            return True
        if target is not None and name.startswith("JUMP"):
            self.jump(target, list(self.stack))
            return False
        if name in _ENDS_BLOCK:
            self.step(name, arg)
            self.flush()
            return False
        self.step(name, arg)
        return True

    def jump(self, target, stack: list) -> None:
        if target is None:
            return
        if target in self.saved:
            self.saved[target] = self.merge(self.saved[target], stack)
        elif len(self.saved) < 4096:
            self.saved[target] = stack

    def merge(self, first: list, second: list) -> list:
        """Two paths meet: equal items stay, different ones become `(a or b)`."""
        if len(first) != len(second):
            for item in first:
                self.discard(item)
            return list(second)
        merged = []
        for a, b in zip(first, second):
            if a is b or (not isinstance(a, _Marker) and not isinstance(b, _Marker) and str(a) == str(b)):
                merged.append(a)
            elif isinstance(a, _Marker) or isinstance(b, _Marker):
                merged.append(a if isinstance(b, _Marker) else b)
            else:
                merged.append(f"({a} or {b})")
        return merged

    # -- instructions

    def step(self, name: str, arg) -> None:
        code = self.code
        if name in _NO_EFFECT:
            return
        if name == "PUSH_NULL":
            self.push(NULL)
        elif name == "LOAD_CONST":
            self.push(_Const.of(code.consts[arg]))
        elif name == "RETURN_CONST":
            return
        elif name == "LOAD_GLOBAL":
            if RUNNING >= (3, 11) and arg & 1 and RUNNING < (3, 13):
                self.push(NULL)
            self.push(_identifier(code.names[_name_index(name, arg)]))
            if RUNNING >= (3, 13) and arg & 1:
                self.push(NULL)
        elif name in _LOADS_NAME:
            self.push(_identifier(code.names[arg]))
        elif name in _LOCAL_OPS and name.startswith("LOAD"):
            self.push(_identifier(code.localsplus[arg]))
        elif name == "LOAD_FAST_LOAD_FAST":
            self.push(_identifier(code.localsplus[arg >> 4]))
            self.push(_identifier(code.localsplus[arg & 15]))
        elif name in ("LOAD_DEREF", "LOAD_CLOSURE", "LOAD_CLASSDEREF", "LOAD_FROM_DICT_OR_DEREF"):
            self.push(_identifier(_deref_name(code, arg)))
        elif name == "LOAD_ATTR":
            self.attribute(code.names[_name_index(name, arg)], RUNNING >= (3, 12) and bool(arg & 1))
        elif name == "LOAD_METHOD":
            self.attribute(code.names[arg], True)
        elif name == "LOAD_SUPER_ATTR":
            self.pops(3)
            self.attribute_of("super()", code.names[arg >> 2], bool(arg & 1))
        elif name in _STORES or name in ("STORE_FAST_LOAD_FAST", "STORE_FAST_STORE_FAST"):
            self.store(name, arg)
        elif name == "STORE_ATTR":
            obj, value = self.pop(), self.pop()
            self.emit(f"{obj}.{_identifier(code.names[arg])} = {value}")
        elif name == "STORE_SUBSCR":
            key, obj, value = self.pop(), self.pop(), self.pop()
            self.emit(f"{obj}[{key}] = {value}")
        elif name == "IMPORT_NAME":
            fromlist, level = self.pop(), self.pop()
            self.push(_Module.of(code.names[arg], str(fromlist), str(level)))
        elif name == "IMPORT_FROM":
            module = self.stack[-1] if self.stack else "_"
            item = _FromItem(f"{module}.{_identifier(code.names[arg])}")
            item.module = getattr(module, "module", None)
            item.attribute = code.names[arg]
            self.push(item)
        elif name == "IMPORT_STAR":
            module = self.pop()
            if isinstance(module, _Module):
                self.emit(f"from {module.module} import *")
        elif name in ("CALL", "CALL_METHOD", "CALL_FUNCTION", "CALL_FUNCTION_KW", "CALL_KW"):
            self.call(name, arg)
        elif name == "CALL_FUNCTION_EX":
            self.call_ex(arg)
        elif name == "KW_NAMES":
            value = code.consts[arg]
            self.kwnames = value if isinstance(value, tuple) else ()
        elif name == "BINARY_OP":
            right, left = self.pop(), self.pop()
            self.push(f"({left} {_binary_symbol(arg)} {right})")
        elif name in _BINARY:
            right, left = self.pop(), self.pop()
            self.push(f"({left} {_BINARY[name]} {right})")
        elif name in _UNARY:
            self.push(f"({_UNARY[name]}{self.pop()})")
        elif name == "BINARY_SUBSCR":
            key, obj = self.pop(), self.pop()
            self.push(f"{obj}[{key}]")
        elif name == "BINARY_SLICE":
            end, start, obj = self.pop(), self.pop(), self.pop()
            self.push(f"{obj}[{start}:{end}]")
        elif name == "BUILD_SLICE":
            parts = self.pops(arg)
            self.push(f"slice({', '.join(map(str, parts))})")
        elif name in ("COMPARE_OP", "IS_OP", "CONTAINS_OP"):
            right, left = self.pop(), self.pop()
            self.push(f"({left} {self.comparison(name, arg)} {right})")
        elif name in ("BUILD_TUPLE", "BUILD_LIST", "BUILD_SET"):
            self.build(name, self.pops(arg))
        elif name == "BUILD_MAP":
            items = self.pops(2 * arg)
            pairs = [f"{items[i]}: {items[i + 1]}" for i in range(0, len(items), 2)]
            self.push("{" + ", ".join(pairs) + "}")
        elif name == "BUILD_CONST_KEY_MAP":
            keys = self.pop()
            values = self.pops(arg)
            key_values = getattr(keys, "value", None)
            if isinstance(key_values, tuple) and len(key_values) == len(values):
                pairs = [f"{_const_source(k)}: {v}" for k, v in zip(key_values, values)]
                self.push("{" + ", ".join(pairs) + "}")
            else:
                self.push(f"dict(zip({keys}, ({', '.join(map(str, values))},)))")
        elif name == "BUILD_STRING":
            parts = self.pops(arg)
            self.push("(" + " + ".join(map(str, parts)) + ")" if parts else "''")
        elif name == "FORMAT_VALUE":
            if arg & 4:
                self.pop()
            self.push(f"str({self.pop()})")
        elif name in ("FORMAT_SIMPLE", "FORMAT_WITH_SPEC"):
            if name == "FORMAT_WITH_SPEC":
                self.pop()
            self.push(f"str({self.pop()})")
        elif name in ("LIST_EXTEND", "SET_UPDATE", "DICT_UPDATE", "DICT_MERGE"):
            self.extend(name, arg)
        elif name in ("LIST_APPEND", "SET_ADD"):
            self.discard(self.pop())
        elif name == "MAP_ADD":
            self.discard(self.pop())
            self.discard(self.pop())
        elif name == "MAKE_FUNCTION":
            self.make_function(arg)
        elif name == "SET_FUNCTION_ATTRIBUTE":
            function, value = self.pop(), self.pop()
            self.discard(value)
            self.push(function)
        elif name in ("POP_TOP", "RETURN_VALUE", "YIELD_VALUE", "END_FOR", "POP_ITER"):
            self.discard(self.pop())
        elif name == "COPY":
            self.push(self.stack[-arg] if 0 < arg <= len(self.stack) else "_")
        elif name == "SWAP":
            if 1 < arg <= len(self.stack):
                self.stack[-1], self.stack[-arg] = self.stack[-arg], self.stack[-1]
        elif name == "DUP_TOP":
            self.push(self.stack[-1] if self.stack else "_")
        elif name == "ROT_TWO" and len(self.stack) >= 2:
            self.stack[-1], self.stack[-2] = self.stack[-2], self.stack[-1]
        else:
            self.flush()

    def attribute(self, attr: str, method: bool) -> None:
        self.attribute_of(self.pop(), attr, method)

    def attribute_of(self, obj, attr: str, method: bool) -> None:
        if isinstance(obj, _Marker):
            obj = "_"
        text = f"{obj}.{attr}" if _is_identifier(attr) else f"getattr({obj}, {attr!r})"
        self.push(text)
        if method:
            self.push(SELF)

    def store(self, name: str, arg) -> None:
        if name == "STORE_FAST_LOAD_FAST":
            self.assign(self.pop(), _identifier(self.code.localsplus[arg >> 4]))
            self.push(_identifier(self.code.localsplus[arg & 15]))
            return
        if name == "STORE_FAST_STORE_FAST":
            self.assign(self.pop(), _identifier(self.code.localsplus[arg >> 4]))
            self.assign(self.pop(), _identifier(self.code.localsplus[arg & 15]))
            return
        if name == "STORE_FAST":
            target = self.code.localsplus[arg]
        elif name == "STORE_DEREF":
            target = _deref_name(self.code, arg)
        else:
            target = self.code.names[arg]
        self.assign(self.pop(), _identifier(target))

    def assign(self, value, target: str) -> None:
        if isinstance(value, _Module) and value.fromlist in ("None", "_"):
            top = value.module.split(".")[0]
            if target == top:
                self.emit(f"import {value.module}")
            else:
                self.emit(f"import {value.module} as {target}")
        elif isinstance(value, _FromItem) and value.module:
            self.emit(f"from {value.module} import {_identifier(value.attribute)} as {target}")
        elif isinstance(value, _Marker):
            self.emit(f"{target} = _")
        else:
            self.emit(f"{target} = {value}")

    def call(self, name: str, arg: int) -> None:
        kwnames = self.kwnames
        self.kwnames = ()
        if name in ("CALL_FUNCTION_KW", "CALL_KW"):
            kw = self.pop()
            kwnames = getattr(kw, "value", ())
            kwnames = kwnames if isinstance(kwnames, tuple) else ()
        args = self.pops(arg)
        if name == "CALL_FUNCTION" or name == "CALL_FUNCTION_KW" and RUNNING < (3, 11):
            callee = self.pop()
        else:
            top, below = self.pop(), self.pop()
            if below is NULL:
                callee = top
            elif top is NULL or top is SELF:
                callee = below
            else:
                callee, args = below, [top] + args
        self.push(self.call_text(callee, args, kwnames))

    def call_ex(self, flags) -> None:
        kwargs = self.pop() if flags and flags & 1 else None
        args = self.pop()
        callee = self.pop()
        while isinstance(callee, _Marker) and self.stack:
            callee = self.pop()
        if self.stack and self.stack[-1] is NULL:
            self.pop()
        parts = [f"*{args}"] + ([f"**{kwargs}"] if kwargs is not None else [])
        self.push(f"{callee}({', '.join(parts)})")

    @staticmethod
    def call_text(callee, args: list, kwnames: tuple) -> str:
        if isinstance(callee, _Marker):
            callee = "_"
        keywords = [k for k in kwnames if isinstance(k, str)]
        split = len(args) - len(keywords) if len(keywords) <= len(args) else len(args)
        positional = [str(a) for a in args[:split]]
        named = [f"{_identifier(k)}={v}" for k, v in zip(keywords, args[split:])]
        return f"{callee}({', '.join(positional + named)})"

    def comparison(self, name: str, arg: int) -> str:
        if name == "IS_OP":
            return "is not" if arg else "is"
        if name == "CONTAINS_OP":
            return "not in" if arg else "in"
        shift = 5 if RUNNING >= (3, 13) else 4 if RUNNING >= (3, 12) else 0
        index = arg >> shift
        return opcode.cmp_op[index] if 0 <= index < len(opcode.cmp_op) else "=="

    def build(self, name: str, items: list) -> None:
        texts = [str(i) for i in items]
        if name == "BUILD_TUPLE":
            self.push("(" + ", ".join(texts) + ("," if len(texts) == 1 else "") + ")")
        elif name == "BUILD_LIST":
            self.push("[" + ", ".join(texts) + "]")
        else:
            self.push("{" + ", ".join(texts) + "}" if texts else "set()")

    def extend(self, name: str, arg: int) -> None:
        values = self.pop()
        if not 0 < arg <= len(self.stack):
            self.discard(values)
            return
        target = self.stack[-arg]
        const = getattr(values, "value", None)
        if name == "LIST_EXTEND" and str(target) == "[]" and isinstance(const, tuple):
            self.stack[-arg] = "[" + ", ".join(_const_source(v) for v in const) + "]"
        elif name == "LIST_EXTEND":
            self.stack[-arg] = f"[*{target}, *{values}]"
        elif name == "SET_UPDATE":
            self.stack[-arg] = f"{{*{target}, *{values}}}"
        else:
            self.stack[-arg] = f"{{**{target}, **{values}}}"

    def make_function(self, flags) -> None:
        if RUNNING >= (3, 11):
            code = self.pop()
        else:
            self.pop()  # qualified name
            code = self.pop()
        for bit in (0x08, 0x04, 0x02, 0x01):
            if flags and flags & bit:
                self.discard(self.pop())
        value = getattr(code, "value", None)
        self.push(_code_name(value) if isinstance(value, CodeInfo) else "_function")


def _parses(line: str) -> bool:
    try:
        ast.parse(line)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True
