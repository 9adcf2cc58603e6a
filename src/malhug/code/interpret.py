"""Abstract interpretation of Python with taint: from sources to sinks, without running anything.

Each statement is evaluated on abstract values (code.values.AValue). Constants are folded
through a fixed allowlist of pure functions (code.fold), names are resolved through imports,
aliases, getattr/__import__/importlib/sys.modules/builtins.__dict__, and every call of a
dangerous callable (the knowledge base's sinks) is recorded as an Event with the abstract
values of its arguments. Functions are analysed where they are called (with the arguments'
taint), and once more on their own so that nothing defined in the code goes unread.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field, replace

from ..findings import Severity
from ..rules import KnowledgeBase, knowledge_base
from . import fold
from .knowledge import FlowKnowledge, flow_knowledge
from .paths import LISTINGS, OPENERS, PATH_FUNCTIONS, path_join, path_text, path_value
from .values import MISSING, UNKNOWN, AValue, Taint, const, join, ref, union_taint

BUILTINS = {
    "eval", "exec", "compile", "open", "getattr", "setattr", "delattr", "__import__", "globals",
    "locals", "vars", "print", "input", "breakpoint", "chr", "ord", "bytes", "bytearray", "str",
    "int", "float", "list", "tuple", "dict", "set", "frozenset", "map", "filter", "reversed",
    "sorted", "len", "range", "zip", "enumerate", "type", "super", "hasattr", "isinstance",
    "execfile", "exit", "quit", "format", "repr", "hex", "abs", "min", "max", "sum", "any", "all",
    "iter", "next", "object", "memoryview", "bool", "divmod", "pow", "round", "hash", "id",
    "classmethod", "staticmethod", "property",
}
PASS_THROUGH = {"builtins.classmethod", "builtins.staticmethod", "builtins.property", "functools.wraps",
                "functools.lru_cache", "functools.cache"}
FILE_WRITES = {"io.file.write", "io.file.writelines"}
SOCKET_FACTORIES = {"socket.socket", "socket.create_connection", "socket.fromfd", "socket.socketpair"}
CONTEXT_RANK = {"import": 0, "builder": 1, "thread": 1, "function": 2, "main": 3}
BUILDER_METHODS = {"_info", "_split_generators", "_generate_examples", "_generate_tables",
                   "__init__", "_download_and_prepare", "download_and_prepare", "as_dataset"}
MAX_CALL_DEPTH = 6
MAX_NODES = 200_000
MAX_ITERATION = 100_000


@dataclass
class Event:
    """A sink reached: the callee's dotted name and what is known of its arguments."""

    kind: str  # call | store
    name: str
    category: str
    severity: Severity
    message: str
    args: tuple
    kwargs: dict
    line: int
    context: str
    hidden: bool = False
    code: str | None = None  # a code string handed to exec/eval/compile, when known
    receiver: object = None  # for a method call, the object it is called on


@dataclass
class FunctionValue:
    node: ast.AST
    qualname: str
    bound_self: AValue | None = None
    closure: dict | None = None  # the environment it was defined in
    owner: str | None = None  # the class it is a method of
    bases: tuple = ()  # that class's bases


@dataclass
class ClassValue:
    name: str
    methods: dict
    bases: tuple


@dataclass
class Analysis:
    events: list = field(default_factory=list)
    strings: list = field(default_factory=list)  # (line, text or bytes) of decoded or long constants
    nested_code: list = field(default_factory=list)  # (line, source) handed to exec/eval/compile
    blobs: list = field(default_factory=list)  # (line, bytes, how) decoded bytes that may be payloads
    problems: list = field(default_factory=list)
    truncated: bool = False


