"""The symbolic pickle machine: runs every opcode of protocols 0-5 on symbolic values.

It follows CPython's C unpickler (stack fence at the last MARK, memo rules, protocol checks,
FRAME as a read-ahead hint) but imports nothing and calls nothing: each GLOBAL becomes a
`Global`, each REDUCE/NEWOBJ/OBJ/INST/BUILD... becomes a `Call` in the trace. Where the real
unpicklers differ, it takes the more permissive reading, so that a payload one of them would
run is never hidden (dotted names resolve whatever the protocol, memo survives across
concatenated pickles, a FRAME never hides the opcodes inside it).
"""
from __future__ import annotations

import codecs
import struct
from dataclasses import dataclass, field
from typing import Callable

from ..limits import DEFAULT_LIMITS, Deadline, LimitExceeded, Limits
from .names import canonical_name
from .opcodes import HIGHEST_PROTOCOL, OPCODES
from .reader import ByteReader, LineTooLong, Truncated
from .values import (
    Blob, Buffer, Call, Const, DictValue, DynamicGlobal, Global, ListValue, Result, SetValue,
    TupleValue, Value, is_const_str,
)


class PickleError(Exception):
    """The stream is not a valid pickle at this point: the real unpickler would stop here too."""


@dataclass
class Anomaly:
    offset: int
    message: str


@dataclass
class Trace:
    """What loading the stream would do, in order."""

    globals: list = field(default_factory=list)  # Global / DynamicGlobal, in order of appearance
    calls: list = field(default_factory=list)  # Call, in execution order
    results: list = field(default_factory=list)  # the value each complete pickle returns
    anomalies: list = field(default_factory=list)
    error: str | None = None  # why reading stopped before the end; None when it ended cleanly
    error_offset: int | None = None
    limit: LimitExceeded | None = None
    opcodes: int = 0
    pickles: int = 0
    protocol: int = 0
    start_offset: int = 0
    end_offset: int = 0
    trailing_bytes: bool = False  # more data follows the last pickle read
    first_pickle_started: bool = False

    @property
    def complete(self) -> bool:
        return self.error is None and self.limit is None


# A hook sees every call as it is recorded and may read from the stream (joblib puts raw
# array bytes right after the BUILD of each array wrapper).
CallHook = Callable[["PickleMachine", Call], None]


