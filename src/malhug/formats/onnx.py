"""ONNX models, read from the protobuf wire format; tensor data is skipped, never read.

An ONNX graph runs no code of its own. What reaches past it: operators from domains outside
the ONNX and ONNX Runtime sets (they run a native library the loader must register),
operators that run Python, tensors whose external data lives outside the model folder, and
metadata that carries code.

Field numbers (onnx/onnx.proto): ModelProto: 1 ir_version, 2 producer_name, 6 doc_string,
7 graph, 8 opset_import (OperatorSetIdProto: 1 domain, 2 version), 14 metadata_props,
20 training_info (TrainingInfoProto: 1 initialization, 2 algorithm), 25 functions;
GraphProto: 1 node, 5 initializer, 15 sparse_initializer, 16 metadata_props;
NodeProto: 1 input, 2 output, 3 name, 4 op_type, 5 attribute, 7 domain, 9 metadata_props;
AttributeProto: 1 name, 4 s, 5 t, 6 g, 9 strings, 10 tensors, 11 graphs, 22 sparse_tensor,
23 sparse_tensors; TensorProto: 8 name, 9 raw_data, 13 external_data, 14 data_location;
SparseTensorProto: 1 values, 2 indices; FunctionProto: 1 name, 7 node, 10 domain,
14 metadata_props; StringStringEntryProto: 1 key, 2 value.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import BinaryIO

from ..findings import Finding, Severity
from .base import ScanContext, join_member, peek_stream
from .metadata import check_text
from .protobuf import LEN, Budget, Field, Message, ProtoError, random_access, string_entries

STANDARD_DOMAINS = {"", "ai.onnx", "ai.onnx.ml", "ai.onnx.training", "ai.onnx.preview.training",
                    "com.microsoft", "com.microsoft.nchwc", "org.pytorch.aten"}
# custom-operator libraries that are published and widely used: their ops still need the
# library registered, but a model using them is ordinary
KNOWN_LIBRARY_DOMAINS = {"ai.onnx.contrib": "onnxruntime-extensions",
                         "com.microsoft.extensions": "onnxruntime-extensions",
                         "trt.plugins": "TensorRT plugins"}
PYTHON_OPS = re.compile(r"(Py(thon)?(Op|Func|Function)[A-Za-z0-9_]*|PyFuncStateless|EagerPyFunc)\Z")
ORT_FORMAT_IDENTIFIER = b"ORTM"
MAX_TEXT = 4096
MAX_LISTED = 40


@dataclass
class Model:
    producer: str = ""
    ops: Counter = field(default_factory=Counter)  # (domain, op_type) -> count
    custom: dict = field(default_factory=lambda: defaultdict(list))  # domain -> [(op, node, offset)]
    local_functions: set = field(default_factory=set)  # (domain, name) defined in the file
    graphs: int = 0
    tensors: int = 0
    external: int = 0


def handle(stream: BinaryIO, ctx: ScanContext, member: str | None, depth: int) -> str:
    head, stream = peek_stream(stream, 8)
    if head[4:8] == ORT_FORMAT_IDENTIFIER:
        ctx.record_member(join_member(member, "<ort>"), "onnx_ort",
                          note="ONNX Runtime flatbuffer model: holds no code; its operators are not listed")
        return "onnx_ort"
    stream = random_access(stream, ctx.limits.max_member_size)
    model = Model()
    inner = join_member(member, "<model>")
    reader = _Reader(ctx, inner, depth, model)
    try:
        reader.model(Message.of(stream, Budget(deadline=ctx.deadline)))
    except ProtoError as exc:
        ctx.add_problem(member, f"ONNX model is not readable protobuf: {exc}")
        return "onnx"
    _report_custom_domains(ctx, inner, model)
    ctx.record_member(inner, "onnx", note=_summary(model))
    return "onnx"


class _Reader:
    def __init__(self, ctx: ScanContext, member: str | None, depth: int, model: Model):
        self.ctx = ctx
        self.member = member
        self.depth = depth
        self.m = model

    def model(self, message: Message) -> None:
        seen_graph = False
        for item in message:
            if item.wire != LEN:
                continue
            if item.number == 2:
                self.m.producer = item.text(MAX_TEXT)
            elif item.number == 6:
                self.text("model doc_string", item)
            elif item.number == 7:
                seen_graph = True
                self.graph(item.message())
            elif item.number == 14:
                self.metadata("model metadata", item)
            elif item.number == 20:
                for sub in item.message():
                    if sub.number in (1, 2) and sub.wire == LEN:
                        self.graph(sub.message())
            elif item.number == 25:
                self.function(item.message())
        if not seen_graph:
            self.ctx.add_problem(self.member, "ONNX model has no graph")

    def graph(self, message: Message) -> None:
        self.m.graphs += 1
        for item in message:
            if item.wire != LEN:
                continue
            if item.number == 1:
                self.node(item)
            elif item.number == 5:
                self.tensor(item.message())
            elif item.number == 15:
                self.sparse_tensor(item.message())
            elif item.number == 16:
                self.metadata("graph metadata", item)

    def function(self, message: Message) -> None:
        name = domain = ""
        for item in message:
            if item.wire != LEN:
                continue
            if item.number == 1:
                name = item.text(MAX_TEXT)
            elif item.number == 10:
                domain = item.text(MAX_TEXT)
            elif item.number == 7:
                self.node(item)
            elif item.number == 14:
                self.metadata("function metadata", item)
        self.m.local_functions.add((domain, name))

    def node(self, item: Field) -> None:
        op = domain = name = ""
        strings = []
        for sub in item.message():
            if sub.wire != LEN:
                continue
            if sub.number == 4:
                op = sub.text(MAX_TEXT)
            elif sub.number == 7:
                domain = sub.text(MAX_TEXT)
            elif sub.number == 3:
                name = sub.text(MAX_TEXT)
            elif sub.number == 5:
                strings += self.attribute(sub.message())
            elif sub.number == 9:
                self.metadata("node metadata", sub)
        self.m.ops[(domain, op)] += 1
        if PYTHON_OPS.match(op):
            attrs = ", ".join(f"{k}={v!r}" for k, v in strings[:6])
            self.ctx.add_finding(Finding(
                "onnx-python-op", Severity.HIGH, "code_exec",
                f"operator {op!r} (domain {domain or 'ai.onnx'!r}) runs Python code in the loading process",
                self.ctx.location(self.member, item.offset), f"{name or '?'} = {domain + '.' if domain else ''}{op}({attrs})"))
        elif domain not in STANDARD_DOMAINS:
            self.m.custom[domain].append((op, name, item.offset))

    def attribute(self, message: Message) -> list:
        """Walks subgraphs and tensors; returns the attribute's strings as (name, value)."""
        name, strings = "", []
        for item in message:
            if item.wire != LEN:
                continue
            if item.number == 1:
                name = item.text(MAX_TEXT)
            elif item.number in (4, 9):
                strings.append(item.text(MAX_TEXT))
            elif item.number in (6, 11):
                self.graph(item.message())
            elif item.number in (5, 10):
                self.tensor(item.message())
            elif item.number in (22, 23):
                self.sparse_tensor(item.message())
        return [(name, value) for value in strings]

    def sparse_tensor(self, message: Message) -> None:
        for item in message:
            if item.number in (1, 2) and item.wire == LEN:
                self.tensor(item.message())

    def tensor(self, message: Message) -> None:
        self.m.tensors += 1
        name = ""
        external = []
        for item in message:  # raw_data (9) and the typed data fields are skipped unread
            if item.wire != LEN:
                continue
            if item.number == 8:
                name = item.text(MAX_TEXT)
            elif item.number == 13:
                external.append((string_entries(item.message(), limit=MAX_TEXT), item.offset))
        if external:
            self.m.external += 1
        for (key, value), offset in external:
            if key == "location":
                self.location(name, value, offset)

    def location(self, tensor: str, path: str, offset: int) -> None:
        parts = re.split(r"[\\/]", path)
        if path.startswith(("/", "\\", "~")) or re.match(r"[A-Za-z]:", path) or ".." in parts or "://" in path:
            self.ctx.add_finding(Finding(
                "onnx-external-data-path", Severity.HIGH, "file_read",
                f"tensor {tensor!r} reads a file outside the model folder as its external data",
                self.ctx.location(self.member, offset), f"external_data location = {path!r}"))

    def metadata(self, where: str, item: Field) -> None:
        key, value = string_entries(item.message())
        check_text(self.ctx, self.member, f"{where} {key!r}", value, self.depth)

    def text(self, where: str, item: Field) -> None:
        check_text(self.ctx, self.member, where, item.text(), self.depth, prose=True)


