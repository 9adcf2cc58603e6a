"""TensorFlow graphs: SavedModel (`saved_model.pb`) and frozen GraphDef (`.pb`, `.pbtxt`).

A graph runs no Python of its own, but some of its ops reach the host when the graph runs:
they read, list or write files, call Python functions registered in the loading process, or
send tensors to a debug server. Every op of every graph and function is listed; those ops are
reported with the constant arguments (file paths) that feed them.

Field numbers (tensorflow/core/framework/*.proto, tensorflow/core/protobuf/*.proto):
SavedModel: 1 saved_model_schema_version, 2 meta_graphs; MetaGraphDef: 2 graph_def,
6 asset_file_def (AssetFileDef: 2 filename); GraphDef: 1 node, 2 library;
FunctionDefLibrary: 1 function; FunctionDef: 1 signature (OpDef: 1 name), 3 node_def;
NodeDef: 1 name, 2 op, 3 input, 4 device, 5 attr (map entry: 1 key, 2 AttrValue);
AttrValue: 1 list (ListValue: 2 s), 2 s, 8 tensor; TensorProto: 1 dtype, 8 string_val.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import BinaryIO

from ..findings import Finding, Severity
from .base import ScanContext, join_member, peek_stream
from .protobuf import LEN, VARINT, Budget, Field, Message, ProtoError, random_access

DT_STRING = 7
MAX_CONSTANT_STRINGS = 16
MAX_STRING_BYTES = 4096
MAX_LISTED_OPS = 80
MAX_TEXT_GRAPH = 64 * 1024 * 1024

HIGH, MEDIUM, LOW = Severity.HIGH, Severity.MEDIUM, Severity.LOW


@dataclass(frozen=True)
class OpRule:
    """What an op does to the host, and how bad it is depending on the path it is given."""

    category: str
    message: str
    dynamic: Severity | None = None  # the path is computed or fed at run time
    inside: Severity | None = None  # a constant relative path (inside the model folder, maybe)
    outside: Severity | None = HIGH  # a constant absolute path, `..`, `~`, or a remote file system
    path_input: int | None = None  # which input carries the path
    path_attr: str | None = None  # or which string attribute


_PY_FUNC = OpRule("code_exec", "calls a Python function registered in the loading process", HIGH, HIGH, HIGH)
_READ = dict(category="file_read", dynamic=LOW, inside=MEDIUM, outside=HIGH, path_input=0)
_DATASET = dict(category="file_read", dynamic=None, inside=LOW, outside=HIGH, path_input=0)
_CHECKPOINT_READ = dict(category="file_read", dynamic=None, inside=None, outside=HIGH, path_input=0)
_CHECKPOINT_WRITE = dict(category="file_write", dynamic=None, inside=None, outside=HIGH, path_input=0)

HOST_OPS: dict[str, OpRule] = {
    "PyFunc": _PY_FUNC,
    "PyFuncStateless": _PY_FUNC,
    "EagerPyFunc": _PY_FUNC,
    "ReadFile": OpRule(message="reads a file", **_READ),
    "MatchingFiles": OpRule(message="lists files matching a pattern", **_READ),
    "WriteFile": OpRule("file_write", "writes a file", HIGH, HIGH, HIGH, path_input=0),
    "CreateSummaryFileWriter": OpRule("file_write", "writes event files to a folder", LOW, MEDIUM, HIGH,
                                      path_input=1),
    "ImmutableConst": OpRule("file_read", "maps a file into memory", None, MEDIUM, HIGH,
                             path_attr="memory_region_name"),
    "TFRecordDataset": OpRule(message="reads records from files", **_DATASET),
    "TFRecordDatasetV2": OpRule(message="reads records from files", **_DATASET),
    "TextLineDataset": OpRule(message="reads lines from files", **_DATASET),
    "FixedLengthRecordDataset": OpRule(message="reads records from files", **_DATASET),
    "FixedLengthRecordDatasetV2": OpRule(message="reads records from files", **_DATASET),
    "CSVDataset": OpRule(message="reads CSV files", **_DATASET),
    "CSVDatasetV2": OpRule(message="reads CSV files", **_DATASET),
    "InitializeTableFromTextFile": OpRule("file_read", "fills a table from a text file", None, None, HIGH,
                                          path_input=1),
    "InitializeTableFromTextFileV2": OpRule("file_read", "fills a table from a text file", None, None, HIGH,
                                            path_input=1),
    "Restore": OpRule(message="restores variables from a checkpoint", **_CHECKPOINT_READ),
    "RestoreV2": OpRule(message="restores variables from a checkpoint", **_CHECKPOINT_READ),
    "RestoreSlice": OpRule(message="restores variables from a checkpoint", **_CHECKPOINT_READ),
    "Save": OpRule(message="saves tensors to a checkpoint", **_CHECKPOINT_WRITE),
    "SaveV2": OpRule(message="saves tensors to a checkpoint", **_CHECKPOINT_WRITE),
    "SaveSlices": OpRule(message="saves tensors to a checkpoint", **_CHECKPOINT_WRITE),
    "MergeV2Checkpoints": OpRule("file_write", "merges and deletes checkpoint files", None, None, HIGH,
                                 path_input=1),
    "PrintV2": OpRule("file_write", "prints to a file", None, None, HIGH, path_attr="output_stream"),
    "DecodeProtoV2": OpRule("file_read", "reads protobuf descriptors from a file", None, MEDIUM, HIGH,
                            path_attr="descriptor_source"),
    "EncodeProto": OpRule("file_read", "reads protobuf descriptors from a file", None, MEDIUM, HIGH,
                          path_attr="descriptor_source"),
}
DEBUG_OPS = {"DebugIdentity", "DebugIdentityV2", "DebugIdentityV3", "DebugNanCount", "DebugNumericSummary",
             "DebugNumericSummaryV2"}
# attribute values that name no file
_NO_PATH = {"output_stream": ("stderr", "stdout", "log("), "descriptor_source": ("local://", "bytes://"),
            "memory_region_name": ("memmapped_package://",)}

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_WINDOWS_ROOT = re.compile(r"[A-Za-z]:[\\/]")


@dataclass
class Node:
    name: str
    op: str
    inputs: list
    attrs: dict  # attribute name -> AttrValue field (read lazily)
    offset: int


@dataclass
class Graph:
    label: str  # "graph", "function f"
    nodes: list = field(default_factory=list)


def handle(stream: BinaryIO, ctx: ScanContext, member: str | None, depth: int) -> str:
    head, stream = peek_stream(stream, 4096)
    if _is_text_format(head):
        return _handle_text(stream, ctx, member)
    stream = random_access(stream, ctx.limits.max_member_size)
    name = (member or ctx.file).replace("\\", "/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    try:
        root = Message.of(stream, Budget(deadline=ctx.deadline))
        kind, groups = _read_document(root, name)
        for label, graphs in groups:
            _report(ctx, join_member(member, f"<{label}>"), graphs)
    except ProtoError as exc:
        ctx.add_problem(member, f"TensorFlow graph is not readable protobuf: {exc}")
        return "tf_graph"
    if not any(graph.nodes for _, graphs in groups for graph in graphs):
        ctx.record_member(join_member(member, "<protobuf>"), "protobuf",
                          note="protobuf message without TensorFlow graph nodes: holds no code")
        return "protobuf"
    for label, graphs in groups:
        _list_ops(ctx, join_member(member, f"<{label}>"), graphs)
    return kind


def _read_document(root: Message, name: str) -> tuple[str, list]:
    fields = list(_top_fields(root))
    graph_like = any(f.number == 1 and f.wire == LEN for f in fields)
    saved_model = not graph_like and (any(f.number == 1 and f.wire == VARINT for f in fields)
                                      or name.lower() == "saved_model.pb")
    if saved_model:
        groups = []
        for index, meta in enumerate(f for f in fields if f.number == 2 and f.wire == LEN):
            groups.append((f"meta_graph {index}", _read_meta_graph(meta.message())))
        return "tf_saved_model", groups
    return "tf_graph", [("graph", _read_graph_def(root, "graph"))]


def _top_fields(root: Message):
    for item in root:
        if item.number in (1, 2):
            yield item


def _read_meta_graph(meta: Message) -> list:
    graphs, assets = [], []
    for item in meta:
        if item.number == 2 and item.wire == LEN:
            graphs += _read_graph_def(item.message(), "graph")
        elif item.number == 6 and item.wire == LEN:
            for sub in item.message():
                if sub.number == 2 and sub.wire == LEN:
                    assets.append((sub.text(MAX_STRING_BYTES), sub.offset))
    if assets:
        graphs.append(Graph("assets", [Node(path, "<asset>", [], {}, offset) for path, offset in assets]))
    return graphs


def _read_graph_def(graph_def: Message, label: str) -> list:
    main = Graph(label)
    functions = []
    for item in graph_def:
        if item.wire != LEN:
            continue
        if item.number == 1:
            main.nodes.append(_read_node(item))
        elif item.number == 2:
            functions += _read_library(item.message())
    return [main] + functions


def _read_library(library: Message) -> list:
    functions = []
    for item in library:
        if item.number == 1 and item.wire == LEN:
            functions.append(_read_function(item.message()))
    return functions


def _read_function(function: Message) -> Graph:
    graph = Graph("function ?")
    for item in function:
        if item.wire != LEN:
            continue
        if item.number == 1:
            for sub in item.message():
                if sub.number == 1 and sub.wire == LEN:
                    graph.label = f"function {sub.text(MAX_STRING_BYTES)}"
        elif item.number == 3:
            graph.nodes.append(_read_node(item))
    return graph


def _read_node(item: Field) -> Node:
    node = Node("", "", [], {}, item.offset)
    for sub in item.message():
        if sub.wire != LEN:
            continue
        if sub.number == 1:
            node.name = sub.text(MAX_STRING_BYTES)
        elif sub.number == 2:
            node.op = sub.text(MAX_STRING_BYTES)
        elif sub.number == 3:
            node.inputs.append(sub.text(MAX_STRING_BYTES))
        elif sub.number == 5:
            key, value = "", None
            for entry in sub.message():
                if entry.number == 1 and entry.wire == LEN:
                    key = entry.text(MAX_STRING_BYTES)
                elif entry.number == 2 and entry.wire == LEN:
                    value = entry
            if value is not None:
                node.attrs[key] = value
    return node


def _attr_strings(value: Field) -> list[str]:
    """The strings an AttrValue holds: `s`, `list.s`, or a string tensor's string_val."""
    found = []
    for item in value.message():
        if item.wire != LEN:
            continue
        if item.number == 2:
            found.append(item.text(MAX_STRING_BYTES))
        elif item.number == 1:
            found += [sub.text(MAX_STRING_BYTES) for sub in item.message() if sub.number == 2 and sub.wire == LEN]
        elif item.number == 8:
            found += _tensor_strings(item.message())
        if len(found) >= MAX_CONSTANT_STRINGS:
            break
    return found[:MAX_CONSTANT_STRINGS]


