"""CPython's `marshal` format (versions 3.6 to 3.13), read from bytes without `marshal.loads`.

Code objects come back as `CodeInfo` records (names, constants, bytecode bytes): nothing is
ever turned into a live code object. Values are plain Python data. Malformed or truncated
input, and input past the bounds below, raise `MarshalError`.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

# The code object field layouts, by the first Python version that wrote them.
LAYOUT_36 = (3, 6)
LAYOUT_38 = (3, 8)
LAYOUT_311 = (3, 11)
SUPPORTED = tuple((3, minor) for minor in range(6, 14))
# Newest first: a guess takes the first layout that reads the whole input.
GUESS_ORDER = (LAYOUT_311, LAYOUT_38, LAYOUT_36)

MAX_DEPTH = 200
MAX_OBJECTS = 1_000_000
MAX_STRING = 64 * 1024 * 1024
MAX_LONG_DIGITS = 100_000

FLAG_REF = 0x80
CO_FAST_LOCAL = 0x20
CO_FAST_CELL = 0x40
CO_FAST_FREE = 0x80


class MarshalError(ValueError):
    """The bytes are not marshal data this reader can read (or they exceed its bounds)."""


@dataclass(frozen=True)
class CodeInfo:
    name: str
    qualname: str
    filename: str
    firstlineno: int
    argcount: int
    posonlyargcount: int
    kwonlyargcount: int
    flags: int
    names: tuple
    varnames: tuple
    freevars: tuple
    cellvars: tuple
    consts: tuple
    code: bytes
    # 3.11+: every local, cell and free variable in index order (what LOAD_FAST/LOAD_DEREF
    # index); before 3.11: varnames + cellvars + freevars
    localsplus: tuple
    layout: tuple  # LAYOUT_36 | LAYOUT_38 | LAYOUT_311
    versions: tuple  # the Python versions this object may come from

    def nested(self) -> list["CodeInfo"]:
        """Code objects among the constants (functions, lambdas, comprehensions defined inside)."""
        return [const for const in self.consts if isinstance(const, CodeInfo)]


class Cycle:
    """A reference to a container that was still being read (a self-containing list): kept
    out of the tree, so that what is returned never contains itself."""

    def __repr__(self) -> str:
        return "<cycle>"


def layout_for(version: tuple) -> tuple:
    version = tuple(version[:2])
    if version not in SUPPORTED:
        raise MarshalError(f"Python {version[0]}.{version[1]} marshal data is not supported")
    if version >= LAYOUT_311:
        return LAYOUT_311
    if version >= LAYOUT_38:
        return LAYOUT_38
    return LAYOUT_36


def versions_of(layout: tuple) -> tuple:
    following = [later for later in GUESS_ORDER if later > layout]
    upper = min(following) if following else (3, 14)
    return tuple(v for v in SUPPORTED if layout <= v < upper)


def loads(data: bytes, version: tuple | None = None) -> object:
    """One marshalled value; with version None, the newest code layout that reads all of it."""
    if version is not None:
        return _Reader(bytes(data), layout_for(version), (tuple(version[:2]),)).read_all()
    errors = []
    for layout in GUESS_ORDER:
        try:
            return _Reader(bytes(data), layout, versions_of(layout)).read_all()
        except MarshalError as exc:
            errors.append(f"{layout[0]}.{layout[1]}: {exc}")
    raise MarshalError("not readable as marshal data of any supported Python (" + "; ".join(errors) + ")")


def load_code(data: bytes, version: tuple | None = None) -> CodeInfo:
    """A marshalled code object (what `marshal.dumps(func.__code__)` wrote)."""
    if version is not None:
        value = loads(data, version)
        if not isinstance(value, CodeInfo):
            raise MarshalError(f"marshal data holds {type(value).__name__}, not a code object")
        return value
    errors = []
    for layout in GUESS_ORDER:
        try:
            value = _Reader(bytes(data), layout, versions_of(layout)).read_all()
        except MarshalError as exc:
            errors.append(f"{layout[0]}.{layout[1]}: {exc}")
            continue
        if isinstance(value, CodeInfo):
            return value
        raise MarshalError(f"marshal data holds {type(value).__name__}, not a code object")
    raise MarshalError("not a code object of any supported Python (" + "; ".join(errors) + ")")


_PENDING = object()


class _Reader:
    def __init__(self, data: bytes, layout: tuple, versions: tuple):
        self.data = data
        self.pos = 0
        self.layout = layout
        self.versions = versions
        self.refs: list = []
        self.objects = 0
        self.depth = 0

    def read_all(self) -> object:
        value = self.object()
        if self.pos != len(self.data):
            raise MarshalError(f"{len(self.data) - self.pos} bytes after the marshalled value")
        return value

    # -- primitives

    def take(self, size: int) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise MarshalError(f"truncated at offset {self.pos} (needs {size} bytes)")
        chunk = self.data[self.pos:self.pos + size]
        self.pos += size
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def long(self) -> int:
        return struct.unpack("<i", self.take(4))[0]

    def size(self, what: str, minimum_each: int = 1) -> int:
        n = self.long()
        if n < 0:
            raise MarshalError(f"negative {what} size {n} at offset {self.pos - 4}")
        if n * minimum_each > len(self.data) - self.pos:
            raise MarshalError(f"{what} size {n} larger than the data left at offset {self.pos - 4}")
        return n

    # -- objects

    def object(self) -> object:
        self.objects += 1
        if self.objects > MAX_OBJECTS:
            raise MarshalError(f"more than {MAX_OBJECTS} objects")
        if self.depth >= MAX_DEPTH:
            raise MarshalError(f"nested deeper than {MAX_DEPTH}")
        start = self.pos
        code = self.byte()
        flag = code & FLAG_REF
        kind = chr(code & ~FLAG_REF)
        if kind == "r":
            return self.ref()
        reader = _DISPATCH.get(kind)
        if reader is None:
            raise MarshalError(f"unknown type code {kind!r} at offset {start}")
        index = None
        if flag:
            index = len(self.refs)
            self.refs.append(_PENDING)
        self.depth += 1
        try:
            value = reader(self, kind, index)
        finally:
            self.depth -= 1
        if index is not None:
            self.refs[index] = value
        return value

    def ref(self) -> object:
        index = self.long()
        if not 0 <= index < len(self.refs):
            raise MarshalError(f"invalid reference {index} at offset {self.pos - 4}")
        value = self.refs[index]
        if value is _PENDING:
            return Cycle()
        return value

    def r_null(self, kind, index):
        raise MarshalError(f"NULL object outside a dict at offset {self.pos - 1}")

    def r_unknown(self, kind, index):
        raise MarshalError(f"unmarshallable object marker at offset {self.pos - 1}")

    def r_constant(self, kind, index):
        return _CONSTANTS[kind]

    def r_int(self, kind, index):
        return self.long()

    def r_int64(self, kind, index):
        return struct.unpack("<q", self.take(8))[0]

    def r_float(self, kind, index):
        if kind == "g":
            return struct.unpack("<d", self.take(8))[0]
        return self.text_float()

    def text_float(self) -> float:
        raw = self.take(self.byte())
        try:
            return float(raw.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise MarshalError(f"bad float text {raw!r}") from None

    def r_complex(self, kind, index):
        if kind == "y":
            real, imag = struct.unpack("<dd", self.take(16))
            return complex(real, imag)
        real = self.text_float()
        return complex(real, self.text_float())

    def r_long(self, kind, index):
        n = self.long()
        count = abs(n)
        if count > MAX_LONG_DIGITS:
            raise MarshalError(f"integer of {count} digits")
        raw = self.take(2 * count)
        digits = struct.unpack(f"<{count}H", raw)
        if any(d >= 1 << 15 for d in digits):
            raise MarshalError("digit out of range in long")
        if count and digits[-1] == 0:
            raise MarshalError("unnormalized long data")
        if not count:
            return 0
        value = int("".join(format(d, "015b") for d in reversed(digits)), 2)
        return -value if n < 0 else value

    def r_bytes(self, kind, index):
        return self.take(self.string_size())

    def string_size(self) -> int:
        n = self.size("string")
        if n > MAX_STRING:
            raise MarshalError(f"string of {n} bytes")
        return n

    def r_unicode(self, kind, index):
        raw = self.take(self.string_size())
        try:
            return raw.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError as exc:
            raise MarshalError(f"string is not UTF-8: {exc}") from None

    def r_ascii(self, kind, index):
        size = self.byte() if kind in "zZ" else self.string_size()
        return self.take(size).decode("latin-1")

    def r_tuple(self, kind, index):
        n = self.byte() if kind == ")" else self.size("tuple")
        if n > len(self.data) - self.pos:
            raise MarshalError(f"tuple size {n} larger than the data left")
        items: list = []
        for _ in range(n):
            items.append(self.object())
        return tuple(items)

    def r_list(self, kind, index):
        n = self.size("list")
        items: list = []
        for _ in range(n):
            items.append(self.object())
        return items

    def r_dict(self, kind, index):
        result: dict = {}
        while True:
            if self.pos < len(self.data) and self.data[self.pos] == ord("0"):
                self.pos += 1
                return result
            key = self.object()
            value = self.object()
            try:
                result[key] = value
            except TypeError:
                raise MarshalError(f"unhashable dict key {type(key).__name__}") from None

    def r_set(self, kind, index):
        n = self.size("set")
        items = []
        for _ in range(n):
            items.append(self.object())
        try:
            return set(items) if kind == "<" else frozenset(items)
        except TypeError:
            raise MarshalError("unhashable set item") from None

    def r_slice(self, kind, index):
        start = self.object()
        stop = self.object()
        return slice(start, stop, self.object())

    def r_code(self, kind, index):
        fields: dict = {}
        for name, reader in _CODE_FIELDS[self.layout]:
            fields[name] = self.long() if reader == "long" else self.object()
        return _code_info(fields, self.layout, self.versions)


def _code_info(fields: dict, layout: tuple, versions: tuple) -> CodeInfo:
    """Check the fields' types (a wrong layout guess fails here) and build the record."""
    code = _expect(fields, "code", bytes)
    consts = _expect(fields, "consts", tuple)
    names = _strings(fields, "names")
    filename = _expect(fields, "filename", str)
    name = _expect(fields, "name", str)
    for field_name in ("lnotab", "linetable", "exceptiontable"):
        if field_name in fields:
            _expect(fields, field_name, bytes)
    for field_name in ("argcount", "posonlyargcount", "kwonlyargcount", "stacksize", "nlocals"):
        if fields.get(field_name, 0) < 0:
            raise MarshalError(f"code object field {field_name} is negative")
    if layout == LAYOUT_311:
        localsplus = _strings(fields, "localsplusnames")
        kinds = _expect(fields, "localspluskinds", bytes)
        if len(kinds) != len(localsplus):
            raise MarshalError("code object localsplus names and kinds differ in length")
        varnames = tuple(n for n, k in zip(localsplus, kinds) if k & CO_FAST_LOCAL)
        cellvars = tuple(n for n, k in zip(localsplus, kinds) if k & CO_FAST_CELL)
        freevars = tuple(n for n, k in zip(localsplus, kinds) if k & CO_FAST_FREE)
        qualname = _expect(fields, "qualname", str)
    else:
        varnames = _strings(fields, "varnames")
        freevars = _strings(fields, "freevars")
        cellvars = _strings(fields, "cellvars")
        localsplus = varnames + cellvars + freevars
        qualname = name
    return CodeInfo(
        name=name, qualname=qualname, filename=filename, firstlineno=fields["firstlineno"],
        argcount=fields["argcount"], posonlyargcount=fields.get("posonlyargcount", 0),
        kwonlyargcount=fields["kwonlyargcount"], flags=fields["flags"], names=names,
        varnames=varnames, freevars=freevars, cellvars=cellvars, consts=consts, code=code,
        localsplus=localsplus, layout=layout, versions=versions,
    )


