"""Safe partial evaluation: pure functions applied to constants.

Obfuscated payloads build their real code at run time (base64, zlib, rot13, reversed strings,
strings joined from character codes ...). Folding those calls on their constant arguments
shows the code the payload would build, without running any of it.

Every callable is reached through the fixed tables of rules/decoders.toml; every argument must
be a plain constant of an exact built-in type (a subclass could override any method); every
result is paid for from a FoldBudget, and anything that could grow large is priced before it
is built. Codecs are never looked up by name: Python's registry imports a module named by the
codec. Whatever goes wrong, the answer is NOT_CONSTANT.
"""
from __future__ import annotations

import base64
import binascii
import bz2
import codecs
import lzma
import operator
import re
import sys
import zlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from string import Formatter

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


class _NotConstant:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_CONSTANT"


NOT_CONSTANT = _NotConstant()


@dataclass(frozen=True)
class FunctionRef:
    """A callable passed as a value (`map(chr, codes)`), named by its qualname."""

    qualname: str


MIB = 1024 * 1024
_MAX_DEPTH = 64  # nesting of constant containers
_ITEM_COST = 16  # budget charged per container element: about what one slot holds in memory
_MAX_INT_BITS = 1 << 20  # largest integer a fold may build (about 315,000 decimal digits)
_MAX_INT_WORK = 1 << 32  # product of operand sizes for super-linear integer arithmetic
_MAX_MODPOW_WORK = 1 << 24  # exponent bits times modulus bits for pow(a, e, m)
_MAX_ROUND_DIGITS = 4300
_MAX_SPEC_DIGITS = 9  # a width or precision with more digits is hostile
_LZMA_MEMLIMIT = 64 * MIB


class _Refused(Exception):
    """Raised inside an implementation to give up; the caller answers NOT_CONSTANT."""


class FoldBudget:
    """Bounds shared by one analysis unit: output bytes and successful folds."""

    def __init__(self, max_output: int = 16 * MIB, max_steps: int = 10_000):
        self.max_output = max_output
        self.max_steps = max_steps
        self.output_used = 0
        self.steps_used = 0
        self.exhausted = False

    @property
    def room(self) -> int:
        return max(self.max_output - self.output_used, 0)

    def need(self, size: int) -> None:
        """Refuse, and remember the unit was cut short, when `size` would not fit."""
        if size > self.room:
            self.exhausted = True
            raise _Refused("output budget")

    def pay(self, value: object) -> object:
        if not _is_constant(value):
            return NOT_CONSTANT
        cost = _cost(value)
        if cost > self.room:
            self.exhausted = True
            return NOT_CONSTANT
        self.output_used += cost
        self.steps_used += 1
        return value

    def child(self, steps: int) -> "FoldBudget":
        """A budget for the inner calls of one map or reduce, which count as a single fold."""
        return FoldBudget(max_output=self.room, max_steps=steps)


# ------------------------------------------------------------------ constants and their sizes

_SCALARS = frozenset({str, bytes, bytearray, int, float, complex, bool, type(None), type(...)})
_SEQUENCES = frozenset({list, tuple, set, frozenset})
_TEXT = (str, bytes, bytearray)
_INTS = (int, bool)


def _is_constant(value, refs_ok: bool = False, depth: int = 0) -> bool:
    kind = type(value)
    if kind in _SCALARS:
        return True
    if depth >= _MAX_DEPTH:
        return False
    if kind in _SEQUENCES:
        return all(_is_constant(item, refs_ok, depth + 1) for item in value)
    if kind is dict:
        return all(
            _is_constant(k, refs_ok, depth + 1) and _is_constant(v, refs_ok, depth + 1)
            for k, v in value.items()
        )
    if kind is FunctionRef:
        return refs_ok and type(value.qualname) is str
    if kind is slice:
        return all(_is_int(part) or part is None for part in _slice_parts(value))
    return False


def _slice_parts(value: slice) -> tuple:
    return value.start, value.stop, value.step


def _cost(value) -> int:
    kind = type(value)
    if kind in _TEXT:
        return len(value)
    if kind in _INTS:
        return value.bit_length() // 8 + 1
    if kind in _SEQUENCES:
        return _ITEM_COST * len(value) + sum(_cost(item) for item in value)
    if kind is dict:
        return sum(2 * _ITEM_COST + _cost(k) + _cost(v) for k, v in value.items())
    return 8


def _repr_bound(value) -> int:
    """At least len(repr(value)), and len(format(value)) before width and precision."""
    kind = type(value)
    if kind is str:
        return 10 * len(value) + 2  # \U0001xxxx for one unprintable character
    if kind in (bytes, bytearray):
        return 4 * len(value) + 14
    if kind in _INTS:
        return value.bit_length() + 4  # format(n, '#b') is the longest spelling
    if kind is float:
        return 330  # format(1e308, 'f') before the precision
    if kind is complex:
        return 700
    if kind in _SEQUENCES:
        return 12 + sum(_repr_bound(item) + 2 for item in value)
    if kind is dict:
        return 2 + sum(_repr_bound(k) + _repr_bound(v) + 4 for k, v in value.items())
    if kind is slice:
        return 20 + sum(_repr_bound(part) for part in _slice_parts(value))
    return 16


def _str_bound(value) -> int:
    return len(value) if type(value) is str else _repr_bound(value)


def _is_int(value) -> bool:
    return type(value) in _INTS


# ------------------------------------------------------------------ the tables, as data


