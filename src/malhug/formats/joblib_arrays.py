"""joblib's inline arrays: the bytes joblib writes into a pickle stream after each array wrapper.

joblib.dump replaces every numpy array by a `NumpyArrayWrapper` and writes the array right
after the wrapper's BUILD: raw bytes (since joblib 1.2 preceded by one padding-length byte and
that much padding, when the wrapper's state has `numpy_array_alignment_bytes`), or, for dtypes
holding Python objects, a whole nested pickle. The hook steps over raw bytes without keeping
them and runs a nested machine over a nested pickle, so that the outer stream is read from the
right place and objects inside object arrays are judged like any other.
"""
from __future__ import annotations

import re
import weakref

from ..pickle.machine import PickleError, PickleMachine
from ..pickle.values import Call, Const, DictValue, Global, Result, TupleValue

WRAPPER_SUFFIX = "numpy_pickle.NumpyArrayWrapper"
MAX_DTYPE_DEPTH = 32
MAX_NESTED_ARRAYS = 16  # object arrays inside object arrays inside ...

# itemsize per numpy kind letter, as a multiple of the number in the dtype string ("U5" is 20 bytes)
_KIND_UNIT = {"b": 1, "i": 1, "u": 1, "f": 1, "c": 1, "V": 1, "S": 1, "a": 1, "U": 4, "M": 1, "m": 1}
_FLEXIBLE = {"V", "S", "a", "U"}
_TYPE_STRING = re.compile(r"([A-Za-z?])(\d*)")
ITEM_REFCOUNT = 0x01  # numpy's NPY_ITEM_REFCOUNT flag: the dtype holds Python objects

# state tuple length -> positions of (sub-array, fields, elsize, flags), per numpy's __setstate__
_STATE_LAYOUTS = {9: (2, 4, 5, 7), 8: (2, 4, 5, 7), 7: (2, 4, 5, None), 6: (2, 3, 4, None), 5: (1, 2, 3, None)}

_dtype_states: "weakref.WeakKeyDictionary[PickleMachine, dict]" = weakref.WeakKeyDictionary()
_nesting: "weakref.WeakKeyDictionary[PickleMachine, int]" = weakref.WeakKeyDictionary()


def joblib_hook(machine: PickleMachine, call: Call) -> None:
    if call.kind != "build" or not isinstance(call.func, Result):
        return
    if _is_dtype(call.func):
        _dtype_states.setdefault(machine, {})[id(call.func)] = call.args[0] if call.args else None
    elif _is_array_wrapper(call.func):
        _read_array(machine, call)


CONSTRUCTING_CALLS = {"reduce", "newobj", "newobj_ex", "obj", "inst"}
# Protocols 0 and 1 (and hand-written streams) create instances through these, class first.
INSTANCE_FACTORIES = {"copyreg._reconstructor", "copyreg.__newobj__", "copyreg.__newobj_ex__"}


def _constructed_class(value: Result) -> str | None:
    """The qualified name of the class (or callable) whose call made `value`."""
    call = value.call
    if call.kind not in CONSTRUCTING_CALLS or not isinstance(call.func, Global):
        return None
    name = call.func.qualname
    if name in INSTANCE_FACTORIES and call.args and isinstance(call.args[0], Global):
        return call.args[0].qualname
    return name


def _is_array_wrapper(value: Result) -> bool:
    name = _constructed_class(value)
    return name is not None and name.endswith(WRAPPER_SUFFIX)


def _is_dtype(value) -> bool:
    if not isinstance(value, Result):
        return False
    name = _constructed_class(value)
    return name is not None and (name == "numpy.dtype" or (name.startswith("numpy.") and name.endswith(".dtype")))


def _read_array(machine: PickleMachine, call: Call) -> None:
    state = call.args[0] if call.args else None
    if not isinstance(state, DictValue):
        raise PickleError("joblib array wrapper without a readable state: cannot find where its data ends")
    fields = _const_keys(state)
    if "dtype" not in fields or "shape" not in fields:
        raise PickleError("joblib array wrapper state lacks dtype or shape")
    itemsize, holds_objects = _dtype_layout(fields["dtype"], _dtype_states.get(machine, {}), 0)
    if holds_objects:
        _read_nested_pickle(machine, call)
        return
    nbytes = _element_count(fields["shape"]) * itemsize
    alignment = fields.get("numpy_array_alignment_bytes")
    if alignment is not None and not (isinstance(alignment, Const) and alignment.value is None):
        padding = machine.reader.read(1)[0]
        machine.reader.skip(padding)
    machine.reader.skip(nbytes)


def _const_keys(state: DictValue) -> dict:
    found = {}
    for key, value in state.items:
        if isinstance(key, Const) and isinstance(key.value, str):
            found[key.value] = value
    return found