def _tensor_strings(tensor: Message) -> list[str]:
    dtype, strings = None, []
    for item in tensor:
        if item.number == 1 and item.wire == VARINT:
            dtype = item.value
        elif item.number == 8 and item.wire == LEN and len(strings) < MAX_CONSTANT_STRINGS:
            strings.append(item.text(MAX_STRING_BYTES))
    return strings if dtype in (None, DT_STRING) else []


def _report(ctx: ScanContext, member: str, graphs: list) -> None:
    for graph in graphs:
        if graph.label == "assets":
            _report_assets(ctx, member, graph)
            continue
        by_name = {node.name: node for node in graph.nodes}
        for node in graph.nodes:
            op = node.op
            if op in HOST_OPS:
                _report_op(ctx, member, graph, node, HOST_OPS[op], by_name)
            elif op in DEBUG_OPS:
                _report_debug(ctx, member, graph, node)


def _report_op(ctx, member, graph: Graph, node: Node, rule: OpRule, by_name: dict) -> None:
    if rule.path_attr is not None:
        value = node.attrs.get(rule.path_attr)
        paths = _attr_strings(value) if value is not None else []
        paths = [p for p in paths if not p.startswith(_NO_PATH.get(rule.path_attr, ()))]
        if not paths:
            return
        argument = f"{rule.path_attr}={paths[0]!r}"
    elif rule.path_input is not None:
        paths = _constant_input(node, rule.path_input, by_name)
        argument = repr(paths[0] if len(paths) == 1 else paths) if paths else _input_name(node, rule.path_input)
    else:
        paths, argument = [], ", ".join(node.inputs[:4])
    severity, category, where = _severity(rule, paths)
    if severity is None:
        return
    evidence = f"{node.name} = {node.op}({argument})"
    message = f"{node.op} op {rule.message}{where} ({_place(graph)})"
    ctx.add_finding(Finding(f"tf-{category.replace('_', '-')}", severity, category, message,
                            ctx.location(member, node.offset), evidence))