@dataclass(frozen=True)
class _Tables:
    calls: dict
    methods: dict
    codecs: dict
    error_handlers: frozenset


_RECEIVER_TYPES = {
    "str": str, "bytes": bytes, "bytearray": bytearray, "int": int, "float": float,
    "list": list, "tuple": tuple, "dict": dict,
}
_TYPE_NAMES = {kind: name for name, kind in _RECEIVER_TYPES.items()}


@lru_cache(maxsize=1)
def _tables() -> _Tables:
    text = resources.files("malhug.rules").joinpath("decoders.toml").read_text("utf-8")
    data = tomllib.loads(text)
    calls = dict(data["calls"])
    unknown = {key for key in calls.values() if key not in _CALLS}
    codec_table = dict(data["codecs"])
    unknown |= {key for key in codec_table.values() if key not in _CODECS}
    methods = {name: frozenset(names) for name, names in data["methods"].items()}
    unknown |= set(methods) - set(_RECEIVER_TYPES)
    if unknown or any(m.startswith("_") for names in methods.values() for m in names):
        raise ValueError(f"decoders.toml names unknown implementations: {sorted(unknown)}")
    handlers = frozenset(data["errors"]["handlers"])
    return _Tables(calls, methods, codec_table, handlers)


@lru_cache(maxsize=1)
def foldable_names() -> frozenset:
    """Every qualname fold_call accepts."""
    tables = _tables()
    unbound = {
        f"builtins.{kind}.{method}"
        for kind, methods in tables.methods.items()
        for method in methods
    }
    return frozenset(tables.calls) | frozenset(unbound)


# ------------------------------------------------------------------ public entry points


def fold_call(qualname: str, args: tuple, kwargs: dict, budget: FoldBudget) -> object:
    """The value of `qualname(*args, **kwargs)`, or NOT_CONSTANT."""
    return _guarded(budget, _call, qualname, args, kwargs, budget)


def fold_method(receiver, method: str, args: tuple, kwargs: dict, budget: FoldBudget) -> object:
    """The value of `receiver.method(*args, **kwargs)`, or NOT_CONSTANT."""
    return _guarded(budget, _method, receiver, method, args, kwargs, budget)


def fold_binop(op: str, left, right, budget: FoldBudget) -> object:
    """The value of `left <op> right`, op being an ast operator class name ("Add", "Mod" ...)."""
    return _guarded(budget, _checked_binop, op, left, right, budget)


def fold_unaryop(op: str, operand, budget: FoldBudget) -> object:
    """The value of `<op> operand`, op being "USub", "UAdd", "Invert" or "Not"."""
    return _guarded(budget, _checked_unaryop, op, operand)


def fold_subscript(value, index, budget: FoldBudget) -> object:
    """The value of `value[index]`; index may be a slice of ints."""
    return _guarded(budget, _checked_subscript, value, index)


def fold_fstring(parts: list, budget: FoldBudget) -> object:
    """An f-string from its parts: str literals, and (value, conversion, format_spec) tuples
    for formatted values (conversion as in ast.FormattedValue: -1, 115 's', 114 'r', 97 'a';
    format_spec a str or None). Any other constant is formatted as `{value}`."""
    return _guarded(budget, _fstring, parts, budget)


def _guarded(budget, implementation, *args) -> object:
    if not isinstance(budget, FoldBudget):
        return NOT_CONSTANT
    if budget.steps_used >= budget.max_steps:
        budget.exhausted = True
        return NOT_CONSTANT
    try:
        return budget.pay(implementation(*args))
    except Exception:  # any failure of a fold means "not a constant"; never the scan's problem
        return NOT_CONSTANT


# ------------------------------------------------------------------ dispatch


def _call(qualname, args, kwargs, budget):
    if type(qualname) is not str or type(args) not in (tuple, list) or type(kwargs) is not dict:
        raise _Refused("shape")
    if not all(type(name) is str for name in kwargs):
        raise _Refused("keyword")
    tables = _tables()
    key = tables.calls.get(qualname)
    if key is None:
        return _unbound_method(qualname, args, kwargs, budget)
    refs_ok = key in _HIGHER_ORDER
    if not (_is_constant(tuple(args), refs_ok) and _is_constant(kwargs, refs_ok)):
        raise _Refused("argument")
    return _CALLS[key](tuple(args), kwargs, budget)


def _unbound_method(qualname, args, kwargs, budget):
    module, _, rest = qualname.partition(".")
    kind, _, method = rest.partition(".")
    if module != "builtins" or not args or kind not in _RECEIVER_TYPES:
        raise _Refused("unknown callable")
    if type(args[0]) is not _RECEIVER_TYPES[kind]:
        raise TypeError(f"{qualname} needs a {kind}")
    return _method(args[0], method, tuple(args[1:]), kwargs, budget)


def _method(receiver, method, args, kwargs, budget):
    kind = _TYPE_NAMES.get(type(receiver))
    if kind is None or method not in _tables().methods.get(kind, ()):
        raise _Refused("method")
    if type(args) not in (tuple, list) or type(kwargs) is not dict:
        raise _Refused("shape")
    args = tuple(args)
    if not (_is_constant(receiver) and _is_constant(args) and _is_constant(kwargs)):
        raise _Refused("argument")
    if not all(type(name) is str for name in kwargs):
        raise _Refused("keyword")
    special = _METHODS.get(method)
    if special is not None:
        return special(receiver, args, kwargs, budget)
    return getattr(receiver, method)(*args, **kwargs)