class PickleMachine:
    def __init__(
        self,
        reader: ByteReader,
        limits: Limits = DEFAULT_LIMITS,
        deadline: Deadline | None = None,
        hook: CallHook | None = None,
        max_pickles: int | None = None,
    ):
        self.reader = reader
        self.limits = limits
        self.deadline = deadline or Deadline(None)
        self.hook = hook
        self.max_pickles = max_pickles or limits.max_pickles_per_stream
        self.trace = Trace(start_offset=reader.tell())
        self.stack: list = []
        self.marks: list[int] = []
        self.memo: dict[int, Value] = {}
        self.extensions: dict[int, tuple[str, str]] = {}
        self.proto = 0
        self._op_offset = 0
        self._dispatch = {code: getattr(self, "_op_" + op.name) for code, op in OPCODES.items()}

    # -- driver -----------------------------------------------------------------------------
    def run(self) -> Trace:
        trace = self.trace
        try:
            self._run()
        except PickleError as exc:
            trace.error = str(exc)
            trace.error_offset = self._op_offset
        except Truncated as exc:
            trace.error = f"truncated: {exc}"
            trace.error_offset = self._op_offset
        except LineTooLong as exc:
            trace.limit = LimitExceeded("max_line", str(exc))
            trace.error_offset = self._op_offset
        except LimitExceeded as exc:
            trace.limit = exc
            trace.error_offset = self._op_offset
        except RecursionError:
            trace.limit = LimitExceeded("recursion", "input nested too deeply")
            trace.error_offset = self._op_offset
        trace.end_offset = self.reader.tell()
        trace.protocol = max(trace.protocol, self.proto)
        return trace

    def _run(self) -> None:
        reader = self.reader
        dispatch = self._dispatch
        limits = self.limits
        trace = self.trace
        count = 0
        at_pickle_start = True
        while True:
            self._op_offset = reader.tell()
            if at_pickle_start:
                if reader.at_eof():
                    if trace.pickles == 0:
                        raise PickleError("empty input: no pickle opcode")
                    return
                if trace.pickles >= self.max_pickles:
                    trace.trailing_bytes = True
                    return
                if trace.pickles > 0 and reader.peek(1)[0] not in OPCODES:
                    # Data after a complete pickle that is not a pickle: no loader runs it.
                    trace.trailing_bytes = True
                    trace.anomalies.append(Anomaly(self._op_offset, "data after the last pickle"))
                    return
                at_pickle_start = False
                trace.first_pickle_started = True
            code = reader.read_byte()
            op = dispatch.get(code)
            if op is None:
                raise PickleError(f"invalid opcode 0x{code:02x}")
            count += 1
            if count & 0x3FF == 0:
                self.deadline.check()
                if count > limits.max_opcodes:
                    raise LimitExceeded("max_opcodes", f"more than {limits.max_opcodes} opcodes")
                if len(self.stack) > limits.max_stack:
                    raise LimitExceeded("max_stack", f"stack deeper than {limits.max_stack}", hostile=True)
                if len(self.memo) > limits.max_memo:
                    raise LimitExceeded("max_memo", f"memo larger than {limits.max_memo}", hostile=True)
            trace.opcodes = count
            if op():
                at_pickle_start = True
                trace.pickles += 1

    # -- stack helpers (the C unpickler's fence: nothing below the last MARK is reachable) ---
    @property
    def _fence(self) -> int:
        return self.marks[-1] if self.marks else 0

    def _push(self, value) -> None:
        self.stack.append(value)

    def _pop(self):
        if len(self.stack) <= self._fence:
            raise PickleError("unpickling stack underflow")
        return self.stack.pop()

    def _top(self):
        if len(self.stack) <= self._fence:
            raise PickleError("unpickling stack underflow")
        return self.stack[-1]

    def _pop_mark(self) -> list:
        if not self.marks:
            raise PickleError("could not find MARK")
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def _record(self, kind: str, func, args, kwargs=(), method: str | None = None) -> Call:
        call = Call(
            kind=kind, func=func, args=tuple(args), kwargs=tuple(kwargs), offset=self._op_offset,
            method=method, index=len(self.trace.calls), pickle_index=self.trace.pickles,
        )
        self.trace.calls.append(call)
        self._note_extension_registration(call)
        if self.hook is not None:
            self.hook(self, call)
        return call

    def _note_extension_registration(self, call: Call) -> None:
        """copyreg.add_extension(module, name, code) makes a later EXT opcode import that name."""
        func = call.func
        if call.kind != "reduce" or not isinstance(func, Global):
            return
        if func.qualname != "copyreg.add_extension" or len(call.args) != 3:
            return
        module, name, code = call.args
        if is_const_str(module) and is_const_str(name) and isinstance(code, Const) and isinstance(code.value, int):
            self.extensions[code.value] = (module.value, name.value)

    # -- argument readers -------------------------------------------------------------------
    def _line(self) -> bytes:
        line = self.reader.readline(self.limits.max_line)
        return line[:-1]

    def _uint(self, size: int, fmt: str) -> int:
        return struct.unpack(fmt, self.reader.read(size))[0]

    def _sized(self, length: int, kind: str, text: bool = False) -> Value:
        """Read a length-prefixed argument, keeping it whole only when it is small."""
        if length < 0:
            raise PickleError(f"negative byte count in {kind}")
        offset = self.reader.tell()
        if length <= self.limits.kept_bytes:
            data = self.reader.read(length)
            if text:
                try:
                    return Const(data.decode("utf-8", "surrogatepass"))
                except UnicodeDecodeError as exc:
                    raise PickleError(f"invalid UTF-8 in {kind}: {exc.reason}") from None
            return Const(data)
        prefix = self.reader.read(min(length, self.limits.blob_prefix))
        self.reader.skip(length - len(prefix))
        return Blob(offset=offset, length=length, prefix=prefix, text=text, kind=kind)

    def _global(self, module: str, name: str, opcode: str) -> Global:
        glob = Global(module=module, name=name, qualname=canonical_name(module, name),
                      offset=self._op_offset, opcode=opcode)
        self.trace.globals.append(glob)
        return glob

    # -- opcodes: control -------------------------------------------------------------------
    def _op_PROTO(self):
        proto = self.reader.read_byte()
        if proto > HIGHEST_PROTOCOL:
            raise PickleError(f"unsupported pickle protocol: {proto}")
        self.proto = proto
        self.trace.protocol = max(self.trace.protocol, proto)

    def _op_FRAME(self):
        # The C unpickler treats a frame as read-ahead: opcodes inside it are read as usual.
        self._uint(8, "<Q")

    def _op_STOP(self):
        self.trace.results.append(self._pop())
        self.stack.clear()
        self.marks.clear()
        return True

    def _op_MARK(self):
        self.marks.append(len(self.stack))

    def _op_POP(self):
        if self.marks and self.marks[-1] == len(self.stack):
            self.marks.pop()
        else:
            self._pop()

    def _op_POP_MARK(self):
        self._pop_mark()

    def _op_DUP(self):
        self._push(self._top())

    # -- constants --------------------------------------------------------------------------
    def _op_NONE(self):
        self._push(Const(None))

    def _op_NEWTRUE(self):
        self._push(Const(True))

    def _op_NEWFALSE(self):
        self._push(Const(False))

    def _op_INT(self):
        text = self._line()
        if text == b"00":
            self._push(Const(False))
        elif text == b"01":
            self._push(Const(True))
        else:
            self._push(Const(_parse_literal_int(text, "INT")))

    def _op_LONG(self):
        text = self._line()
        if text.endswith(b"L"):
            text = text[:-1]
        self._push(Const(_parse_literal_int(text, "LONG")))

    def _op_BININT(self):
        self._push(Const(self._uint(4, "<i")))

    def _op_BININT1(self):
        self._push(Const(self.reader.read_byte()))

    def _op_BININT2(self):
        self._push(Const(self._uint(2, "<H")))

    def _op_LONG1(self):
        size = self.reader.read_byte()
        self._push(Const(int.from_bytes(self.reader.read(size), "little", signed=True)))

    def _op_LONG4(self):
        size = self._uint(4, "<i")
        if size < 0:
            raise PickleError("LONG pickle has negative byte count")
        if size > 4096:
            self._push(self._sized(size, "LONG4"))
        else:
            self._push(Const(int.from_bytes(self.reader.read(size), "little", signed=True)))

    def _op_FLOAT(self):
        text = self._line()
        try:
            self._push(Const(float(text)))
        except ValueError:
            raise PickleError("could not convert string to float") from None

    def _op_BINFLOAT(self):
        self._push(Const(self._uint(8, ">d")))

    def _op_STRING(self):
        text = self._line().rstrip()  # the C unpickler strips trailing whitespace
        if len(text) < 2 or text[0] != text[-1] or text[:1] not in (b"'", b'"'):
            raise PickleError("the STRING opcode argument must be quoted")
        try:
            data = codecs.escape_decode(text[1:-1])[0]
        except ValueError as exc:
            raise PickleError(f"bad STRING escape: {exc}") from None
        self._push(Const(_py2_string(data)))

    def _op_BINSTRING(self):
        value = self._sized(self._uint(4, "<i"), "BINSTRING")
        self._push(Const(_py2_string(value.value)) if isinstance(value, Const) else value)

    def _op_SHORT_BINSTRING(self):
        self._push(Const(_py2_string(self.reader.read(self.reader.read_byte()))))

    def _op_UNICODE(self):
        try:
            self._push(Const(self._line().decode("raw-unicode-escape")))
        except UnicodeDecodeError as exc:
            raise PickleError(f"bad UNICODE argument: {exc.reason}") from None

    def _op_BINUNICODE(self):
        self._push(self._sized(self._uint(4, "<I"), "BINUNICODE", text=True))

    def _op_SHORT_BINUNICODE(self):
        self._push(self._sized(self.reader.read_byte(), "SHORT_BINUNICODE", text=True))

    def _op_BINUNICODE8(self):
        self._push(self._sized(self._uint(8, "<Q"), "BINUNICODE8", text=True))

    def _op_BINBYTES(self):
        self._push(self._sized(self._uint(4, "<I"), "BINBYTES"))

    def _op_SHORT_BINBYTES(self):
        self._push(self._sized(self.reader.read_byte(), "SHORT_BINBYTES"))

    def _op_BINBYTES8(self):
        self._push(self._sized(self._uint(8, "<Q"), "BINBYTES8"))

    def _op_BYTEARRAY8(self):
        self._push(self._sized(self._uint(8, "<Q"), "BYTEARRAY8"))

    def _op_NEXT_BUFFER(self):
        # Without a `buffers` argument (what every model loader does) the load stops here.
        raise PickleError("pickle stream refers to out-of-band data but no buffers were given")

    def _op_READONLY_BUFFER(self):
        top = self._top()
        if isinstance(top, Buffer):
            top.readonly = True

    # -- containers -------------------------------------------------------------------------
    def _op_EMPTY_LIST(self):
        self._push(ListValue())

    def _op_EMPTY_DICT(self):
        self._push(DictValue())

    def _op_EMPTY_TUPLE(self):
        self._push(TupleValue(()))

    def _op_EMPTY_SET(self):
        self._push(SetValue())

    def _op_LIST(self):
        self._push(ListValue(self._pop_mark()))

    def _op_TUPLE(self):
        self._push(TupleValue(tuple(self._pop_mark())))

    def _tuple_n(self, n: int):
        if len(self.stack) - self._fence < n:
            raise PickleError("unpickling stack underflow")
        items = tuple(self.stack[-n:])
        del self.stack[-n:]
        self._push(TupleValue(items))

    def _op_TUPLE1(self):
        self._tuple_n(1)

    def _op_TUPLE2(self):
        self._tuple_n(2)

    def _op_TUPLE3(self):
        self._tuple_n(3)

    def _op_DICT(self):
        items = self._pop_mark()
        if len(items) % 2:
            raise PickleError("odd number of items for DICT")
        self._push(DictValue(list(zip(items[0::2], items[1::2]))))

    def _op_FROZENSET(self):
        self._push(SetValue(self._pop_mark(), frozen=True))

    def _op_APPEND(self):
        value = self._pop()
        target = self._top()
        if isinstance(target, ListValue):
            target.items.append(value)
        else:
            self._record("append", target, (value,), method="append")

    def _op_APPENDS(self):
        items = self._pop_mark()
        target = self._top()
        if isinstance(target, ListValue):
            target.items.extend(items)
        elif items:
            self._record("extend", target, (ListValue(items),), method="extend")

    def _op_SETITEM(self):
        value = self._pop()
        key = self._pop()
        target = self._top()
        if isinstance(target, DictValue):
            target.items.append((key, value))
        else:
            self._record("setitem", target, (key, value), method="__setitem__")

    def _op_SETITEMS(self):
        items = self._pop_mark()
        if len(items) % 2:
            raise PickleError("odd number of items for SETITEMS")
        target = self._top()
        pairs = list(zip(items[0::2], items[1::2]))
        if isinstance(target, DictValue):
            target.items.extend(pairs)
        else:
            for key, value in pairs:
                self._record("setitem", target, (key, value), method="__setitem__")

    def _op_ADDITEMS(self):
        items = self._pop_mark()
        target = self._top()
        if isinstance(target, SetValue) and not target.frozen:
            target.items.extend(items)
        elif items:
            self._record("add", target, (ListValue(items),), method="add")

    # -- memo -------------------------------------------------------------------------------
    def _memo_get(self, index: int):
        try:
            self._push(self.memo[index])
        except KeyError:
            raise PickleError(f"memo value not found at index {index}") from None

    def _memo_put(self, index: int):
        if index < 0:
            raise PickleError("negative PUT argument")
        self.memo[index] = self._top()

    def _op_GET(self):
        self._memo_get(_parse_int(self._line(), "GET"))

    def _op_BINGET(self):
        self._memo_get(self.reader.read_byte())

    def _op_LONG_BINGET(self):
        self._memo_get(self._uint(4, "<I"))

    def _op_PUT(self):
        self._memo_put(_parse_int(self._line(), "PUT"))

    def _op_BINPUT(self):
        self._memo_put(self.reader.read_byte())

    def _op_LONG_BINPUT(self):
        self._memo_put(self._uint(4, "<I"))

    def _op_MEMOIZE(self):
        self._memo_put(len(self.memo))

    # -- imports ----------------------------------------------------------------------------
    def _op_GLOBAL(self):
        module = _utf8(self._line(), "GLOBAL")
        name = _utf8(self._line(), "GLOBAL")
        self._push(self._global(module, name, "GLOBAL"))

    def _op_STACK_GLOBAL(self):
        name = self._pop()
        module = self._pop()
        if is_const_str(module) and is_const_str(name):
            self._push(self._global(module.value, name.value, "STACK_GLOBAL"))
            return
        if isinstance(module, (Const, Blob)) and isinstance(name, (Const, Blob)):
            raise PickleError("STACK_GLOBAL requires str")
        # A name computed by an earlier call: the real unpickler imports whatever it returns.
        dynamic = DynamicGlobal(module=module, name=name, offset=self._op_offset)
        self.trace.globals.append(dynamic)
        self._push(dynamic)

    def _ext(self, code: int):
        if code <= 0:
            raise PickleError("EXT specifies code <= 0")
        if code not in self.extensions:
            raise PickleError(f"unregistered extension code {code}")
        module, name = self.extensions[code]
        self._push(self._global(module, name, "EXT"))

    def _op_EXT1(self):
        self._ext(self.reader.read_byte())

    def _op_EXT2(self):
        self._ext(self._uint(2, "<H"))

    def _op_EXT4(self):
        self._ext(self._uint(4, "<i"))

    # -- calls ------------------------------------------------------------------------------
    def _op_REDUCE(self):
        args = self._pop()
        func = self._pop()
        self._push(Result(self._record("reduce", func, _as_args(args))))

    def _op_NEWOBJ(self):
        args = self._pop()
        cls = self._pop()
        self._push(Result(self._record("newobj", cls, _as_args(args))))

    def _op_NEWOBJ_EX(self):
        kwargs = self._pop()
        args = self._pop()
        cls = self._pop()
        self._push(Result(self._record("newobj_ex", cls, _as_args(args), _as_kwargs(kwargs))))

    def _op_OBJ(self):
        items = self._pop_mark()
        if not items:
            raise PickleError("OBJ needs a class on the stack")
        self._push(Result(self._record("obj", items[0], items[1:])))

    def _op_INST(self):
        module = _utf8(self._line(), "INST")
        name = _utf8(self._line(), "INST")
        args = self._pop_mark()
        cls = self._global(module, name, "INST")
        self._push(Result(self._record("inst", cls, args)))

    def _op_BUILD(self):
        state = self._pop()
        target = self._top()
        self._record("build", target, (state,), method="__setstate__")

    def _op_PERSID(self):
        pid = self._line()
        try:
            pid_value = Const(pid.decode("ascii"))
        except UnicodeDecodeError:
            raise PickleError("persistent IDs in protocol 0 must be ASCII strings") from None
        self._push(Result(self._record("persistent_load", None, (pid_value,))))

    def _op_BINPERSID(self):
        pid = self._pop()
        self._push(Result(self._record("persistent_load", None, (pid,))))


