"""Formats that hold data and built-in operators only (TFLite, Core ML): clean with their format
named; custom operators and Flex-delegate TensorFlow ops are reported; corrupt files are
inconclusive."""
import struct

import pytest
from protowire import blob, message, uint

import malhug

BUILTIN_CUSTOM = 32


def only(path):
    report = malhug.scan(path)
    assert len(report.files) == 1
    return report.files[0]


def tflite_model(codes) -> bytes:
    """A flatbuffer with the TFLite schema's Model.version and Model.operator_codes.
    codes: (builtin_code, custom_code or None) per operator."""
    buf = bytearray(b"\0\0\0\0TFL3")
    model_vtable = len(buf)
    buf += struct.pack("<HHHH", 8, 12, 4, 8)
    model = len(buf)
    buf += struct.pack("<iII", model - model_vtable, 3, 0)
    struct.pack_into("<I", buf, 0, model)
    vector = len(buf)
    buf += struct.pack("<I", len(codes)) + b"\0" * 4 * len(codes)
    struct.pack_into("<I", buf, model + 8, vector - (model + 8))
    for index, (builtin, custom) in enumerate(codes):
        vtable = len(buf)
        buf += struct.pack("<HHHHHH", 12, 16, 4, 8 if custom else 0, 0, 12)
        table = len(buf)
        buf += struct.pack("<ibxxxIi", table - vtable, min(builtin, 127), 0, builtin)
        element = vector + 4 + 4 * index
        struct.pack_into("<I", buf, element, table - element)
        if custom:
            string = len(buf)
            name = custom.encode()
            buf += struct.pack("<I", len(name)) + name + b"\0"
            struct.pack_into("<I", buf, table + 8, string - (table + 8))
    return bytes(buf) + b"\0" * 64  # stands for the buffers that follow


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_tflite_with_builtin_operators_is_clean(tmp_path):
    result = only(write(tmp_path, "model.tflite", tflite_model([(3, None), (9, None), (22, None)])))
    assert result.format == "tflite"
    assert str(result.verdict) == "clean" and not result.findings


def test_tflite_is_told_by_content_not_name(tmp_path):
    assert only(write(tmp_path, "weights.bin", tflite_model([(3, None)]))).format == "tflite"


def test_tflite_custom_operator_is_named(tmp_path):
    data = tflite_model([(3, None), (BUILTIN_CUSTOM, "TFLite_Detection_PostProcess")])
    result = only(write(tmp_path, "detect.tflite", data))
    assert str(result.verdict) == "clean"
    (finding,) = result.findings
    assert finding.rule == "tflite-custom-op" and str(finding.severity) == "low"
    assert "TFLite_Detection_PostProcess" in finding.message
    assert "custom operators: TFLite_Detection_PostProcess" in next(
        m for m in result.members if m.name == "<operators>").note


@pytest.mark.parametrize("op, verdict, category", [("FlexWriteFile", "malicious", "file_write"),
                                                   ("FlexPyFunc", "malicious", "code_exec"),
                                                   ("FlexReadFile", "suspicious", "file_read")])
def test_tflite_flex_ops_that_reach_the_host(tmp_path, op, verdict, category):
    result = only(write(tmp_path, "model.tflite", tflite_model([(3, None), (BUILTIN_CUSTOM, op)])))
    assert str(result.verdict) == verdict
    assert result.findings[0].category == category and op in result.findings[0].evidence


def test_tflite_ordinary_flex_op_is_clean(tmp_path):
    result = only(write(tmp_path, "model.tflite", tflite_model([(BUILTIN_CUSTOM, "FlexMatMul")])))
    assert str(result.verdict) == "clean" and not result.findings


@pytest.mark.parametrize("mangle", ["root", "cut", "count"])
def test_corrupt_tflite_is_inconclusive(tmp_path, mangle):
    data = bytearray(tflite_model([(3, None), (BUILTIN_CUSTOM, "MyOp")]))
    if mangle == "root":
        struct.pack_into("<I", data, 0, 10_000_000)
    elif mangle == "cut":
        data = data[:40]
    else:
        vector = 8 + 8 + 12
        struct.pack_into("<I", data, vector, 1_000_000)
    result = only(write(tmp_path, "model.tflite", bytes(data)))
    assert str(result.verdict) == "inconclusive"
    assert "TFLite" in result.problems[0].reason


def coreml_model(*extra: bytes) -> bytes:
    description = message(2, message(1, blob(1, "input")), message(10, blob(1, "output")))
    network = message(500, message(1, blob(1, "dense"), blob(2, "input"), blob(3, "output")))
    return uint(1, 4) + description + network + b"".join(extra)


def test_coreml_model_is_clean(tmp_path):
    result = only(write(tmp_path, "model.mlmodel", coreml_model()))
    assert result.format == "coreml" and str(result.verdict) == "clean"
    assert "specification version 4" in next(m for m in result.members if m.name == "<model>").note


def test_coreml_custom_model_is_named(tmp_path):
    custom = message(555, blob(10, "MyCustomModelClass"))
    result = only(write(tmp_path, "model.mlmodel", uint(1, 4) + custom))
    assert [f.rule for f in result.findings] == ["coreml-custom-model"]
    assert str(result.verdict) == "clean"


def test_corrupt_coreml_is_inconclusive(tmp_path):
    result = only(write(tmp_path, "model.mlmodel", coreml_model()[:-3]))
    assert str(result.verdict) == "inconclusive"


def test_openvino_ir_xml_is_text(tmp_path):
    xml = '<?xml version="1.0"?>\n<net name="model" version="11">\n<layers>\n</layers>\n</net>\n'
    result = only(write(tmp_path, "model.xml", xml.encode()))
    assert str(result.verdict) == "clean"