# ------------------------------------------------------------------ argument binding

_REQUIRED = object()


def _bind(args, kwargs, *params):
    """Values for (name, default) params from positional and keyword arguments."""
    if len(args) > len(params):
        raise TypeError("too many arguments")
    names = [name for name, _ in params]
    if set(kwargs) - set(names):
        raise TypeError("unexpected keyword")
    values = []
    for position, (name, default) in enumerate(params):
        if position < len(args):
            if name in kwargs:
                raise TypeError(f"{name} given twice")
            values.append(args[position])
        else:
            value = kwargs.get(name, default)
            if value is _REQUIRED:
                raise TypeError(f"missing {name}")
            values.append(value)
    return values


def _plain(function):
    """Functions whose every parameter is harmless and whose output is a small multiple of
    their input, so the caller's budget check after the call is enough."""

    def call(args, kwargs, budget):
        return function(*args, **kwargs)

    return call


# ------------------------------------------------------------------ codecs


def _normalise_codec(name) -> str:
    if type(name) is not str:
        raise TypeError("codec name must be str")
    return re.sub(r"[^a-z0-9.]+", "_", name.lower()).strip("_")


def _errors(name) -> str:
    if type(name) is not str or name not in _tables().error_handlers:
        raise _Refused("error handler")
    return name


@dataclass(frozen=True)
class _TextCodec:
    decoder: object
    encoder: object
    width: int  # most bytes one character may take
    ascii_width: int  # most bytes one ASCII character may take
    final: bool = False  # decoder takes a `final` flag

    is_text = True

    def decode(self, data, errors, budget):
        errors = _errors(errors)
        if self.final:
            return self.decoder(data, errors, True)[0]
        return self.decoder(data, errors)[0]

    def encode(self, text, errors, budget):
        errors = _errors(errors)
        if type(text) is not str:
            raise TypeError("encoding needs str")
        width = self.ascii_width if text.isascii() else self.width
        budget.need(len(text) * max(width, _HANDLER_WIDTH.get(errors, 1)) + 8)
        return self.encoder(text, errors)[0]


_HANDLER_WIDTH = {"backslashreplace": 10, "xmlcharrefreplace": 10, "namereplace": 100}


@dataclass(frozen=True)
class _BinaryCodec:
    decoder: object  # (data, budget) -> value
    encoder: object

    is_text = False

    def decode(self, data, errors, budget):
        self._strict(errors)
        return self.decoder(data, budget)

    def encode(self, data, errors, budget):
        self._strict(errors)
        return self.encoder(data, budget)

    @staticmethod
    def _strict(errors):
        if errors != "strict":
            raise ValueError("this codec only supports strict errors")


def _rot13(text, budget):
    if type(text) is not str:
        raise TypeError("rot13 works on str")
    return text.translate(_ROT13_TABLE)


_ROT13_TABLE = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
    "NOPQRSTUVWXYZABCDEFGHIJKLMnopqrstuvwxyzabcdefghijklm",
)


def _codec(name):
    key = _tables().codecs.get(_normalise_codec(name))
    if key is None:
        raise _Refused("codec not in the allowlist")
    return _CODECS[key]


def _text_codec(name):
    codec = _codec(name)
    if not codec.is_text:
        raise LookupError(f"{name!r} is not a text encoding")
    return codec


def _codecs_decode(args, kwargs, budget):
    obj, encoding, errors = _bind(
        args, kwargs, ("obj", _REQUIRED), ("encoding", "utf-8"), ("errors", "strict")
    )
    return _codec(encoding).decode(obj, errors, budget)


def _codecs_encode(args, kwargs, budget):
    obj, encoding, errors = _bind(
        args, kwargs, ("obj", _REQUIRED), ("encoding", "utf-8"), ("errors", "strict")
    )
    return _codec(encoding).encode(obj, errors, budget)


# ------------------------------------------------------------------ bounded decompression


def _decompress(make, data, budget, *, multi=False, between=None) -> bytes:
    """Every stream of `data`, never holding more output than the budget has room for."""
    if type(data) not in (bytes, bytearray):
        raise TypeError("compressed data must be bytes")
    pieces, size = [], 0
    while True:
        decompressor = make()
        # max_length is the bound: zlib, bz2 and lzma stop producing output there
        pieces.append(decompressor.decompress(data, budget.room - size + 1))
        size += len(pieces[-1])
        budget.need(size)
        if not decompressor.eof:
            raise ValueError("compressed data ended before the end of the stream")
        data = decompressor.unused_data
        if between is not None:
            data = between(data)
        if not (multi and data):
            return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def _zlib_decompress(args, kwargs, budget):
    data, wbits, bufsize = _bind(
        args, kwargs, ("data", _REQUIRED), ("wbits", zlib.MAX_WBITS), ("bufsize", 0)
    )
    if not (_is_int(wbits) and _is_int(bufsize)):
        raise TypeError("wbits and bufsize must be int")
    return _decompress(lambda: zlib.decompressobj(wbits), data, budget)


def _gzip_decompress(args, kwargs, budget):
    (data,) = _bind(args, kwargs, ("data", _REQUIRED))
    return _decompress(
        lambda: zlib.decompressobj(16 + zlib.MAX_WBITS), data, budget,
        multi=True, between=lambda rest: rest.lstrip(b"\x00"),
    )