def _report_custom_domains(ctx: ScanContext, member: str | None, model: Model) -> None:
    for domain, uses in sorted(model.custom.items()):
        uses = [use for use in uses if (domain, use[0]) not in model.local_functions]
        if not uses:
            continue
        ops = sorted({op for op, _, _ in uses})
        library = KNOWN_LIBRARY_DOMAINS.get(domain)
        severity = Severity.LOW if library else Severity.MEDIUM
        what = f"from {library}" if library else "from an unknown library"
        evidence = "; ".join(f"{name or '?'} = {domain}.{op}(...)" for op, name, _ in uses[:5])
        ctx.add_finding(Finding(
            "onnx-custom-domain", severity, "native_code",
            f"operators in custom domain {domain!r} {what} need native code the loader registers: "
            f"{', '.join(ops[:MAX_LISTED])}", ctx.location(member, uses[0][2]), evidence))


def _summary(model: Model) -> str:
    ops = sorted(f"{d}.{o}" if d else o for d, o in model.ops)
    listed = ", ".join(ops[:MAX_LISTED]) + (f" and {len(ops) - MAX_LISTED} more" if len(ops) > MAX_LISTED else "")
    return (f"producer {model.producer or '?'}; {model.graphs} graphs, {sum(model.ops.values())} nodes, "
            f"{model.tensors} tensors ({model.external} with external data); ops: {listed or 'none'}")


HANDLERS = {"onnx": handle}