class Interpreter:
    def __init__(self, kb: KnowledgeBase | None = None, flows: FlowKnowledge | None = None,
                 budget: fold.FoldBudget | None = None, implicit_globals: bool = False):
        """implicit_globals: a name defined nowhere is a module (TorchScript code never imports:
        `torch`, `ops`, `os` ... are resolved by its compiler)."""
        self.implicit_globals = implicit_globals
        self.kb = kb or knowledge_base()
        self.flows = flows or flow_knowledge()
        self.budget = budget or fold.FoldBudget()
        self.result = Analysis()
        self.classes: dict[str, ClassValue] = {}
        self.attributes: dict[tuple, AValue] = {}  # (class name, attr) -> value stored on self
        self.analysed: set[int] = set()  # functions already read at least once
        self.functions: list[FunctionValue] = []
        self.nodes = 0
        self.depth = 0
        self.context = "import"
        self._seen_events: dict[tuple, int] = {}
        self._call_cache: dict[tuple, AValue] = {}

    # -- entry --------------------------------------------------------------------------------
    def run(self, tree: ast.Module) -> Analysis:
        env: dict[str, AValue] = {"__name__": const("__main__")}
        try:
            self.block(tree.body, env)
            for function in list(self.functions):
                if id(function.node) in self.analysed:
                    continue
                self.context = _entry_context(function)
                self.call_function(function, (), {}, fresh=True)
        except _Budget:
            self.result.truncated = True
            self.result.problems.append(f"code larger than the analysis budget ({MAX_NODES} nodes)")
        except RecursionError:
            self.result.truncated = True
            self.result.problems.append("code nested too deeply to analyse")
        if self.budget.exhausted:
            self.result.truncated = True
            self.result.problems.append("decoding budget exhausted: hidden code not fully decoded")
        return self.result

    # -- statements ---------------------------------------------------------------------------
    def block(self, body, env) -> list:
        returns = []
        for statement in body:
            returns.extend(self.statement(statement, env))
        return returns

    def statement(self, node, env) -> list:
        self._tick()
        method = getattr(self, "s_" + type(node).__name__, None)
        if method is not None:
            return method(node, env) or []
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                self.expr(child, env)
        return []

    def s_Expr(self, node, env):
        self.expr(node.value, env)

    def s_Return(self, node, env):
        return [self.expr(node.value, env) if node.value is not None else const(None)]

    def s_Assign(self, node, env):
        value = self.expr(node.value, env)
        for target in node.targets:
            self.assign(target, value, env, node)

    def s_AnnAssign(self, node, env):
        if node.value is not None:
            self.assign(node.target, self.expr(node.value, env), env, node)

    def s_AugAssign(self, node, env):
        current = self.expr(node.target, env)
        value = self.binop(type(node.op).__name__, current, self.expr(node.value, env))
        self.assign(node.target, value, env, node)

    def s_Import(self, node, env):
        for alias in node.names:
            if alias.asname:
                env[alias.asname] = ref(alias.name)
            else:
                top = alias.name.split(".")[0]
                env[top] = ref(top)

    def s_ImportFrom(self, node, env):
        module = ("." * node.level) + (node.module or "")
        for alias in node.names:
            if alias.name == "*":
                continue
            env[alias.asname or alias.name] = ref(f"{module}.{alias.name}")

    def s_FunctionDef(self, node, env):
        function = FunctionValue(node, node.name, closure=env)
        self.functions.append(function)
        env[node.name] = AValue(func=function)
        for decorator in node.decorator_list:
            self.expr(decorator, env)

    s_AsyncFunctionDef = s_FunctionDef

    def s_ClassDef(self, node, env):
        bases = tuple(_dotted_of(self.expr(b, env)) or "" for b in node.bases)
        methods = {}
        class_env = dict(env)
        for statement in node.body:
            if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
                function = FunctionValue(statement, f"{node.name}.{statement.name}", closure=env,
                                         owner=node.name, bases=bases)
                methods[statement.name] = function
                self.functions.append(function)
            else:
                self.statement(statement, class_env)
        self.classes[node.name] = ClassValue(node.name, methods, bases)
        env[node.name] = AValue(name=f"<class>.{node.name}")

    def s_If(self, node, env):
        test = self.expr(node.test, env)
        if _is_main_guard(node.test):
            saved, self.context = self.context, "main"
            try:
                return self.block(node.body, env)
            finally:
                self.context = saved
        returns = []
        branches = []
        for body, skip in ((node.body, test.known and not test.const), (node.orelse, test.known and test.const)):
            if skip:
                continue
            branch = dict(env)
            returns += self.block(body, branch)
            branches.append(branch)
        _merge_into(env, branches)
        return returns

    def s_For(self, node, env):
        iterable = self.expr(node.iter, env)
        element = AValue(taint=iterable.taint, hidden=iterable.hidden,
                         instance=iterable.instance, path=iterable.path)
        self.assign(node.target, element, env, node)
        returns = self.block(node.body, env)
        returns += self.block(node.body, env)  # a second pass lets taint flow around the loop
        return returns + self.block(node.orelse, env)

    s_AsyncFor = s_For

    def s_While(self, node, env):
        self.expr(node.test, env)
        returns = self.block(node.body, env) + self.block(node.body, env)
        return returns + self.block(node.orelse, env)

    def s_With(self, node, env):
        for item in node.items:
            value = self.expr(item.context_expr, env)
            if item.optional_vars is not None:
                self.assign(item.optional_vars, value, env, node)
        return self.block(node.body, env)

    s_AsyncWith = s_With

    def s_Try(self, node, env):
        returns = self.block(node.body, env)
        for handler in node.handlers:
            if handler.name:
                env[handler.name] = UNKNOWN
            returns += self.block(handler.body, env)
        return returns + self.block(node.orelse, env) + self.block(node.finalbody, env)

    s_TryStar = s_Try

    def s_Match(self, node, env):
        self.expr(node.subject, env)
        returns = []
        for case in node.cases:
            returns += self.block(case.body, env)
        return returns

    # -- assignment ---------------------------------------------------------------------------
    def assign(self, target, value: AValue, env, node) -> None:
        if isinstance(target, ast.Name):
            env[target.id] = value
        elif isinstance(target, (ast.Tuple, ast.List)):
            items = value.const if value.known and isinstance(value.const, (tuple, list)) else None
            for index, element in enumerate(target.elts):
                if items is not None and index < len(items) and not isinstance(element, ast.Starred):
                    part = const(items[index], value.hidden, value.taint)
                elif value.items is not None and index < len(value.items):
                    part = value.items[index]
                else:
                    part = AValue(taint=value.taint, hidden=value.hidden, path=value.path)
                self.assign(element.value if isinstance(element, ast.Starred) else element, part, env, node)
        elif isinstance(target, ast.Attribute):
            base = self.expr(target.value, env)
            if base.instance and base.instance.startswith("<self>."):
                key = (base.instance, target.attr)
                self.attributes[key] = join([self.attributes.get(key, value), value])
            elif base.name and base.receiver is None and not base.name.startswith(("<class>", ".")):
                self._store_event(f"{base.name}.{target.attr}", value, node, base.hidden)
        elif isinstance(target, ast.Subscript):
            base = self.expr(target.value, env)
            key = self.expr(target.slice, env)
            if base.name in ("sys.modules", "os.environ", "builtins.__dict__", "sys.path"):
                label = f"{base.name}[{key.const!r}]" if key.known else f"{base.name}[...]"
                self._store_event(label, value, node, base.hidden, container=base.name)

    def _store_event(self, target: str, value: AValue, node, hidden: bool, container: str | None = None) -> None:
        """Assigning into an imported module or a process-wide table changes the process."""
        severity = Severity.MEDIUM if container in ("os.environ", "sys.path") else Severity.HIGH
        self._record(Event(
            "store", target, "tampering", severity,
            "changes an imported module or a process-wide table", (value,), {},
            getattr(node, "lineno", 0), self.context, hidden))

    # -- expressions --------------------------------------------------------------------------
    def expr(self, node, env) -> AValue:
        if node is None:
            return UNKNOWN
        self._tick()
        method = getattr(self, "e_" + type(node).__name__, None)
        if method is not None:
            return method(node, env)
        values = [self.expr(child, env) for child in ast.iter_child_nodes(node) if isinstance(child, ast.expr)]
        return AValue(taint=union_taint(values), hidden=any(v.hidden for v in values))

    def e_Constant(self, node, env):
        value = node.value
        if isinstance(value, (str, bytes)) and len(value) >= 16:
            self.result.strings.append((node.lineno, value))
        return const(value)

    def e_Name(self, node, env):
        if node.id in env:
            return env[node.id]
        if node.id in BUILTINS:
            return ref(f"builtins.{node.id}")
        if node.id == "__builtins__":
            return ref("builtins")
        if node.id in self.classes:
            return AValue(name=f"<class>.{node.id}")
        if self.implicit_globals:
            return ref(node.id)
        return UNKNOWN

    def e_Attribute(self, node, env):
        base = self.expr(node.value, env)
        attr = node.attr
        if attr == "__dict__" and base.name:
            return replace(base, name=base.name)  # module.__dict__[x] is module.x
        if attr in ("__builtins__",):
            return ref("builtins", hidden=True)
        if base.instance and base.instance.startswith("<self>."):
            key = (base.instance, attr)
            if key in self.attributes:
                return self.attributes[key]
            method = self._method(base.instance[len("<self>."):], attr)
            if method is not None:
                return AValue(func=replace(method, bound_self=base))
            return AValue(taint=base.taint)
        if base.name:
            name = f"{base.name}.{attr}"
            source = self.flows.source(self.kb.unalias(name))
            if source and attr in ("environ", "environb"):
                return AValue(name=name, taint=frozenset({Taint("secret", "the whole environment")}), hidden=base.hidden)
            # an attribute of an object keeps pointing at that object (it is not a module's)
            return AValue(name=name, hidden=base.hidden, taint=base.taint, receiver=base.receiver)
        if base.instance:
            return AValue(name=f"{base.instance}.{attr}", taint=base.taint, hidden=base.hidden, receiver=base)
        if base.known:
            return AValue(const=_BoundConst(base.const, attr), taint=base.taint, hidden=base.hidden)
        return AValue(taint=base.taint, hidden=base.hidden)

    def e_Subscript(self, node, env):
        base = self.expr(node.value, env)
        index = self.expr(node.slice, env)
        if base.name in ("sys.modules",) and index.known and isinstance(index.const, str):
            return ref(index.const, hidden=True)
        if base.name in ("builtins", "builtins.__dict__") and index.known and isinstance(index.const, str):
            return ref(f"builtins.{index.const}", hidden=True)
        if base.name and base.name.endswith(("globals", "__dict__")) and index.known:
            return ref(f"builtins.{index.const}", hidden=True) if index.const == "__builtins__" else UNKNOWN
        if base.name in ("os.environ", "os.environb") and index.known:
            return AValue(taint=frozenset({self._env_taint(index.const)}))
        if base.known and index.known:
            value = fold.fold_subscript(base.const, index.const, self.budget)
            if value is not fold.NOT_CONSTANT:
                return const(value, base.hidden, base.taint)
        if base.items is not None and index.known and isinstance(index.const, int):
            try:
                return base.items[index.const]
            except IndexError:
                pass
        return AValue(taint=base.taint | index.taint, hidden=base.hidden, path=base.path)

    def e_Slice(self, node, env):
        parts = [self.expr(p, env) if p is not None else const(None) for p in (node.lower, node.upper, node.step)]
        if all(p.known for p in parts):
            return const(slice(*(p.const for p in parts)))
        return UNKNOWN

    def e_BinOp(self, node, env):
        return self.binop(type(node.op).__name__, self.expr(node.left, env), self.expr(node.right, env))

    def binop(self, op: str, left: AValue, right: AValue) -> AValue:
        taint = left.taint | right.taint
        hidden = left.hidden or right.hidden
        if op == "Div" and (left.path or left.instance == "pathlib.Path"):
            joined = path_join(path_text(left) or "*", path_text(right) or "*")
            known = left.known and right.known and isinstance(right.const, str)
            return AValue(const=joined if known else MISSING, instance="pathlib.Path", path=joined,
                          taint=taint, hidden=hidden)
        if left.known and right.known:
            value = fold.fold_binop(op, left.const, right.const, self.budget)
            if value is not fold.NOT_CONSTANT:
                return AValue(const=value, taint=taint, hidden=hidden, instance=left.instance)
        return AValue(taint=taint, hidden=hidden)

    def e_JoinedStr(self, node, env):
        parts = []
        values = []
        for part in node.values:
            if isinstance(part, ast.Constant):
                parts.append(part.value)
                continue
            value = self.expr(part.value, env)
            values.append(value)
            spec = None
            if part.format_spec is not None:
                spec_value = self.expr(part.format_spec, env)
                spec = spec_value.const if spec_value.known else None
            parts.append((value.const if value.known else fold.NOT_CONSTANT, part.conversion, spec))
        taint = union_taint(values)
        if all(not isinstance(p, tuple) or p[0] is not fold.NOT_CONSTANT for p in parts):
            folded = fold.fold_fstring(parts, self.budget)
            if folded is not fold.NOT_CONSTANT:
                return AValue(const=folded, taint=taint, hidden=any(v.hidden for v in values))
        return AValue(taint=taint, hidden=any(v.hidden for v in values))

    def e_Tuple(self, node, env):
        return self._sequence([self.expr(e, env) for e in node.elts], tuple)

    def e_List(self, node, env):
        return self._sequence([self.expr(e, env) for e in node.elts], list)

    def e_Set(self, node, env):
        return self._sequence([self.expr(e, env) for e in node.elts], tuple)

    def _sequence(self, items, kind) -> AValue:
        hidden = any(i.hidden for i in items)
        if all(i.known for i in items):
            return AValue(const=kind(i.const for i in items), taint=union_taint(items), hidden=hidden)
        return AValue(items=tuple(items), taint=union_taint(items), hidden=hidden)

    def e_Dict(self, node, env):
        keys = [self.expr(k, env) if k is not None else UNKNOWN for k in node.keys]
        values = [self.expr(v, env) for v in node.values]
        if all(k.known for k in keys) and all(v.known for v in values):
            try:
                return const(dict(zip((k.const for k in keys), (v.const for v in values))))
            except TypeError:
                pass
        named = tuple(values)
        return AValue(items=named, taint=union_taint(keys + values), hidden=any(v.hidden for v in values))

    def e_Lambda(self, node, env):
        function = FunctionValue(node, "<lambda>", closure=env)
        self.functions.append(function)
        return AValue(func=function)

    def e_IfExp(self, node, env):
        self.expr(node.test, env)
        return join([self.expr(node.body, env), self.expr(node.orelse, env)])

    def e_BoolOp(self, node, env):
        return join([self.expr(v, env) for v in node.values])

    def e_NamedExpr(self, node, env):
        value = self.expr(node.value, env)
        self.assign(node.target, value, env, node)
        return value

    def e_ListComp(self, node, env):
        return self._comprehension(node, env, list)

    def e_GeneratorExp(self, node, env):
        return self._comprehension(node, env, list)

    def e_SetComp(self, node, env):
        return self._comprehension(node, env, list)

    def e_DictComp(self, node, env):
        inner = dict(env)
        for generator in node.generators:
            iterable = self.expr(generator.iter, inner)
            self.assign(generator.target, AValue(taint=iterable.taint), inner, node)
        key = self.expr(node.key, inner)
        value = self.expr(node.value, inner)
        return AValue(taint=key.taint | value.taint)

    def _comprehension(self, node, env, kind) -> AValue:
        """Fold `[chr(c) for c in (104, 105)]`-like comprehensions over constants; else taint."""
        generators = node.generators
        if len(generators) == 1 and not generators[0].is_async:
            generator = generators[0]
            iterable = self.expr(generator.iter, env)
            if iterable.known and isinstance(iterable.const, (str, bytes, bytearray, list, tuple, range)) \
                    and len(iterable.const) <= MAX_ITERATION:
                out = []
                inner = dict(env)
                hidden = iterable.hidden
                for item in iterable.const:
                    self.assign(generator.target, const(item), inner, node)
                    if not all(self._truthy(self.expr(cond, inner)) for cond in generator.ifs):
                        continue
                    value = self.expr(node.elt, inner)
                    if not value.known:
                        out = None
                        break
                    hidden = hidden or value.hidden
                    out.append(value.const)
                if out is not None:
                    return AValue(const=kind(out), taint=iterable.taint, hidden=hidden)
        inner = dict(env)
        taint = set()
        for generator in generators:
            iterable = self.expr(generator.iter, inner)
            taint |= iterable.taint
            self.assign(generator.target, AValue(taint=iterable.taint, hidden=iterable.hidden), inner, node)
            for cond in generator.ifs:
                self.expr(cond, inner)
        element = self.expr(node.elt, inner)
        return AValue(taint=frozenset(taint) | element.taint, hidden=element.hidden)

    @staticmethod
    def _truthy(value: AValue) -> bool:
        return bool(value.const) if value.known else True

    def e_UnaryOp(self, node, env):
        operand = self.expr(node.operand, env)
        if operand.known:
            value = fold.fold_unaryop(type(node.op).__name__, operand.const, self.budget)
            if value is not fold.NOT_CONSTANT:
                return const(value, operand.hidden, operand.taint)
        return AValue(taint=operand.taint, hidden=operand.hidden)

    def e_Compare(self, node, env):
        values = [self.expr(node.left, env)] + [self.expr(c, env) for c in node.comparators]
        return AValue(taint=union_taint(values))

    def e_Await(self, node, env):
        return self.expr(node.value, env)

    def e_Starred(self, node, env):
        return self.expr(node.value, env)

    # -- calls --------------------------------------------------------------------------------
    def e_Call(self, node, env):
        callee = self.expr(node.func, env)
        args = []
        for arg in node.args:
            value = self.expr(arg, env)
            args.append(value)
        kwargs = {}
        for keyword in node.keywords:
            value = self.expr(keyword.value, env)
            kwargs[keyword.arg or "**"] = value
        return self.call(callee, tuple(args), kwargs, node)

    def call(self, callee: AValue, args: tuple, kwargs: dict, node) -> AValue:
        line = getattr(node, "lineno", 0)
        all_values = list(args) + list(kwargs.values())
        taint = union_taint(all_values) | callee.taint
        hidden = callee.hidden or any(v.hidden for v in all_values)
        if callee.func is not None:
            return self.call_function(callee.func, args, kwargs).with_taint(taint)
        if isinstance(callee.const, _BoundConst):
            bound = callee.const
            if all(a.known for a in all_values):
                value = fold.fold_method(bound.receiver, bound.method,
                                         tuple(a.const for a in args),
                                         {k: v.const for k, v in kwargs.items()}, self.budget)
                if value is not fold.NOT_CONSTANT:
                    return self._folded(value, line, taint, hidden, decoded=bound.method == "decode")
            return AValue(taint=taint, hidden=hidden)
        name = callee.name
        if name is None:
            if isinstance(callee.const, _MethodCaller):
                return self._method_caller(callee.const, args, kwargs, node)
            if isinstance(callee.const, _AttrGetter) and args:
                value = args[0]
                for part in callee.const.attr.split("."):
                    value = _attribute_of(value, part)
                return value
            if isinstance(callee.const, _Partial):
                partial = callee.const
                return self.call(partial.target, tuple(partial.args) + tuple(args),
                                 {**partial.kwargs, **kwargs}, node)
            return AValue(taint=taint, hidden=hidden)
        if name.startswith("<class>."):
            return self._instantiate(name[len("<class>."):], args, kwargs, taint)
        canonical = self.kb.unalias(name)
        if canonical in PASS_THROUGH and args:
            return args[0]
        special = self._special(canonical, args, kwargs, node, hidden, taint)
        if special is not None:
            return special
        if canonical in FILE_WRITES:
            self._record(Event("call", canonical, "file_write", Severity.MEDIUM, "writes to a file",
                               tuple(args), dict(kwargs), line, self.context, hidden, None, callee.receiver))
        if canonical in fold.foldable_names() and all(v.known or v.name for v in all_values):
            value = fold.fold_call(canonical, tuple(_fold_arg(a, self.kb) for a in args),
                                   {k: _fold_arg(v, self.kb) for k, v in kwargs.items()}, self.budget)
            if value is not fold.NOT_CONSTANT:
                return self._folded(value, line, taint, hidden, decoded=_is_decoder(canonical))
        self._sink(canonical, args, kwargs, node, hidden, callee.receiver)
        self._spawn(canonical, args, kwargs)
        label = self.flows.source(canonical)
        if label:
            detail = _describe_args(args) or canonical
            taint = taint | {Taint(label, canonical if label != "file" else detail)}
        if canonical in ("builtins.open", "io.open", "codecs.open", "pathlib.Path.open") or \
                canonical.endswith((".read_text", ".read_bytes")):
            taint = taint | self._file_taint(args, callee)
        if canonical in SOCKET_FACTORIES:
            taint = taint | {Taint("socket", _describe_args(args) or "a socket")}
        instance = _result_instance(canonical, callee) or (canonical if _looks_like_class(canonical) else None)
        return AValue(instance=instance, taint=taint, hidden=hidden, path=self._result_path(canonical, args, callee),
                      const=self._path_const(canonical, args))

    def _result_path(self, name: str, args, callee: AValue) -> str | None:
        """The path a call returns or opens, as far as it is known (`*` for unknown parts)."""
        if name in self.flows.path_sources and not (args and path_text(args[0])):
            return self.flows.path_sources[name]
        if name in PATH_FUNCTIONS and args:
            parts = [path_text(a) or "*" for a in args]
            if name == "os.path.expanduser" or all(p == "*" for p in parts):
                return parts[0] if parts[0] != "*" else None
            path = parts[0]
            for part in parts[1:]:
                path = path_join(path, part)
            return path
        if name in OPENERS:
            receiver = callee.receiver if isinstance(callee.receiver, AValue) else None
            return path_text(receiver) if receiver is not None else (path_text(args[0]) if args else None)
        if name in LISTINGS:
            receiver = callee.receiver if isinstance(callee.receiver, AValue) else None
            base = path_text(receiver) if receiver is not None else (path_text(args[0]) if args else None)
            if base is None and name.startswith("glob."):
                return path_text(args[0]) if args else None
            pattern = path_text(args[0]) if receiver is not None and args else ""
            return path_join(base or ".", LISTINGS[name] + (pattern or "")) if base or pattern else None
        return None

    @staticmethod
    def _path_const(name: str, args):
        """Path functions on constants give a constant path."""
        if name in PATH_FUNCTIONS and name != "builtins.str" and args and all(
                a.known and isinstance(a.const, str) for a in args):
            return path_value(name, args)
        return MISSING

    def _folded(self, value, line, taint, hidden, decoded: bool) -> AValue:
        if decoded:
            taint = taint | {Taint("decoded", "decoded data")}
            hidden = True
            if isinstance(value, (bytes, bytearray)) and len(value) >= 2:
                self.result.blobs.append((line, bytes(value)))
            if isinstance(value, (str, bytes, bytearray)):
                self.result.strings.append((line, value))
        return AValue(const=value, taint=taint, hidden=hidden)

    def _special(self, name, args, kwargs, node, hidden, taint) -> AValue | None:
        """Calls that reach other names: getattr, __import__, importlib, attrgetter, partial..."""
        first = args[0] if args else UNKNOWN
        second = args[1] if len(args) > 1 else UNKNOWN
        if name == "builtins.getattr" and isinstance(second.const, str):
            if first.name:
                return ref(f"{first.name}.{second.const}", hidden=True)
            if first.instance:
                return AValue(name=f"{first.instance}.{second.const}", hidden=True, taint=first.taint,
                              receiver=first)
            if first.known:
                return AValue(const=_BoundConst(first.const, second.const), hidden=True)
            if first.func is None and not first.known:
                return AValue(taint=taint, hidden=True)
        if name in ("builtins.__import__", "importlib.__import__") and isinstance(first.const, str):
            fromlist = args[3] if len(args) > 3 else kwargs.get("fromlist", const(None))
            wants_leaf = fromlist.known and bool(fromlist.const)
            return ref(first.const if wants_leaf else first.const.split(".")[0], hidden=True)
        if name == "importlib.import_module" and isinstance(first.const, str):
            return ref(first.const, hidden=True)
        if name in ("os.environ.get", "os.getenv", "os.environ.pop", "os.environ.setdefault") and first.known:
            return AValue(taint=frozenset({self._env_taint(first.const)}) | second.taint)
        if name == "builtins.vars" and first.name:
            return ref(first.name, hidden=True)
        if name in ("builtins.globals", "builtins.locals"):
            return ref("builtins.globals", hidden=True)
        if name == "operator.attrgetter" and isinstance(first.const, str):
            return AValue(const=_AttrGetter(first.const), hidden=True)
        if name == "operator.methodcaller" and isinstance(first.const, str):
            return AValue(const=_MethodCaller(first.const, args[1:], kwargs), hidden=True)
        if name == "functools.partial" and args:
            return AValue(const=_Partial(args[0], args[1:], kwargs), hidden=args[0].hidden,
                          taint=args[0].taint | union_taint(args[1:]))
        if name in self.flows.code_strings:
            index = self.flows.code_strings[name]
            code = args[index] if index < len(args) else kwargs.get("source", kwargs.get("stmt", UNKNOWN))
            self._code_string(name, code, node, hidden)
        return None

    def _method_caller(self, caller, args, kwargs, node) -> AValue:
        if not args:
            return UNKNOWN
        method = _attribute_of(args[0], caller.method)
        return self.call(method, tuple(caller.args), dict(caller.kwargs), node)

    def _code_string(self, name: str, code: AValue, node, hidden: bool) -> None:
        if code.known and isinstance(code.const, (str, bytes)):
            text = code.const.decode("utf-8", "replace") if isinstance(code.const, bytes) else code.const
            self.result.nested_code.append((getattr(node, "lineno", 0), text, code.hidden or hidden))

    def _instantiate(self, class_name: str, args, kwargs, taint) -> AValue:
        instance = AValue(instance=f"<self>.{class_name}", taint=taint)
        init = self._method(class_name, "__init__")
        if init is not None:
            self.call_function(replace(init, bound_self=instance), args, kwargs)
        return instance

    def _method(self, class_name: str, method: str) -> FunctionValue | None:
        seen = set()
        while class_name and class_name not in seen:
            seen.add(class_name)
            cls = self.classes.get(class_name)
            if cls is None:
                return None
            if method in cls.methods:
                return cls.methods[method]
            class_name = next((b for b in cls.bases if b in self.classes), None)
        return None

    def call_function(self, function: FunctionValue, args: tuple, kwargs: dict, fresh: bool = False) -> AValue:
        node = function.node
        first_time = id(node) not in self.analysed
        self.analysed.add(id(node))
        signature = (id(node), tuple(sorted(t.kind for t in union_taint(list(args) + list(kwargs.values())))),
                     self.context)
        if not fresh and not first_time and signature in self._call_cache:
            return self._call_cache[signature]
        if self.depth >= MAX_CALL_DEPTH:
            return AValue(taint=union_taint(list(args) + list(kwargs.values())))
        self._call_cache[signature] = UNKNOWN  # recursion lands here
        env = dict(function.closure or {})
        self._bind(function, args, kwargs, env)
        self.depth += 1
        try:
            if isinstance(node, ast.Lambda):
                result = self.expr(node.body, env)
            else:
                result = join(self.block(node.body, env)) if node.body else UNKNOWN
        finally:
            self.depth -= 1
        self._call_cache[signature] = result
        return result

    def _bind(self, function: FunctionValue, args, kwargs, env) -> None:
        spec = function.node.args
        params = [a.arg for a in spec.posonlyargs + spec.args]
        values = list(args)
        owner = function.owner
        if owner and params and not _is_static(function.node):
            self_value = function.bound_self or AValue(instance=f"<self>.{owner}")
            env[params[0]] = self_value
            params = params[1:]
        for index, param in enumerate(params):
            if index < len(values):
                env[param] = values[index]
            elif param in kwargs:
                env[param] = kwargs[param]
            else:
                env[param] = _parameter_guess(param)
        for arg in spec.kwonlyargs:
            env[arg.arg] = kwargs.get(arg.arg, _parameter_guess(arg.arg))
        if spec.vararg:
            env[spec.vararg.arg] = AValue(items=tuple(values[len(params):]), taint=union_taint(values[len(params):]))
        if spec.kwarg:
            env[spec.kwarg.arg] = AValue(taint=union_taint(list(kwargs.values())))

    # -- sinks, spawners, sources -------------------------------------------------------------
    def _sink(self, name: str, args, kwargs, node, hidden: bool, receiver=None) -> None:
        verdict = self.kb.classify(name)
        if verdict.kind != "dangerous":
            return
        rule = verdict.rule
        code = None
        index = self.flows.code_strings.get(name)
        if index is not None and index < len(args) and args[index].known and isinstance(args[index].const, (str, bytes)):
            value = args[index].const
            code = value if isinstance(value, str) else value.decode("utf-8", "replace")
        self._record(Event("call", verdict.matched or name, rule.category, rule.severity, rule.message,
                           tuple(args), dict(kwargs), getattr(node, "lineno", 0), self.context, hidden, code,
                           receiver))

    def _spawn(self, name: str, args, kwargs) -> None:
        where = self.flows.spawners.get(name)
        if where is None:
            return
        target = kwargs.get(where) if not where.isdigit() else (args[int(where)] if int(where) < len(args) else None)
        if target is None:
            return
        extra = kwargs.get("args")
        call_args = tuple(extra.items) if extra is not None and extra.items else (
            tuple(const(v) for v in extra.const) if extra is not None and extra.known and isinstance(extra.const, (tuple, list)) else ())
        if target.func is not None:
            saved, self.context = self.context, "thread" if self.context == "import" else self.context
            try:
                self.call_function(target.func, call_args, {})
            finally:
                self.context = saved
        elif target.name:
            self.call(target, call_args, {}, ast.Constant(None))

    def _file_taint(self, args, callee: AValue) -> frozenset:
        receiver = callee.receiver
        path = path_text(receiver) if isinstance(receiver, AValue) else (path_text(args[0]) if args else None)
        if path and self.flows.is_secret_path(path):
            return frozenset({Taint("secret", path)})
        return frozenset()

    def _env_taint(self, key) -> Taint:
        name = str(key)
        return Taint("secret" if self.flows.is_secret_env(name) else "env", name)

    def _record(self, event: Event) -> None:
        key = (event.line, event.name, event.kind)
        rank = CONTEXT_RANK.get(event.context, 2)
        if key in self._seen_events:
            index = self._seen_events[key]
            old = self.result.events[index]
            if rank < CONTEXT_RANK.get(old.context, 2) or union_taint(event.args) - union_taint(old.args):
                merged_args = event.args if union_taint(event.args) >= union_taint(old.args) else old.args
                self.result.events[index] = replace(
                    event, args=merged_args,
                    context=event.context if rank < CONTEXT_RANK.get(old.context, 2) else old.context)
            return
        self._seen_events[key] = len(self.result.events)
        self.result.events.append(event)

    def _tick(self) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _Budget()