def _bz2_decompress(args, kwargs, budget):
    (data,) = _bind(args, kwargs, ("data", _REQUIRED))
    return _decompress(bz2.BZ2Decompressor, data, budget, multi=True)


def _lzma_decompress(args, kwargs, budget):
    data, form, memlimit, filters = _bind(
        args, kwargs, ("data", _REQUIRED), ("format", lzma.FORMAT_AUTO),
        ("memlimit", None), ("filters", None),
    )
    if filters is not None or not _is_int(form):
        raise _Refused("lzma filters")
    if memlimit is not None and not _is_int(memlimit):
        raise TypeError("memlimit must be int")
    limit = _LZMA_MEMLIMIT if memlimit is None else min(memlimit, _LZMA_MEMLIMIT)
    return _decompress(lambda: lzma.LZMADecompressor(form, limit), data, budget, multi=True)


def _zlib_codec_decode(data, budget):
    return _decompress(zlib.decompressobj, data, budget)


def _bz2_codec_decode(data, budget):
    return _decompress(bz2.BZ2Decompressor, data, budget, multi=True)


def _zlib_compress(args, kwargs, budget):
    data, level, wbits = _bind(
        args, kwargs, ("data", _REQUIRED), ("level", -1), ("wbits", zlib.MAX_WBITS)
    )
    return zlib.compress(data, level, wbits)


# ------------------------------------------------------------------ formatting

_FIELDS = Formatter().parse
_NUMBER = re.compile(r"\d+")
_PERCENT_SPEC = re.compile(r"%(?:\([^()]*\))?[-#0 +]*(\*|\d*)(?:\.(\*|\d*))?[hlL]?(.)", re.S)


def _spec_extra(spec: str) -> int:
    """Characters a format spec can add: its widths and precisions, and digit grouping."""
    total = 0
    for number in _NUMBER.findall(spec):
        if len(number) > _MAX_SPEC_DIGITS:
            raise _Refused("format width")
        total += int(number)
    return total


def _field_bound(value_bound: int, spec: str) -> int:
    grouping = 2 if ("," in spec or "_" in spec or "n" in spec) else 1
    return value_bound * grouping + _spec_extra(spec) + 16


def _format_bound(fmt: str, values) -> int:
    """At least len(fmt.format(...)) for arguments drawn from `values`."""
    values = list(values)
    str_bound = max((_str_bound(v) for v in values), default=0)
    repr_bound = max((_repr_bound(v) for v in values), default=0)
    total = 0
    for literal, field, spec, conversion in _FIELDS(fmt):
        total += len(literal)
        if field is None:
            continue
        if "." in field or "{" in (spec or ""):
            raise _Refused("attribute access or nested field in a format string")
        base = repr_bound if conversion in ("r", "a") else str_bound
        total += _field_bound(base, spec or "")
    return total


def _percent_bound(fmt, right) -> int:
    """At least len(fmt % right); refuses `*` widths and anything it cannot parse."""
    text = fmt if type(fmt) is str else codecs.latin_1_decode(fmt)[0]
    values = [right]
    if type(right) is tuple:
        values += list(right)
    elif type(right) is dict:
        values += list(right.values())
    str_bound = max(_str_bound(v) for v in values)
    repr_bound = max(_repr_bound(v) for v in values)
    total, position = len(text), text.find("%")
    while position >= 0:
        spec = _PERCENT_SPEC.match(text, position)
        if spec is None or "*" in (spec.group(1), spec.group(2)):
            raise _Refused("percent format")
        if spec.group(3) != "%":
            base = repr_bound if spec.group(3) in "ra" else str_bound
            total += _field_bound(base, f"{spec.group(1)}.{spec.group(2) or ''}")
        position = text.find("%", spec.end())
    return total


def _str_format(receiver, args, kwargs, budget):
    if type(receiver) is not str:
        raise TypeError("format is a str method")
    budget.need(_format_bound(receiver, [*args, *kwargs.values()]))
    return receiver.format(*args, **kwargs)


def _str_format_map(receiver, args, kwargs, budget):
    (mapping,) = _bind(args, kwargs, ("mapping", _REQUIRED))
    if type(mapping) is not dict:
        raise TypeError("format_map needs a dict")
    budget.need(_format_bound(receiver, [*mapping.values()]))
    return receiver.format_map(mapping)


def _format_value(value, spec, budget):
    if type(spec) is not str:
        raise TypeError("format spec must be str")
    budget.need(_field_bound(_str_bound(value), spec))
    return format(value, spec)


_CONVERSIONS = {-1: None, 115: str, 114: repr, 97: ascii}


def _fstring(parts, budget):
    if type(parts) not in (list, tuple):
        raise _Refused("shape")
    pieces, total = [], 0
    for part in parts:
        if type(part) is str:
            pieces.append(part)
            total += len(part)
            continue
        if type(part) is tuple and len(part) == 3:
            value, conversion, spec = part
        else:  # a formatted value already folded to its constant
            value, conversion, spec = part, -1, None
        if not _is_constant(value) or conversion not in _CONVERSIONS:
            raise _Refused("f-string value")
        convert = _CONVERSIONS[conversion]
        if convert is not None:
            budget.need(_repr_bound(value))
            value = convert(value)
        pieces.append(_format_value(value, "" if spec is None else spec, budget))
        total += len(pieces[-1])
        budget.need(total)
    budget.need(total)
    return "".join(pieces)


# ------------------------------------------------------------------ operators