def _severity(rule: OpRule, paths: list[str]):
    if not paths:
        return rule.dynamic, rule.category, ""
    kinds = {_path_kind(path) for path in paths}
    if "remote" in kinds:
        return rule.outside, "network" if rule.category == "file_read" else rule.category, \
            " on a remote file system"
    if "outside" in kinds:
        return rule.outside, rule.category, " outside the model folder"
    return rule.inside, rule.category, ""


def _report_debug(ctx, member, graph: Graph, node: Node) -> None:
    value = node.attrs.get("debug_urls")
    urls = _attr_strings(value) if value is not None else []
    for url in urls:
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        if scheme == "grpc":
            severity, category, what = HIGH, "network", "sends tensors to a debug server"
        elif scheme == "file":
            kind = _path_kind(url)
            severity = HIGH if kind != "inside" else MEDIUM
            category, what = "file_write", "dumps tensors to files"
        else:
            continue
        ctx.add_finding(Finding(f"tf-{category.replace('_', '-')}", severity, category,
                                f"{node.op} op {what} ({_place(graph)})", ctx.location(member, node.offset),
                                f"{node.name} = {node.op}(debug_urls={url!r})"))
        return


def _report_assets(ctx, member, graph: Graph) -> None:
    for node in graph.nodes:
        if _path_kind(node.name) != "inside":
            ctx.add_finding(Finding("tf-asset-path", MEDIUM, "file_read",
                                    "SavedModel asset points outside the model folder",
                                    ctx.location(member, node.offset), f"asset filename {node.name!r}"))


