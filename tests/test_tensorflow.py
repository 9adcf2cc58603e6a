"""TensorFlow graphs (SavedModel and frozen GraphDef), written with a wire-format encoder:
every op is listed, ops that reach the host are reported with their constant paths."""
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from protowire import (attr, attr_string, attr_strings, blob, const_float, const_string, function, graph_def,
                       message, node, saved_model, uint)

import malhug
from malhug.formats import analyse
from malhug.formats.base import ScanContext


def only(path):
    report = malhug.scan(path)
    assert len(report.files) == 1
    return report.files[0]


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def benign_graph():
    return graph_def(
        node("x", "Placeholder", [], attr("dtype", uint(6, 1))),
        const_float("w", b"\x00\x00\x80\x3f" * 16),
        node("mm", "MatMul", ["x", "w"]),
        node("out", "Identity", ["mm"]),
    )


def saved_model_with_checkpoint_ops():
    """What tf.saved_model.save writes around variables: the save path is fed at run time."""
    graph = graph_def(
        node("saver_filename", "Placeholder", [], attr("dtype", uint(6, 7))),
        const_string("suffix", "_temp/part"),
        node("join", "StringJoin", ["saver_filename", "suffix"]),
        const_string("names", "dense/kernel/.ATTRIBUTES/VARIABLE_VALUE"),
        node("save", "SaveV2", ["join", "names", "names", "var"]),
        node("restore", "RestoreV2", ["saver_filename", "names", "names"]),
        node("call", "StatefulPartitionedCall", ["x"], attr("f", message(10, blob(1, "__inference_serve_42")))),
        functions=(function("__inference_serve_42",
                            node("mm", "MatMul", ["x", "w"], field=3),
                            node("relu", "Relu", ["mm:product:0"], field=3)),),
    )
    return saved_model(graph)


def test_frozen_graph_is_clean_and_lists_its_ops(tmp_path):
    result = only(write(tmp_path, "frozen_graph.pb", benign_graph()))
    assert result.format == "tf_graph"
    assert str(result.verdict) == "clean"
    graph = next(m for m in result.members if m.name == "<graph>")
    assert "ops: Const, Identity, MatMul, Placeholder" in graph.note