def _expect(fields: dict, name: str, kind: type):
    value = fields[name]
    if not isinstance(value, kind):
        raise MarshalError(f"code object field {name} is {type(value).__name__}, not {kind.__name__}")
    return value


def _strings(fields: dict, name: str) -> tuple:
    value = _expect(fields, name, tuple)
    if not all(isinstance(item, str) for item in value):
        raise MarshalError(f"code object field {name} holds a value that is not a string")
    return value


_CONSTANTS = {"N": None, "F": False, "T": True, "S": StopIteration, ".": Ellipsis}

_DISPATCH = {
    "0": _Reader.r_null, "?": _Reader.r_unknown,
    "N": _Reader.r_constant, "F": _Reader.r_constant, "T": _Reader.r_constant,
    "S": _Reader.r_constant, ".": _Reader.r_constant,
    "i": _Reader.r_int, "I": _Reader.r_int64, "l": _Reader.r_long,
    "f": _Reader.r_float, "g": _Reader.r_float, "x": _Reader.r_complex, "y": _Reader.r_complex,
    "s": _Reader.r_bytes, "t": _Reader.r_unicode, "u": _Reader.r_unicode,
    "a": _Reader.r_ascii, "A": _Reader.r_ascii, "z": _Reader.r_ascii, "Z": _Reader.r_ascii,
    "(": _Reader.r_tuple, ")": _Reader.r_tuple, "[": _Reader.r_list, "{": _Reader.r_dict,
    "<": _Reader.r_set, ">": _Reader.r_set, ":": _Reader.r_slice, "c": _Reader.r_code,
}

