"""Model formats that hold data and a graph of built-in operators, but no code: TensorFlow Lite
and Core ML. What reaches past them is named: custom operators (native code the application
registers) and TensorFlow ops run through the Flex delegate.

TFLite (schema.fbs): a flatbuffer whose identifier "TFL3" sits at bytes 4..8; Model: field 0
version, 1 operator_codes [OperatorCode]; OperatorCode: 0 deprecated_builtin_code (byte),
1 custom_code (string), 3 builtin_code (int). Core ML (Model.proto): 555 customModel.
"""
from __future__ import annotations

import struct
from typing import BinaryIO

from ..findings import Finding, Severity
from .base import ScanContext, join_member
from .protobuf import Budget, Message, ProtoError, random_access

TFLITE_IDENTIFIER = b"TFL3"
FLEX_PREFIX = "Flex"
MAX_OPERATOR_CODES = 10_000
MAX_NAME = 1024
CORE_ML_CUSTOM_MODEL = 555
CORE_ML_SPECIFICATION_VERSION = 1


class FlatbufferError(ValueError):
    pass


class _Flatbuffer:
    """Bounded random access to the tables, vectors and strings of a flatbuffer in a stream."""

    def __init__(self, stream: BinaryIO, size: int):
        self.stream = stream
        self.size = size

    def read(self, offset: int, size: int) -> bytes:
        if offset < 0 or offset + size > self.size:
            raise FlatbufferError(f"offset {offset} is outside the file")
        self.stream.seek(offset)
        data = self.stream.read(size)
        if len(data) < size:
            raise FlatbufferError(f"truncated at {offset}")
        return data

    def u32(self, offset: int) -> int:
        return struct.unpack("<I", self.read(offset, 4))[0]

    def field(self, table: int, index: int) -> int | None:
        """Where field `index` of the table at `table` starts, or None when absent."""
        vtable = table - struct.unpack("<i", self.read(table, 4))[0]
        vtable_size = struct.unpack("<H", self.read(vtable, 2))[0]
        if 4 + 2 * index + 2 > vtable_size:
            return None
        at = struct.unpack("<H", self.read(vtable + 4 + 2 * index, 2))[0]
        return table + at if at else None

    def indirect(self, at: int) -> int:
        return at + self.u32(at)

    def vector(self, table: int, index: int) -> tuple[int, int]:
        """(first element, length) of a vector field; (0, 0) when absent."""
        at = self.field(table, index)
        if at is None:
            return 0, 0
        start = self.indirect(at)
        return start + 4, self.u32(start)

    def string(self, table: int, index: int) -> str | None:
        start, length = self.vector(table, index)
        if not start:
            return None
        return self.read(start, min(length, MAX_NAME)).decode("utf-8", "replace")

    def scalar(self, table: int, index: int, fmt: str, default: int = 0) -> int:
        at = self.field(table, index)
        return default if at is None else struct.unpack(fmt, self.read(at, struct.calcsize(fmt)))[0]


def handle_tflite(stream: BinaryIO, ctx: ScanContext, member: str | None, depth: int) -> str:
    stream = random_access(stream, ctx.limits.max_member_size)
    base = stream.tell()
    size = stream.seek(0, 2)
    stream.seek(base)
    try:
        custom = _tflite_custom_ops(_Flatbuffer(_Offset(stream, base), size - base))
    except (FlatbufferError, struct.error) as exc:
        ctx.add_problem(member, f"TFLite flatbuffer is not readable: {exc}")
        return "tflite"
    inner = join_member(member, "<operators>")
    for name, index in custom:
        _report_custom_op(ctx, inner, name, index)
    note = "TFLite model: holds no code"
    if custom:
        note += f"; custom operators: {', '.join(sorted({name for name, _ in custom}))}"
    ctx.record_member(inner, "tflite", note=note)
    return "tflite"


def _tflite_custom_ops(buffer: _Flatbuffer) -> list[tuple[str, int]]:
    if buffer.read(4, 4) != TFLITE_IDENTIFIER:
        raise FlatbufferError("no TFL3 identifier")
    model = buffer.indirect(0)
    start, count = buffer.vector(model, 1)
    if count > MAX_OPERATOR_CODES:
        raise FlatbufferError(f"{count} operator codes")
    custom = []
    for index in range(count):
        code = buffer.indirect(start + 4 * index)
        name = buffer.string(code, 1)
        if name:
            custom.append((name, index))
    return custom


def _report_custom_op(ctx: ScanContext, member: str | None, name: str, index: int) -> None:
    from .tensorflow import HOST_OPS

    if name.startswith(FLEX_PREFIX) and name[len(FLEX_PREFIX):] in HOST_OPS:
        op = name[len(FLEX_PREFIX):]
        rule = HOST_OPS[op]
        severity = max((s for s in (rule.dynamic, rule.inside) if s is not None), default=Severity.LOW)
        ctx.add_finding(Finding(
            f"tflite-flex-{rule.category.replace('_', '-')}", severity, rule.category,
            f"TensorFlow op {op} run through the Flex delegate {rule.message}",
            ctx.location(member), f"operator_codes[{index}].custom_code = {name!r}"))
        return
    if name.startswith(FLEX_PREFIX):
        return  # another TensorFlow op: as harmless as in a graph
    ctx.add_finding(Finding(
        "tflite-custom-op", Severity.LOW, "native_code",
        f"custom operator {name!r} needs native code the application registers",
        ctx.location(member), f"operator_codes[{index}].custom_code = {name!r}"))


class _Offset:
    """A stream seen from `base` on (a member that starts inside a larger file)."""

    def __init__(self, stream: BinaryIO, base: int):
        self.stream = stream
        self.base = base

    def seek(self, offset: int) -> None:
        self.stream.seek(self.base + offset)

    def read(self, size: int) -> bytes:
        return self.stream.read(size)


def handle_coreml(stream: BinaryIO, ctx: ScanContext, member: str | None, depth: int) -> str:
    stream = random_access(stream, ctx.limits.max_member_size)
    version = None
    custom = False
    try:
        for item in Message.of(stream, Budget(deadline=ctx.deadline)):
            if item.number == CORE_ML_SPECIFICATION_VERSION and item.wire == 0:
                version = item.value
            elif item.number == CORE_ML_CUSTOM_MODEL:
                custom = True
    except ProtoError as exc:
        ctx.add_problem(member, f"Core ML model is not readable protobuf: {exc}")
        return "coreml"
    inner = join_member(member, "<model>")
    if custom:
        ctx.add_finding(Finding(
            "coreml-custom-model", Severity.LOW, "native_code",
            "Core ML custom model: the application supplies the class that runs it",
            ctx.location(inner), "Model.customModel"))
    ctx.record_member(inner, "coreml",
                      note=f"Core ML model (specification version {version}): holds no code")
    return "coreml"


HANDLERS = {"tflite": handle_tflite, "coreml": handle_coreml}
