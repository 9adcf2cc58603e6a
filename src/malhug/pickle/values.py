"""Symbolic values that live on the pickle machine's stack and memo.

Nothing here is ever the real object: a global is a name, a call is a record of who was called
with what. Containers are mutable so that APPEND/SETITEM on a memoised container is seen by
every reference to it, as in a real unpickler.
"""
from __future__ import annotations

from dataclasses import dataclass, field


class Value:
    """Base of every symbolic value."""


@dataclass(eq=False)
class Const(Value):
    value: object  # None, bool, int, float, str, bytes


@dataclass(eq=False)
class Blob(Value):
    """A byte or text argument too large to keep: its place in the stream and a prefix."""

    offset: int
    length: int
    prefix: bytes
    text: bool = False
    kind: str = "bytes"


@dataclass(eq=False)
class Global(Value):
    """What GLOBAL / STACK_GLOBAL / INST / EXT would import: module plus (maybe dotted) name."""

    module: str
    name: str
    qualname: str  # canonical dotted path after compatibility mapping and aliases
    offset: int
    opcode: str


@dataclass(eq=False)
class DynamicGlobal(Value):
    """STACK_GLOBAL whose module or name is not a constant string (the load would fail or hide)."""

    module: Value
    name: Value
    offset: int


@dataclass(eq=False)
class ListValue(Value):
    items: list = field(default_factory=list)


@dataclass(eq=False)
class TupleValue(Value):
    items: tuple = ()


@dataclass(eq=False)
class DictValue(Value):
    items: list = field(default_factory=list)  # [(key, value)] in insertion order


@dataclass(eq=False)
class SetValue(Value):
    items: list = field(default_factory=list)
    frozen: bool = False


@dataclass(eq=False)
class Result(Value):
    """The value a call produced; `call` is the event that made it."""

    call: "Call"


@dataclass(eq=False)
class Buffer(Value):
    """An out-of-band buffer (protocol 5 NEXT_BUFFER) or a read-only view of one."""

    offset: int
    readonly: bool = False


class Mark:
    """The MARK sentinel on the stack."""

    def __repr__(self) -> str:
        return "MARK"


MARK = Mark()


@dataclass(eq=False)
class Call:
    """One thing the unpickler would run.

    kind: reduce | newobj | newobj_ex | obj | inst | build | setstate | setitem | append |
          extend | add | persistent_load
    func: the callee (a Global, a value whose attribute is called, ...)
    method: for calls on an object (build, setitem, append...), the method name
    """

    kind: str
    func: Value
    args: tuple
    kwargs: tuple = ()  # ((key, value), ...)
    offset: int = 0
    method: str | None = None
    index: int = 0  # position in the program, also the name of its result: _v{index}
    pickle_index: int = 0  # which pickle of a concatenated stream


def is_const_str(value: Value) -> bool:
    return isinstance(value, Const) and isinstance(value.value, str)
