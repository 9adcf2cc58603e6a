"""A tiny protobuf wire-format encoder for writing fixtures without the schema's library."""
from __future__ import annotations

import struct


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def key(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


def uint(number: int, value: int) -> bytes:
    return key(number, 0) + varint(value)


def fixed64(number: int, value: float) -> bytes:
    return key(number, 1) + struct.pack("<d", value)


def length_prefix(number: int, length: int) -> bytes:
    """The key and length of a length-delimited field whose payload is written separately."""
    return key(number, 2) + varint(length)


def blob(number: int, payload: bytes | str) -> bytes:
    if isinstance(payload, str):
        payload = payload.encode()
    return length_prefix(number, len(payload)) + payload


def message(number: int, *parts: bytes) -> bytes:
    return blob(number, b"".join(parts))


# -- TensorFlow -------------------------------------------------------------------------------

DT_FLOAT, DT_STRING = 1, 7


def string_tensor(*values: str) -> bytes:
    return uint(1, DT_STRING) + b"".join(blob(8, v) for v in values)


def attr(name: str, *value_parts: bytes) -> bytes:
    """A NodeDef attr map entry (field 5): key, AttrValue."""
    return message(5, blob(1, name), message(2, *value_parts))


def attr_string(name: str, value: str) -> bytes:
    return attr(name, blob(2, value))


def attr_strings(name: str, *values: str) -> bytes:
    return attr(name, message(1, *(blob(2, v) for v in values)))


def const_string(name: str, *values: str) -> bytes:
    return node(name, "Const", [], attr("value", message(8, string_tensor(*values))),
                attr("dtype", uint(6, DT_STRING)))


def const_float(name: str, raw: bytes) -> bytes:
    tensor = uint(1, DT_FLOAT) + message(2, message(2, uint(1, len(raw) // 4))) + blob(4, raw)
    return node(name, "Const", [], attr("value", message(8, tensor)), attr("dtype", uint(6, DT_FLOAT)))


def node(name: str, op: str, inputs=(), *attrs: bytes, field: int = 1) -> bytes:
    return message(field, blob(1, name), blob(2, op), *(blob(3, i) for i in inputs), *attrs)


def graph_def(*nodes: bytes, functions: tuple = ()) -> bytes:
    library = message(2, *functions) if functions else b""
    return b"".join(nodes) + library + message(4, uint(1, 1087), uint(2, 0))


def function(name: str, *nodes_in_function: bytes) -> bytes:
    """A FunctionDef (FunctionDefLibrary field 1); its nodes use field 3."""
    return message(1, message(1, blob(1, name)), *nodes_in_function)


def saved_model(*graph_defs: bytes) -> bytes:
    metas = b"".join(message(2, message(1, blob(4, "2.16.1")), message(2, g)) for g in graph_defs)
    return uint(1, 1) + metas