def test_saved_model_with_checkpoint_ops_is_clean(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    result = only(write(folder, "saved_model.pb", saved_model_with_checkpoint_ops()))
    assert result.format == "tf_saved_model"
    assert str(result.verdict) == "clean", result.findings
    listed = next(m for m in result.members if m.name == "<meta_graph 0>").note
    for op in ("SaveV2", "RestoreV2", "StatefulPartitionedCall", "Relu"):
        assert op in listed
    assert "1 functions" in listed


@pytest.mark.parametrize("path", ["/etc/passwd", "../../.ssh/id_rsa", "~/.aws/credentials", "C:\\Windows\\win.ini"])
def test_reading_a_constant_path_outside_the_model_is_malicious(tmp_path, path):
    graph = graph_def(const_string("p", path), node("read", "ReadFile", ["p"]), node("out", "Identity", ["read"]))
    result = only(write(tmp_path, "graph.pb", graph))
    assert str(result.verdict) == "malicious"
    (finding,) = result.findings
    assert (finding.rule, finding.category, str(finding.severity)) == ("tf-file-read", "file_read", "high")
    assert finding.evidence == f"read = ReadFile({path!r})"
    assert finding.location.member == "<graph>" and finding.location.offset is not None


def test_listing_files_outside_the_model_is_malicious(tmp_path):
    graph = graph_def(const_string("p", "/home/*/.ssh/*"), node("ls", "MatchingFiles", ["p:0", "^init"]))
    (finding,) = only(write(tmp_path, "graph.pb", graph)).findings
    assert str(finding.severity) == "high"
    assert "MatchingFiles" in finding.message and "/home/*/.ssh/*" in finding.evidence


def test_reading_a_relative_constant_path_is_suspicious(tmp_path):
    graph = graph_def(const_string("p", "assets/notes.txt"), node("read", "ReadFile", ["p"]))
    result = only(write(tmp_path, "graph.pb", graph))
    assert str(result.verdict) == "suspicious"


def test_reading_a_remote_file_is_a_network_finding(tmp_path):
    graph = graph_def(const_string("p", "gs://example-invalid/payload"), node("read", "ReadFile", ["p"]))
    (finding,) = only(write(tmp_path, "graph.pb", graph)).findings
    assert finding.category == "network" and str(finding.severity) == "high"


def test_write_file_is_malicious_even_with_a_fed_path(tmp_path):
    graph = graph_def(node("path", "Placeholder"), node("content", "Placeholder"),
                      node("write", "WriteFile", ["path", "content"]))
    result = only(write(tmp_path, "graph.pb", graph))
    assert str(result.verdict) == "malicious"
    assert result.findings[0].category == "file_write"
    assert result.findings[0].evidence == "write = WriteFile(path)"


@pytest.mark.parametrize("op", ["PyFunc", "PyFuncStateless", "EagerPyFunc"])
def test_python_function_ops_in_a_function_are_malicious(tmp_path, op):
    graph = graph_def(node("x", "Placeholder"), node("call", "PartitionedCall", ["x"]),
                      functions=(function("__inference_hook_7",
                                          node("py", op, ["x"], attr_string("token", "pyfunc_0"), field=3)),))
    result = only(write(tmp_path, "saved_model.pb", saved_model(graph)))
    assert str(result.verdict) == "malicious"
    (finding,) = result.findings
    assert finding.category == "code_exec"
    assert "function __inference_hook_7" in finding.message
    assert finding.location.member == "<meta_graph 0>"


def test_saving_to_a_constant_absolute_path_is_malicious(tmp_path):
    graph = graph_def(const_string("prefix", "/tmp/elsewhere/ckpt"), const_string("names", "v"),
                      node("save", "SaveV2", ["prefix", "names", "names", "v"]))
    (finding,) = only(write(tmp_path, "graph.pb", graph)).findings
    assert finding.category == "file_write" and "/tmp/elsewhere/ckpt" in finding.evidence


def test_print_to_a_file_is_malicious_and_to_stderr_is_not(tmp_path):
    to_file = graph_def(node("x", "Placeholder"), node("p", "PrintV2", ["x"], attr_string("output_stream", "file:///tmp/log.txt")))
    to_stderr = graph_def(node("x", "Placeholder"), node("p", "PrintV2", ["x"], attr_string("output_stream", "stderr")))
    assert str(only(write(tmp_path, "a.pb", to_file)).verdict) == "malicious"
    assert str(only(write(tmp_path, "b.pb", to_stderr)).verdict) == "clean"


def test_debug_op_sending_to_a_grpc_server_is_a_network_finding(tmp_path):
    graph = graph_def(node("x", "Placeholder"),
                      node("dbg", "DebugIdentity", ["x"], attr_strings("debug_urls", "grpc://127.0.0.1:6064")))
    (finding,) = only(write(tmp_path, "graph.pb", graph)).findings
    assert finding.category == "network" and "127.0.0.1:6064" in finding.evidence


def test_immutable_const_mapping_a_host_file(tmp_path):
    host = graph_def(node("c", "ImmutableConst", [], attr_string("memory_region_name", "/dev/shm/region")))
    packaged = graph_def(node("c", "ImmutableConst", [], attr_string("memory_region_name", "memmapped_package://w")))
    assert str(only(write(tmp_path, "a.pb", host)).verdict) == "malicious"
    assert str(only(write(tmp_path, "b.pb", packaged)).verdict) == "clean"


def test_decode_proto_with_a_descriptor_file(tmp_path):
    graph = graph_def(node("x", "Placeholder"),
                      node("d", "DecodeProtoV2", ["x"], attr_string("descriptor_source", "/etc/descriptors.bin")))
    (finding,) = only(write(tmp_path, "graph.pb", graph)).findings
    assert finding.category == "file_read"


def test_asset_outside_the_model_folder(tmp_path):
    meta = message(2, message(2, node("x", "Placeholder")), message(6, blob(2, "../../etc/hosts")))
    result = only(write(tmp_path, "saved_model.pb", uint(1, 1) + meta))
    assert [f.rule for f in result.findings] == ["tf-asset-path"]


def test_other_protobuf_files_of_a_saved_model_are_clean(tmp_path):
    fingerprint = uint(1, 123456789) + uint(2, 42) + uint(3, 7) + uint(4, 9) + uint(5, 11) + message(6, uint(1, 1))
    result = only(write(tmp_path, "fingerprint.pb", fingerprint))
    assert (result.format, str(result.verdict)) == ("protobuf", "clean")


def test_text_format_graph(tmp_path):
    benign = 'node {\n  name: "x"\n  op: "Placeholder"\n}\nnode {\n  name: "y"\n  op: "Relu"\n  input: "x"\n}\n'
    hostile = ('node {\n  name: "p"\n  op: "Const"\n  attr {\n    key: "value"\n    value {\n      tensor {\n'
               '        dtype: DT_STRING\n        string_val: "/etc/shadow"\n      }\n    }\n  }\n}\n'
               'node {\n  name: "r"\n  op: "ReadFile"\n  input: "p"\n}\n')
    ctx = ScanContext("graph.pbtxt")
    assert analyse(io.BytesIO(benign.encode()), ctx, None, hint="tf_graph") == "tf_graph_text"
    assert not ctx.findings and not ctx.problems
    ctx = ScanContext("graph.pbtxt")
    analyse(io.BytesIO(hostile.encode()), ctx, None, hint="tf_graph")
    (finding,) = ctx.findings
    assert finding.category == "file_read" and str(finding.severity) == "high"
    assert finding.location.line == 15
    assert finding.evidence == "r = ReadFile('/etc/shadow')"


@pytest.mark.parametrize("cut", [1, 7, 30, -5])
def test_truncated_graph_is_inconclusive(tmp_path, cut):
    data = saved_model_with_checkpoint_ops()
    result = only(write(tmp_path, "saved_model.pb", data[:cut]))
    assert str(result.verdict) == "inconclusive"
    assert "not readable protobuf" in result.problems[0].reason


@pytest.mark.parametrize("data", [b"\x0f\x00\x01", b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", b"\x00\x00",
                                  b"\x0a\x02\x12\x80"])
def test_corrupt_graph_is_inconclusive(tmp_path, data):
    ctx = ScanContext("graph.pb")
    analyse(io.BytesIO(data), ctx, None, hint="tf_graph")
    assert ctx.problems and not ctx.findings


def test_big_constants_are_skipped_unread():
    weights = b"\x01" * (4 << 20)
    data = graph_def(const_float("w", weights), node("out", "Identity", ["w"]))
    stream = CountingStream(data)
    ctx = ScanContext("graph.pb")
    assert analyse(stream, ctx, None, hint="tf_graph") == "tf_graph"
    assert not ctx.problems
    assert stream.bytes_read < 512 * 1024


class CountingStream(io.BytesIO):
    def __init__(self, data):
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size=-1):
        data = super().read(size)
        self.bytes_read += len(data)
        return data