class _Budget(Exception):
    pass


@dataclass(frozen=True)
class _BoundConst:
    """A method of a constant (`'x'.join`), folded when called."""

    receiver: object
    method: str


@dataclass(frozen=True)
class _AttrGetter:
    attr: str


@dataclass(frozen=True)
class _MethodCaller:
    method: str
    args: tuple
    kwargs: dict

    def __hash__(self):
        return hash(self.method)


@dataclass(frozen=True)
class _Partial:
    target: AValue
    args: tuple
    kwargs: dict

    def __hash__(self):
        return id(self)


def _attribute_of(base: AValue, attr: str) -> AValue:
    if base.name:
        return ref(f"{base.name}.{attr}", hidden=True)
    if base.instance:
        return AValue(name=f"{base.instance}.{attr}", taint=base.taint, hidden=True, receiver=base)
    if base.known:
        return AValue(const=_BoundConst(base.const, attr), hidden=True)
    return AValue(taint=base.taint)


def _dotted_of(value: AValue) -> str | None:
    return value.name


def _is_main_guard(test) -> bool:
    if not isinstance(test, ast.Compare) or len(test.ops) != 1 or not isinstance(test.ops[0], ast.Eq):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s.id for s in sides if isinstance(s, ast.Name)]
    values = [s.value for s in sides if isinstance(s, ast.Constant)]
    return names == ["__name__"] and values == ["__main__"]