def _parse_int(text: bytes, opcode: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise PickleError(f"bad {opcode} argument") from None


def _parse_literal_int(text: bytes, opcode: str) -> int:
    """INT and LONG as the C unpickler reads them: strtol(s, 0) or int(s, 0), so `0x1f`, `017`
    (octal, strtol) and `1_000` are numbers too; decimal with leading zeros as a last resort."""
    for parse in (lambda t: int(t, 0), _strtol_base0, int):
        try:
            return parse(text)
        except ValueError:
            continue
    raise PickleError(f"bad {opcode} argument")


def _strtol_base0(text: bytes) -> int:
    body = text.lstrip(b" \t\r\f\v")
    sign = -1 if body[:1] == b"-" else 1
    body = body[1:] if body[:1] in (b"-", b"+") else body
    if len(body) > 1 and body[:1] == b"0" and body[1:2] not in (b"x", b"X"):
        return sign * int(body, 8)
    raise ValueError(text)


def _utf8(text: bytes, opcode: str) -> str:
    try:
        return text.decode("utf-8")
    except UnicodeDecodeError:
        raise PickleError(f"{opcode} argument is not UTF-8") from None


def _py2_string(data: bytes):
    """Python 2 str: text when it is ASCII (the unpickler's default encoding), else bytes."""
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        return data


def _as_args(value) -> tuple:
    if isinstance(value, TupleValue):
        return value.items
    return (value,)  # not a tuple: the real call would fail or unpack it; keep it visible


def _as_kwargs(value) -> tuple:
    if isinstance(value, DictValue):
        return tuple(value.items)
    return ((Const("**"), value),)