def _int_bits(value) -> int:
    return abs(int(value)).bit_length()


def _check_mult(left, right, budget):
    if _is_int(left) and _is_int(right):
        _check_int_work(left, right)
        if _int_bits(left) + _int_bits(right) > _MAX_INT_BITS:
            raise _Refused("integer too large")
        return
    sequence, count = (left, right) if _is_int(right) else (right, left)
    if _is_int(count) and type(sequence) in (str, bytes, bytearray, list, tuple):
        budget.need(_cost(sequence) * max(int(count), 0))


def _check_int_work(left, right):
    if _is_int(left) and _is_int(right) and _int_bits(left) * _int_bits(right) > _MAX_INT_WORK:
        raise _Refused("integer arithmetic too costly")


def _check_pow(base, exponent, budget):
    if _is_int(base) and _is_int(exponent) and exponent > 0:
        if max(_int_bits(base), 1) * exponent > _MAX_INT_BITS:
            raise _Refused("integer too large")


def _check_lshift(left, right, budget):
    if _is_int(left) and _is_int(right) and _int_bits(left) + right > _MAX_INT_BITS:
        raise _Refused("integer too large")


def _check_add(left, right, budget):
    if type(left) in (str, bytes, bytearray, list, tuple):
        budget.need(_cost(left) + _cost(right))


def _check_mod(left, right, budget):
    if type(left) in _TEXT:
        budget.need(_percent_bound(left, right))
    else:
        _check_int_work(left, right)


def _check_division(left, right, budget):
    _check_int_work(left, right)


_BINOPS = {
    "Add": (operator.add, _check_add),
    "Sub": (operator.sub, None),
    "Mult": (operator.mul, _check_mult),
    "Div": (operator.truediv, _check_division),
    "FloorDiv": (operator.floordiv, _check_division),
    "Mod": (operator.mod, _check_mod),
    "Pow": (operator.pow, _check_pow),
    "LShift": (operator.lshift, _check_lshift),
    "RShift": (operator.rshift, None),
    "BitOr": (operator.or_, None),
    "BitXor": (operator.xor, None),
    "BitAnd": (operator.and_, None),
}

_UNARYOPS = {
    "USub": operator.neg,
    "UAdd": operator.pos,
    "Invert": operator.invert,
    "Not": operator.not_,
}


def _checked_binop(op, left, right, budget):
    if type(op) is not str or op not in _BINOPS:
        raise _Refused("operator")
    if not (_is_constant(left) and _is_constant(right)):
        raise _Refused("operand")
    function, check = _BINOPS[op]
    if check is not None:
        check(left, right, budget)
    return function(left, right)


def _checked_unaryop(op, operand):
    if type(op) is not str or op not in _UNARYOPS or not _is_constant(operand):
        raise _Refused("operator")
    return _UNARYOPS[op](operand)


def _checked_subscript(value, index):
    if not (_is_constant(value) and _is_constant(index)):
        raise _Refused("subscript")
    return value[index]


def _binop_call(op):
    def call(args, kwargs, budget):
        left, right = _bind(args, kwargs, ("a", _REQUIRED), ("b", _REQUIRED))
        return _checked_binop(op, left, right, budget)

    return call


def _concat(args, kwargs, budget):
    left, right = _bind(args, kwargs, ("a", _REQUIRED), ("b", _REQUIRED))
    if type(left) not in (str, bytes, bytearray, list, tuple):
        raise TypeError("concat needs sequences")
    return _checked_binop("Add", left, right, budget)


def _unary_call(op):
    def call(args, kwargs, budget):
        (operand,) = _bind(args, kwargs, ("a", _REQUIRED))
        return _checked_unaryop(op, operand)

    return call


def _getitem(args, kwargs, budget):
    value, index = _bind(args, kwargs, ("a", _REQUIRED), ("b", _REQUIRED))
    return _checked_subscript(value, index)


# ------------------------------------------------------------------ builtins

_MISSING = object()


def _str(args, kwargs, budget):
    obj, encoding, errors = _bind(
        args, kwargs, ("object", ""), ("encoding", None), ("errors", None)
    )
    if encoding is None and errors is None:
        budget.need(_str_bound(obj))
        return str(obj)
    if type(obj) not in (bytes, bytearray):
        raise TypeError("decoding str is not supported")
    return _text_codec("utf-8" if encoding is None else encoding).decode(
        obj, "strict" if errors is None else errors, budget
    )


def _byte_string(kind):
    def build(args, kwargs, budget):
        source, encoding, errors = _bind(
            args, kwargs, ("source", _MISSING), ("encoding", None), ("errors", None)
        )
        if source is _MISSING:
            return kind()
        if type(source) is str:
            if encoding is None:
                raise TypeError("string argument without an encoding")
            codec = _text_codec(encoding)
            return kind(codec.encode(source, "strict" if errors is None else errors, budget))
        if encoding is not None or errors is not None:
            raise TypeError("encoding without a string argument")
        if _is_int(source):
            budget.need(source)
        return kind(source)

    return build


def _int(args, kwargs, budget):
    if not args and not kwargs:
        return 0
    return int(*args, **kwargs)


def _items(value, budget) -> int:
    """Refuse a container result of `value`'s length unless its slots fit the budget."""
    count = len(value)
    budget.need(count * _ITEM_COST)
    return count


def _container(kind):
    def build(args, kwargs, budget):
        (source,) = _bind(args, kwargs, ("iterable", ()))
        _items(source, budget)
        return kind(source)

    return build