def _entry_context(function: FunctionValue) -> str:
    name = getattr(function.node, "name", "")
    bases = function.bases
    if name in BUILDER_METHODS and any("Builder" in base for base in bases):
        return "builder"
    return "function"


def _fold_arg(value: AValue, kb: KnowledgeBase):
    """A constant, or a function passed by name (`map(chr, codes)`)."""
    return value.const if value.known else fold.FunctionRef(kb.unalias(value.name))


def _merge_into(env: dict, branches: list) -> None:
    """After a branch point a name may hold what any branch left in it."""
    if not branches:
        return
    if len(branches) == 1:
        branches.append(env)
    for key in set().union(*branches):
        options = [branch[key] for branch in branches if key in branch]
        if key in env and any(key not in branch for branch in branches):
            options.append(env[key])
        env[key] = options[0] if all(o is options[0] for o in options) else join(options)





def _is_static(node) -> bool:
    return any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in getattr(node, "decorator_list", []))


def _parameter_guess(name: str) -> AValue:
    """Parameters named like the dataset download manager are that manager."""
    if name in ("dl_manager", "download_manager"):
        return AValue(instance="datasets.DownloadManager")
    return UNKNOWN


def _looks_like_class(name: str) -> bool:
    last = name.rsplit(".", 1)[-1]
    return last[:1].isupper()