def _constant_input(node: Node, index: int, by_name: dict) -> list[str]:
    data_inputs = [name for name in node.inputs if not name.startswith("^")]
    if index >= len(data_inputs):
        return []
    source = by_name.get(data_inputs[index].split(":", 1)[0])
    if source is None or source.op != "Const" or "value" not in source.attrs:
        return []
    try:
        return _attr_strings(source.attrs["value"])
    except ProtoError:
        return []


def _input_name(node: Node, index: int) -> str:
    data_inputs = [name for name in node.inputs if not name.startswith("^")]
    return data_inputs[index] if index < len(data_inputs) else ""


def _path_kind(path: str) -> str:
    """"remote" (another host), "outside" (absolute, `..`, `~`), or "inside" (relative)."""
    match = _SCHEME.match(path)
    if match:
        scheme = match.group(1).lower()
        if scheme == "memmapped_package":
            return "inside"
        if scheme != "file":
            return "remote"
        path = path[match.end():]
    if path.startswith(("/", "\\", "~")) or _WINDOWS_ROOT.match(path):
        return "outside"
    if ".." in re.split(r"[\\/]", path):
        return "outside"
    return "inside"


def _place(graph: Graph) -> str:
    return graph.label if graph.label.startswith("function") else f"node in the {graph.label}"


def _list_ops(ctx: ScanContext, member: str, graphs: list) -> None:
    ops = Counter(node.op for graph in graphs if graph.label != "assets" for node in graph.nodes)
    functions = sum(1 for graph in graphs if graph.label.startswith("function"))
    names = sorted(ops)
    listed = ", ".join(names[:MAX_LISTED_OPS]) + (f" and {len(names) - MAX_LISTED_OPS} more"
                                                   if len(names) > MAX_LISTED_OPS else "")
    note = (f"{sum(ops.values())} nodes in {functions} functions and the graph; "
            f"ops: {listed or 'none'}")
    ctx.record_member(member, "tf_graph", note=note)