def _reversed(args, kwargs, budget):
    (sequence,) = _bind(args, kwargs, ("sequence", _REQUIRED))
    _items(sequence, budget)
    return tuple(reversed(sequence))


def _sorted(args, kwargs, budget):
    iterable, key, reverse = _bind(
        args, kwargs, ("iterable", _REQUIRED), ("key", None), ("reverse", False)
    )
    if key is not None:
        raise _Refused("sort key")
    _items(iterable, budget)
    return sorted(iterable, reverse=reverse)


def _range(args, kwargs, budget):
    if kwargs:
        raise TypeError("range takes no keyword arguments")
    numbers = range(*args)
    _items(numbers, budget)
    return tuple(numbers)


def _zip(args, kwargs, budget):
    if kwargs:
        raise _Refused("zip keywords")
    count = min((len(iterable) for iterable in args), default=0)
    budget.need(count * _ITEM_COST * (len(args) + 1))
    return tuple(zip(*args))


def _sum(args, kwargs, budget):
    iterable, start = _bind(args, kwargs, ("iterable", _REQUIRED), ("start", 0))
    numbers = (int, bool, float, complex)
    if type(start) not in numbers or not all(type(item) in numbers for item in iterable):
        raise _Refused("sum of non-numbers")  # sum of sequences is quadratic
    return sum(iterable, start)


def _round(args, kwargs, budget):
    number, ndigits = _bind(args, kwargs, ("number", _REQUIRED), ("ndigits", None))
    if ndigits is None:
        return round(number)
    if not _is_int(ndigits) or abs(ndigits) > _MAX_ROUND_DIGITS:
        raise _Refused("round digits")
    return round(number, ndigits)


def _divmod(args, kwargs, budget):
    left, right = _bind(args, kwargs, ("a", _REQUIRED), ("b", _REQUIRED))
    _check_int_work(left, right)
    return divmod(left, right)


def _pow(args, kwargs, budget):
    base, exponent, modulus = _bind(
        args, kwargs, ("base", _REQUIRED), ("exp", _REQUIRED), ("mod", None)
    )
    if modulus is None:
        return _checked_binop("Pow", base, exponent, budget)
    if not (_is_int(base) and _is_int(exponent) and _is_int(modulus)):
        raise TypeError("pow() with a modulus needs integers")
    if _int_bits(exponent) * max(_int_bits(modulus), _int_bits(base)) > _MAX_MODPOW_WORK:
        raise _Refused("modular power too costly")
    return pow(base, exponent, modulus)


def _representation(function):
    def call(args, kwargs, budget):
        (obj,) = _bind(args, kwargs, ("obj", _REQUIRED))
        budget.need(_repr_bound(obj))
        return function(obj)

    return call


def _format(args, kwargs, budget):
    value, spec = _bind(args, kwargs, ("value", _REQUIRED), ("format_spec", ""))
    return _format_value(value, spec, budget)


def _from_bytes(args, kwargs, budget):
    data, byteorder, signed = _bind(
        args, kwargs, ("bytes", _REQUIRED), ("byteorder", "big"), ("signed", False)
    )
    if type(data) not in (bytes, bytearray, list, tuple):
        raise TypeError("from_bytes needs bytes")
    return int.from_bytes(data, byteorder, signed=signed)


def _maketrans(kind):
    def call(args, kwargs, budget):
        if kwargs:
            raise TypeError("maketrans takes no keyword arguments")
        return kind.maketrans(*args)

    return call


def _fromhex(kind):
    def call(args, kwargs, budget):
        (text,) = _bind(args, kwargs, ("string", _REQUIRED))
        return kind.fromhex(text)

    return call


# ------------------------------------------------------------------ higher order


def _function(value) -> str:
    if type(value) is not FunctionRef or type(value.qualname) is not str:
        raise _Refused("function argument")
    return value.qualname


def _inner(qualname, args, inner_budget, budget):
    value = fold_call(qualname, args, {}, inner_budget)
    if inner_budget.exhausted:
        budget.exhausted = True
    if value is NOT_CONSTANT:
        raise _Refused("inner call")
    return value


def _map(args, kwargs, budget):
    if kwargs or len(args) < 2:
        raise TypeError("map(function, iterable, ...)")
    qualname = _function(args[0])
    iterables = args[1:]
    count = min(len(iterable) for iterable in iterables)
    budget.need(count * _ITEM_COST)
    inner = budget.child(count + 1)
    return tuple(_inner(qualname, items, inner, budget) for items in zip(*iterables))


def _filter(args, kwargs, budget):
    function, iterable = _bind(args, kwargs, ("function", _REQUIRED), ("iterable", _REQUIRED))
    _items(iterable, budget)
    if function is None:
        return tuple(item for item in iterable if item)
    qualname = _function(function)
    inner = budget.child(len(iterable) + 1)
    return tuple(item for item in iterable if _inner(qualname, (item,), inner, budget))


def _reduce(args, kwargs, budget):
    function, iterable, initial = _bind(
        args, kwargs, ("function", _REQUIRED), ("iterable", _REQUIRED), ("initial", _MISSING)
    )
    qualname = _function(function)
    items = iter(iterable)
    accumulated = next(items) if initial is _MISSING else initial
    inner = budget.child(len(iterable) + 1)
    for item in items:
        accumulated = _inner(qualname, (accumulated, item), inner, budget)
    return accumulated