def _element_count(shape) -> int:
    if not isinstance(shape, TupleValue):
        raise PickleError("joblib array shape is not a tuple: cannot size its data")
    count = 1
    for size in shape.items:
        if not (isinstance(size, Const) and type(size.value) is int and size.value >= 0):
            raise PickleError("joblib array shape is not made of sizes: cannot size its data")
        count *= size.value
    return count


def _dtype_layout(dtype, states: dict, depth: int) -> tuple[int, bool]:
    """(itemsize, holds Python objects) of a symbolic numpy.dtype, from its arguments and state."""
    if depth > MAX_DTYPE_DEPTH:
        raise PickleError("joblib array dtype nested too deeply")
    if not _is_dtype(dtype):
        raise PickleError("joblib array dtype is not a numpy.dtype: cannot size its data")
    args = dtype.call.args
    if not args or not (isinstance(args[0], Const) and isinstance(args[0].value, str)):
        raise PickleError("joblib array dtype is not built from a type string")
    kind, itemsize, holds_objects = _parse_type_string(args[0].value)
    state = states.get(id(dtype))
    if state is None:
        return itemsize, holds_objects
    if not isinstance(state, TupleValue) or len(state.items) not in _STATE_LAYOUTS:
        raise PickleError("joblib array dtype has an unknown state layout")
    subarray_at, fields_at, elsize_at, flags_at = _STATE_LAYOUTS[len(state.items)]
    items = state.items
    if flags_at is not None and _int(items[flags_at], "flags") & ITEM_REFCOUNT:
        holds_objects = True
    holds_objects |= _subarray_holds_objects(items[subarray_at], states, depth)
    holds_objects |= _fields_hold_objects(items[fields_at], states, depth)
    elsize = _int(items[elsize_at], "item size")
    if kind in _FLEXIBLE and elsize >= 0:
        itemsize = elsize  # numpy takes a flexible dtype's size from its state
    return itemsize, holds_objects


def _parse_type_string(text: str) -> tuple[str, int, bool]:
    code = text.lstrip("<>|=")
    if code.startswith("O") or code in ("object", "object_"):
        return "O", 8, True
    match = _TYPE_STRING.fullmatch(code)
    if match is None:
        raise PickleError(f"joblib array dtype {text!r:.40} is not one this scanner can size")
    kind, digits = match.groups()
    kind = {"?": "b"}.get(kind, kind)
    if kind not in _KIND_UNIT:
        raise PickleError(f"joblib array dtype {text!r:.40} is not one this scanner can size")
    count = int(digits) if digits else (1 if kind == "b" else 0)
    if count == 0 and kind not in _FLEXIBLE:
        raise PickleError(f"joblib array dtype {text!r:.40} has no size")
    return kind, count * _KIND_UNIT[kind], False


def _int(value, what: str) -> int:
    if isinstance(value, Const) and type(value.value) is int:
        return value.value
    raise PickleError(f"joblib array dtype {what} is not a constant")


def _subarray_holds_objects(value, states: dict, depth: int) -> bool:
    if isinstance(value, Const) and value.value is None:
        return False
    if isinstance(value, TupleValue) and value.items:
        return _dtype_layout(value.items[0], states, depth + 1)[1]
    raise PickleError("joblib array dtype has an unreadable sub-array")


def _fields_hold_objects(value, states: dict, depth: int) -> bool:
    if isinstance(value, Const) and value.value is None:
        return False
    if not isinstance(value, DictValue):
        raise PickleError("joblib array dtype has unreadable fields")
    holds = False
    for _name, field in value.items:
        if not isinstance(field, TupleValue) or not field.items:
            raise PickleError("joblib array dtype has an unreadable field")
        holds |= _dtype_layout(field.items[0], states, depth + 1)[1]
    return holds


def _read_nested_pickle(machine: PickleMachine, call: Call) -> None:
    """joblib loads an object array with a fresh unpickler on the same file: one whole pickle."""
    depth = _nesting.get(machine, 0) + 1
    if depth > MAX_NESTED_ARRAYS:
        raise PickleError("joblib object arrays nested too deeply")
    nested = PickleMachine(machine.reader, machine.limits, machine.deadline, hook=joblib_hook, max_pickles=1)
    _nesting[nested] = depth
    inner = nested.run()
    _merge(machine, inner)
    if inner.limit is not None:
        raise inner.limit
    if inner.error:
        raise PickleError(f"object array pickle inside joblib array wrapper broken: {inner.error}")


def _merge(machine: PickleMachine, inner) -> None:
    """The nested program runs as part of the outer load: its imports and calls join the trace."""
    outer = machine.trace
    outer.globals.extend(inner.globals)
    for nested_call in inner.calls:
        nested_call.index = len(outer.calls)
        nested_call.pickle_index = outer.pickles
        outer.calls.append(nested_call)
    outer.anomalies.extend(inner.anomalies)