def _result_instance(name: str, callee: AValue) -> str | None:
    """What the result of a call is an instance of, for method calls on it later."""
    if name in SOCKET_FACTORIES:
        return "socket.socket"
    if name in ("builtins.open", "io.open", "codecs.open", "pathlib.Path.open"):
        return "io.file"
    if name.startswith(("requests.", "httpx.", "urllib.request.urlopen", "urllib3.")):
        return "http.response"
    if name in ("subprocess.Popen", "asyncio.create_subprocess_shell", "asyncio.create_subprocess_exec"):
        return "subprocess.Popen"
    if name.startswith("pathlib.") and not name.endswith(_PATH_METHODS_NOT_RETURNING_PATHS):
        return "pathlib.Path"
    return None


_PATH_METHODS_NOT_RETURNING_PATHS = ("read_text", "read_bytes", "open", "write_text", "write_bytes",
                                     "exists", "is_file", "is_dir", "stat", "unlink", "rmdir", "mkdir",
                                     "touch", "chmod")


def _is_decoder(name: str) -> bool:
    return name.split(".")[0] in ("base64", "binascii", "codecs", "zlib", "gzip", "bz2", "lzma") or \
        name in ("builtins.bytes.fromhex", "bytes.fromhex", "builtins.chr", "builtins.map", "builtins.reversed")


def _describe_args(args) -> str:
    for arg in args:
        if arg.known and isinstance(arg.const, (str, bytes)):
            text = arg.const if isinstance(arg.const, str) else arg.const.decode("utf-8", "replace")
            return text[:120]
    return ""