# ------------------------------------------------------------------ methods with a price


def _check_pad(receiver, args, kwargs, budget):
    width = args[0] if args else kwargs.get("width", 0)
    if _is_int(width):
        budget.need(max(int(width), len(receiver)))


def _priced(check, method):
    def call(receiver, args, kwargs, budget):
        check(receiver, args, kwargs, budget)
        return getattr(receiver, method)(*args, **kwargs)

    return call


def _check_replace(receiver, args, kwargs, budget):
    old, new, count = _bind(
        args, kwargs, ("old", _REQUIRED), ("new", _REQUIRED), ("count", -1)
    )
    if type(old) not in _TEXT or type(new) not in _TEXT or not _is_int(count):
        raise TypeError("replace(old, new, count)")
    matches = receiver.count(old) if old else len(receiver) + 1
    if count >= 0:
        matches = min(matches, count)
    budget.need(len(receiver) + matches * max(len(new) - len(old), 0))


def _check_expandtabs(receiver, args, kwargs, budget):
    (tabsize,) = _bind(args, kwargs, ("tabsize", 8))
    if _is_int(tabsize):
        tab = "\t" if type(receiver) is str else b"\t"
        budget.need(len(receiver) + receiver.count(tab) * max(int(tabsize), 0))


def _check_join(receiver, args, kwargs, budget):
    (iterable,) = _bind(args, kwargs, ("iterable", _REQUIRED))
    count = len(iterable)
    parts = sum(len(item) for item in iterable if type(item) in _TEXT)
    budget.need(parts + len(receiver) * max(count - 1, 0))


_LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def _check_split(receiver, args, kwargs, budget):
    sep = args[0] if args else kwargs.get("sep")
    if sep is not None and type(sep) in _TEXT and len(sep) > 0:
        pieces = receiver.count(sep) + 1
    else:
        pieces = len(receiver) // 2 + 1
    budget.need(pieces * _ITEM_COST + len(receiver))


def _check_splitlines(receiver, args, kwargs, budget):
    if type(receiver) is str:
        breaks = sum(receiver.count(char) for char in _LINE_BREAKS)
    else:
        breaks = receiver.count(b"\n") + receiver.count(b"\r")
    budget.need((breaks + 1) * _ITEM_COST + len(receiver))


def _check_translate(receiver, args, kwargs, budget):
    if type(receiver) is not str or not args:
        return
    table = args[0]
    values = table.values() if type(table) is dict else table
    longest = max((len(v) for v in values if type(v) is str), default=1)
    budget.need(len(receiver) * max(longest, 1))


def _check_to_bytes(receiver, args, kwargs, budget):
    length = args[0] if args else kwargs.get("length", 1)
    if _is_int(length):
        budget.need(length)


def _check_hex(receiver, args, kwargs, budget):
    if type(receiver) in _TEXT:
        budget.need(3 * len(receiver) + 1)


def _encode(receiver, args, kwargs, budget):
    encoding, errors = _bind(args, kwargs, ("encoding", "utf-8"), ("errors", "strict"))
    return _text_codec(encoding).encode(receiver, errors, budget)


def _decode(receiver, args, kwargs, budget):
    encoding, errors = _bind(args, kwargs, ("encoding", "utf-8"), ("errors", "strict"))
    return _text_codec(encoding).decode(receiver, errors, budget)


def _dict_view(method):
    def call(receiver, args, kwargs, budget):
        _items(receiver, budget)
        return list(getattr(receiver, method)(*args, **kwargs))

    return call


_METHODS = {
    "encode": _encode,
    "decode": _decode,
    "format": _str_format,
    "format_map": _str_format_map,
    "replace": _priced(_check_replace, "replace"),
    "center": _priced(_check_pad, "center"),
    "ljust": _priced(_check_pad, "ljust"),
    "rjust": _priced(_check_pad, "rjust"),
    "zfill": _priced(_check_pad, "zfill"),
    "expandtabs": _priced(_check_expandtabs, "expandtabs"),
    "join": _priced(_check_join, "join"),
    "split": _priced(_check_split, "split"),
    "rsplit": _priced(_check_split, "rsplit"),
    "splitlines": _priced(_check_splitlines, "splitlines"),
    "translate": _priced(_check_translate, "translate"),
    "to_bytes": _priced(_check_to_bytes, "to_bytes"),
    "hex": _priced(_check_hex, "hex"),
    "keys": _dict_view("keys"),
    "values": _dict_view("values"),
    "items": _dict_view("items"),
}


# ------------------------------------------------------------------ implementation keys