def test_graph_inside_a_larger_stream_is_read_from_its_position():
    data = graph_def(const_string("p", "/etc/passwd"), node("read", "ReadFile", ["p"]))
    stream = io.BytesIO(b"\xff" * 100 + data)
    stream.seek(100)
    ctx = ScanContext("graph.pb")
    analyse(stream, ctx, None, hint="tf_graph")
    assert not ctx.problems and [f.rule for f in ctx.findings] == ["tf-file-read"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300), st.sampled_from(["tf_graph", "onnx", "coreml", "tflite", "safetensors"]))
def test_arbitrary_bytes_never_crash_the_readers(data, fmt):
    ctx = ScanContext("model.bin")
    analyse(io.BytesIO(data), ctx, None, hint=fmt)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_graphs_never_crash(data):
    original = bytearray(saved_model_with_checkpoint_ops())
    for _ in range(data.draw(st.integers(1, 6))):
        index = data.draw(st.integers(0, len(original) - 1))
        original[index] = data.draw(st.integers(0, 255))
    ctx = ScanContext("saved_model.pb")
    analyse(io.BytesIO(bytes(original)), ctx, None, hint="tf_graph")


# -- checkpoint files (a SavedModel's variables/) -----------------------------------------------
def _checkpoint_index(body: bytes = b"\x00" * 64) -> bytes:
    """Table blocks, then the 48-byte footer whose last 8 bytes are the table magic number."""
    return body + b"\x00" * 40 + (0xDB4775248B80FB57).to_bytes(8, "little")


def test_checkpoint_index_and_data_shards_hold_no_code(tmp_path):
    variables = tmp_path / "variables"
    variables.mkdir()
    (variables / "variables.index").write_bytes(_checkpoint_index(bytes(range(256)) * 4))
    (variables / "variables.data-00000-of-00001").write_bytes(bytes(range(256)) * 64)
    report = malhug.scan(str(tmp_path))
    assert {f.format for f in report.files} == {"tf_checkpoint"}
    assert all(str(f.verdict) == "clean" for f in report.files), [f.problems for f in report.files]


def test_checkpoint_index_without_its_footer_is_inconclusive(tmp_path):
    path = tmp_path / "variables.index"
    path.write_bytes(bytes(range(256)) * 4)
    result = malhug.scan(str(path)).files[0]
    assert str(result.verdict) == "inconclusive"
    assert "table footer" in result.problems[0].reason


def test_a_pickle_named_like_a_checkpoint_shard_is_read_as_a_pickle(tmp_path):
    import os
    import pickle

    class Payload:
        def __reduce__(self):
            return (os.system, ("id",))

    path = tmp_path / "variables.data-00000-of-00001"
    path.write_bytes(pickle.dumps(Payload()))
    result = malhug.scan(str(path)).files[0]
    assert result.format == "pickle"
    assert str(result.verdict) == "malicious"