_L, _O = "long", "object"
_CODE_FIELDS = {
    LAYOUT_36: (
        ("argcount", _L), ("kwonlyargcount", _L), ("nlocals", _L), ("stacksize", _L), ("flags", _L),
        ("code", _O), ("consts", _O), ("names", _O), ("varnames", _O), ("freevars", _O),
        ("cellvars", _O), ("filename", _O), ("name", _O), ("firstlineno", _L), ("lnotab", _O),
    ),
    LAYOUT_38: (
        ("argcount", _L), ("posonlyargcount", _L), ("kwonlyargcount", _L), ("nlocals", _L),
        ("stacksize", _L), ("flags", _L), ("code", _O), ("consts", _O), ("names", _O),
        ("varnames", _O), ("freevars", _O), ("cellvars", _O), ("filename", _O), ("name", _O),
        ("firstlineno", _L), ("linetable", _O),
    ),
    LAYOUT_311: (
        ("argcount", _L), ("posonlyargcount", _L), ("kwonlyargcount", _L), ("stacksize", _L),
        ("flags", _L), ("code", _O), ("consts", _O), ("names", _O), ("localsplusnames", _O),
        ("localspluskinds", _O), ("filename", _O), ("name", _O), ("qualname", _O),
        ("firstlineno", _L), ("linetable", _O), ("exceptiontable", _O),
    ),
}