_CODECS = {
    "utf_8": _TextCodec(codecs.utf_8_decode, codecs.utf_8_encode, 4, 1, final=True),
    "latin_1": _TextCodec(codecs.latin_1_decode, codecs.latin_1_encode, 1, 1),
    "ascii": _TextCodec(codecs.ascii_decode, codecs.ascii_encode, 1, 1),
    "utf_16": _TextCodec(codecs.utf_16_decode, codecs.utf_16_encode, 4, 2, final=True),
    "utf_16_le": _TextCodec(codecs.utf_16_le_decode, codecs.utf_16_le_encode, 4, 2, final=True),
    "utf_16_be": _TextCodec(codecs.utf_16_be_decode, codecs.utf_16_be_encode, 4, 2, final=True),
    "utf_32": _TextCodec(codecs.utf_32_decode, codecs.utf_32_encode, 4, 4, final=True),
    "utf_32_le": _TextCodec(codecs.utf_32_le_decode, codecs.utf_32_le_encode, 4, 4, final=True),
    "utf_32_be": _TextCodec(codecs.utf_32_be_decode, codecs.utf_32_be_encode, 4, 4, final=True),
    "unicode_escape": _TextCodec(
        codecs.unicode_escape_decode, codecs.unicode_escape_encode, 10, 4
    ),
    "raw_unicode_escape": _TextCodec(
        codecs.raw_unicode_escape_decode, codecs.raw_unicode_escape_encode, 10, 1
    ),
    "rot13": _BinaryCodec(_rot13, _rot13),
    "hex": _BinaryCodec(
        lambda data, budget: binascii.a2b_hex(data), lambda data, budget: binascii.b2a_hex(data)
    ),
    "base64": _BinaryCodec(
        lambda data, budget: base64.decodebytes(data),
        lambda data, budget: base64.encodebytes(data),
    ),
    "zlib": _BinaryCodec(_zlib_codec_decode, lambda data, budget: zlib.compress(data)),
    "bz2": _BinaryCodec(_bz2_codec_decode, lambda data, budget: bz2.compress(data)),
    "quopri": _BinaryCodec(
        lambda data, budget: binascii.a2b_qp(data),
        lambda data, budget: binascii.b2a_qp(data, quotetabs=True),
    ),
}

_CALLS = {
    "b64decode": _plain(base64.b64decode),
    "standard_b64decode": _plain(base64.standard_b64decode),
    "urlsafe_b64decode": _plain(base64.urlsafe_b64decode),
    "b32decode": _plain(base64.b32decode),
    "b32hexdecode": _plain(base64.b32hexdecode),
    "b16decode": _plain(base64.b16decode),
    "b85decode": _plain(base64.b85decode),
    "a85decode": _plain(base64.a85decode),
    "decodebytes": _plain(base64.decodebytes),
    "b64encode": _plain(base64.b64encode),
    "standard_b64encode": _plain(base64.standard_b64encode),
    "urlsafe_b64encode": _plain(base64.urlsafe_b64encode),
    "b32encode": _plain(base64.b32encode),
    "b32hexencode": _plain(base64.b32hexencode),
    "b16encode": _plain(base64.b16encode),
    "b85encode": _plain(base64.b85encode),
    "a85encode": _plain(base64.a85encode),
    "encodebytes": _plain(base64.encodebytes),
    "a2b_base64": _plain(binascii.a2b_base64),
    "b2a_base64": _plain(binascii.b2a_base64),
    "a2b_hex": _plain(binascii.a2b_hex),
    "b2a_hex": _plain(binascii.b2a_hex),
    "a2b_qp": _plain(binascii.a2b_qp),
    "b2a_qp": _plain(binascii.b2a_qp),
    "a2b_uu": _plain(binascii.a2b_uu),
    "b2a_uu": _plain(binascii.b2a_uu),
    "crc32": _plain(binascii.crc32),
    "adler32": _plain(zlib.adler32),
    "codecs_decode": _codecs_decode,
    "codecs_encode": _codecs_encode,
    "zlib_decompress": _zlib_decompress,
    "zlib_compress": _zlib_compress,
    "gzip_decompress": _gzip_decompress,
    "bz2_decompress": _bz2_decompress,
    "lzma_decompress": _lzma_decompress,
    "str": _str,
    "bytes": _byte_string(bytes),
    "bytearray": _byte_string(bytearray),
    "int": _int,
    "float": _plain(float),
    "bool": _plain(bool),
    "list": _container(list),
    "tuple": _container(tuple),
    "chr": _plain(chr),
    "ord": _plain(ord),
    "hex": _plain(hex),
    "oct": _plain(oct),
    "bin": _plain(bin),
    "repr": _representation(repr),
    "ascii": _representation(ascii),
    "format": _format,
    "str_maketrans": _maketrans(str),
    "bytes_maketrans": _maketrans(bytes),
    "bytes_fromhex": _fromhex(bytes),
    "bytearray_fromhex": _fromhex(bytearray),
    "int_from_bytes": _from_bytes,
    "reversed": _reversed,
    "sorted": _sorted,
    "range": _range,
    "slice": _plain(slice),
    "len": _plain(len),
    "min": _plain(min),
    "max": _plain(max),
    "sum": _sum,
    "zip": _zip,
    "abs": _plain(abs),
    "round": _round,
    "divmod": _divmod,
    "pow": _pow,
    "map": _map,
    "filter": _filter,
    "reduce": _reduce,
    "add": _binop_call("Add"),
    "concat": _concat,
    "sub": _binop_call("Sub"),
    "mul": _binop_call("Mult"),
    "truediv": _binop_call("Div"),
    "floordiv": _binop_call("FloorDiv"),
    "mod": _binop_call("Mod"),
    "pow_op": _binop_call("Pow"),
    "lshift": _binop_call("LShift"),
    "rshift": _binop_call("RShift"),
    "and_": _binop_call("BitAnd"),
    "or_": _binop_call("BitOr"),
    "xor": _binop_call("BitXor"),
    "neg": _unary_call("USub"),
    "pos": _unary_call("UAdd"),
    "invert": _unary_call("Invert"),
    "not_": _unary_call("Not"),
    "getitem": _getitem,
}

# implementations whose arguments may hold a FunctionRef
_HIGHER_ORDER = frozenset({"map", "filter", "reduce"})