# -- text format (.pbtxt) ------------------------------------------------------------------------

_TEXT_START = re.compile(rb"\s*(#[^\n]*\n\s*)*(node|library|versions|meta_graphs|saved_model_schema_version)\s*[{:]")
_TEXT_NODE = re.compile(r'\bname:\s*"((?:[^"\\]|\\.)*)"\s*op:\s*"((?:[^"\\]|\\.)*)"')
_TEXT_STRING = re.compile(r'\b(?:string_val|s):\s*"((?:[^"\\]|\\.)*)"')


def _is_text_format(head: bytes) -> bool:
    return bool(_TEXT_START.match(head))


def _handle_text(stream: BinaryIO, ctx: ScanContext, member: str | None) -> str:
    """A text-format graph: ops by name, and the file-reading ones with any string they carry."""
    data = stream.read(MAX_TEXT_GRAPH + 1)
    if len(data) > MAX_TEXT_GRAPH:
        ctx.add_problem(member, f"text graph larger than {MAX_TEXT_GRAPH} bytes: only its start was read")
        data = data[:MAX_TEXT_GRAPH]
    text = data.decode("utf-8", "replace")
    member = join_member(member, "<graph>")
    ops = Counter()
    strings = [m.group(1) for m in _TEXT_STRING.finditer(text)]
    for match in _TEXT_NODE.finditer(text):
        name, op = match.group(1), match.group(2)
        ops[op] += 1
        rule = HOST_OPS.get(op)
        if rule is None:
            continue
        paths = [s for s in strings if _path_kind(s) != "inside"]
        severity, category, where = _severity(rule, paths)
        if severity is None:
            continue
        argument = ", ".join(repr(p) for p in paths[:3]) + (" ..." if len(paths) > 3 else "")
        ctx.add_finding(Finding(f"tf-{category.replace('_', '-')}", severity, category,
                                f"{op} op {rule.message}{where} (text graph; the path is one of its strings)",
                                ctx.location(member, line=text.count("\n", 0, match.start()) + 1),
                                f"{name} = {op}({argument or '...'})"))
    ctx.record_member(member, "tf_graph_text",
                      note=f"{sum(ops.values())} nodes; ops: {', '.join(sorted(ops)) or 'none'}")
    return "tf_graph_text"


# A TensorFlow checkpoint (a SavedModel's variables/, or tf.train.Checkpoint files) is an index,
# a table of tensor names, shapes and offsets, and data shards of raw tensor bytes: neither
# holds code. The index is a leveldb-style table whose footer ends with this magic number.
CHECKPOINT_INDEX_MAGIC = (0xDB4775248B80FB57).to_bytes(8, "little")


def handle_checkpoint(stream: BinaryIO, ctx: ScanContext, member: str | None, depth: int) -> str:
    """Told by name (sniff.TF_CHECKPOINT) once content matched no other format."""
    name = (member or ctx.file).replace("\\", "/").rsplit("/", 1)[-1]
    if not name.endswith(".index"):
        ctx.record_member(member, "tf_checkpoint", note="TensorFlow checkpoint data shard "
                          "(raw tensor bytes, not read): holds no code")
        return "tf_checkpoint"
    stream = random_access(stream, ctx.limits.max_member_size)
    try:
        stream.seek(-len(CHECKPOINT_INDEX_MAGIC), 2)
        footer = stream.read(len(CHECKPOINT_INDEX_MAGIC))
    except (OSError, ValueError):
        footer = b""
    if footer != CHECKPOINT_INDEX_MAGIC:
        ctx.add_problem(member, "named like a TensorFlow checkpoint index, but without its table footer")
        return "tf_checkpoint"
    ctx.record_member(member, "tf_checkpoint", note="TensorFlow checkpoint index (tensor names, "
                      "shapes and offsets): holds no code")
    return "tf_checkpoint"


HANDLERS = {"tf_graph": handle, "tf_checkpoint": handle_checkpoint}
