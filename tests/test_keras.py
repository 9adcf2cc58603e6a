"""Keras models: benign ones written by Keras 3 (torch backend), and copies whose configs carry
Lambda bytecode or names the loader imports. Malicious code is only ever marshalled, never run."""
from __future__ import annotations

import base64
import io
import json
import marshal
import os
import zipfile

import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
h5py = pytest.importorskip("h5py")
keras = pytest.importorskip("keras")

import malhug  # noqa: E402
from malhug.findings import Severity, Verdict  # noqa: E402
from malhug.formats import analyse  # noqa: E402
from malhug.formats.base import ScanContext  # noqa: E402
from malhug.formats.keras import protobuf_json_strings  # noqa: E402


def scan_one(path):
    return malhug.scan(str(path)).files[0]


def rules(result) -> set:
    return {f.rule for f in result.findings}


def code_text(function) -> str:
    """What Keras' func_dump stores for a function: its marshalled code, base64."""
    return base64.encodebytes(marshal.dumps(function.__code__)).decode("ascii")


def hostile(x):
    return __import__("os").system("id") or x


HOSTILE_LAMBDA = lambda x: __import__("os").system("id") or x  # noqa: E731


# -- models written by Keras

def sequential():
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(2, 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(4, activation="softmax"),
    ])


def functional_with_nested_model():
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dropout(0.1)], name="inner")
    inputs = keras.Input((4,))
    x = inner(inputs)
    x = keras.layers.Dense(2, activation="tanh")(x)
    model = keras.Model(inputs, x)
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    return model


def with_lambda(function=lambda x: x * 2):
    inputs = keras.Input((4,))
    x = keras.layers.Dense(3)(inputs)
    x = keras.layers.Lambda(function, name="scale")(x)
    return keras.Model(inputs, x)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keras")
    paths = {}
    for name, build in (("sequential", sequential), ("functional", functional_with_nested_model),
                        ("lambda", with_lambda)):
        for suffix in ("keras", "h5"):
            path = folder / f"{name}.{suffix}"
            build().save(str(path))
            paths[f"{name}.{suffix}"] = path
    return paths


@pytest.mark.parametrize("name", ["sequential.keras", "sequential.h5", "functional.keras", "functional.h5"])
def test_benign_models_are_clean(saved, name):
    result = scan_one(saved[name])
    assert result.verdict == Verdict.CLEAN, [f.to_dict() for f in result.findings] + list(result.problems)
    assert not result.findings
    assert result.format == ("keras" if name.endswith(".keras") else "keras_h5")


def test_keras_archive_members_are_read(saved):
    result = scan_one(saved["functional.keras"])
    formats = {m.name: m.format for m in result.members}
    assert formats["config.json"] == "keras_config"
    assert formats["model.weights.h5"] == "hdf5"


@pytest.mark.parametrize("name", ["lambda.keras", "lambda.h5"])
def test_a_benign_lambda_is_reported_but_clean(saved, name):
    result = scan_one(saved[name])
    assert result.verdict == Verdict.CLEAN
    present = [f for f in result.findings if f.rule == "keras-lambda-code-present"]
    assert len(present) == 1 and present[0].severity == Severity.INFO
    assert "'scale'" in present[0].message
    assert all(f.severity <= Severity.INFO for f in result.findings)


# -- tampered copies

def rewrite_keras(source, target, change) -> None:
    """Copy a .keras archive with its config.json changed by `change(config)`."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        for item in original.infolist():
            data = original.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                change(config)
                data = json.dumps(config).encode()
            copy.writestr(item, data)


def rewrite_h5(source, target, change) -> None:
    target.write_bytes(source.read_bytes())
    with h5py.File(target, "r+") as h5:
        config = json.loads(h5.attrs["model_config"])
        change(config)
        h5.attrs["model_config"] = json.dumps(config)


def lambda_layer(config) -> dict:
    return next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Lambda")


def put_code(function):
    def change(config):
        lambda_layer(config)["config"]["function"]["config"]["code"] = code_text(function)
    return change


@pytest.mark.parametrize("function", [HOSTILE_LAMBDA, hostile], ids=["lambda", "def"])
@pytest.mark.parametrize("suffix", ["keras", "h5"])
def test_a_lambda_running_a_command_is_malicious(saved, tmp_path, suffix, function):
    target = tmp_path / f"model.{suffix}"
    rewrite = rewrite_keras if suffix == "keras" else rewrite_h5
    rewrite(saved[f"lambda.{suffix}"], target, put_code(function))
    result = scan_one(target)
    assert result.verdict == Verdict.MALICIOUS
    commands = [f for f in result.findings if f.category == "command_exec" and f.severity >= Severity.HIGH]
    assert commands
    text = " ".join(f.message + " " + f.evidence for f in commands)
    assert "os.system" in text and "id" in text
    assert "Keras Lambda layer 'scale'" in commands[0].message
    assert "config.layers[2].config.function" in commands[0].message
    assert "keras-lambda-code-present" in rules(result)


def test_a_lambda_in_a_compressed_archive_member_is_read(saved, tmp_path):
    """A legacy .h5 inside a deflated zip has no random access: it is spooled, then read."""
    model = tmp_path / "model.h5"
    rewrite_h5(saved["lambda.h5"], model, put_code(HOSTILE_LAMBDA))
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.write(model, "models/model.h5")
    result = scan_one(archive)
    assert result.verdict == Verdict.MALICIOUS
    assert any(f.location.member == "models/model.h5" and f.category == "command_exec" for f in result.findings)


def test_unreadable_lambda_code_is_suspicious_and_inconclusive(saved, tmp_path):
    def change(config):
        lambda_layer(config)["config"]["function"]["config"]["code"] = base64.b64encode(b"\xe3garbage").decode()

    target = tmp_path / "model.keras"
    rewrite_keras(saved["lambda.keras"], target, change)
    result = scan_one(target)
    assert "keras-lambda-unreadable" in rules(result)
    assert result.verdict == Verdict.SUSPICIOUS
    assert any("cannot be read" in p.reason for p in result.problems)


@pytest.mark.parametrize("reference,severity", [
    ({"module": "os", "class_name": "system"}, Severity.CRITICAL),
    ({"module": "os", "class_name": "function", "config": "system", "registered_name": "function"},
     Severity.CRITICAL),
    ({"module": "builtins", "class_name": "function", "config": "exec", "registered_name": "function"},
     Severity.CRITICAL),
    ({"module": "example_invalid.helpers", "class_name": "Loader"}, Severity.MEDIUM),
])
def test_names_outside_keras_are_reported(saved, tmp_path, reference, severity):
    def change(config):
        dense = next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Dense")
        dense["config"]["kernel_initializer"] = {**reference, "config": reference.get("config", {})}

    target = tmp_path / "model.keras"
    rewrite_keras(saved["functional.keras"], target, change)
    result = scan_one(target)
    found = [f for f in result.findings if f.rule == "keras-external-reference"]
    assert found and max(f.severity for f in found) == severity
    assert "kernel_initializer" in found[0].message
    assert result.verdict == (Verdict.MALICIOUS if severity >= Severity.HIGH else Verdict.SUSPICIOUS)


def test_a_layer_class_taken_from_another_module(saved, tmp_path):
    def change(config):
        dense = next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Dense")
        dense["module"], dense["class_name"] = "subprocess", "Popen"

    target = tmp_path / "model.keras"
    rewrite_keras(saved["sequential.keras"], target, change)
    result = scan_one(target)
    assert result.verdict == Verdict.MALICIOUS
    assert any(f.rule == "keras-external-reference" and "subprocess.Popen" in f.message for f in result.findings)


# -- legacy (Keras 2 / tf.keras) configs written by hand

def keras2_model(layer_config: dict, class_name: str = "Lambda") -> dict:
    return {"class_name": "Sequential", "config": {"name": "sequential", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 4], "name": "input_1"}},
        {"class_name": "Dense", "config": {"name": "dense", "units": 3, "activation": "relu"}},
        {"class_name": class_name, "config": {"name": "odd", "trainable": True, **layer_config}},
    ]}}


def write_h5(path, model_config: dict, **extra_attributes) -> None:
    with h5py.File(path, "w") as h5:
        h5.attrs["keras_version"] = b"2.12.0"
        h5.attrs["backend"] = b"tensorflow"
        h5.attrs["model_config"] = json.dumps(model_config).encode()
        for key, value in extra_attributes.items():
            h5.attrs[key] = value
        weights = h5.create_group("model_weights")
        weights.create_dataset("dense/kernel:0", data=[[0.5] * 3] * 4)


def test_keras2_lambda_bytecode(tmp_path):
    path = tmp_path / "legacy.h5"
    write_h5(path, keras2_model({"function": [code_text(HOSTILE_LAMBDA), None, None],
                                 "function_type": "lambda", "module": "__main__"}))
    result = scan_one(path)
    assert result.verdict == Verdict.MALICIOUS
    assert any(f.category == "command_exec" and "layer 'odd'" in f.message for f in result.findings)


def test_keras2_lambda_naming_a_module_function(tmp_path):
    path = tmp_path / "legacy.h5"
    write_h5(path, keras2_model({"function": "system", "function_type": "function", "module": "os"}))
    result = scan_one(path)
    assert result.verdict == Verdict.MALICIOUS
    found = [f for f in result.findings if f.rule == "keras-external-reference"]
    assert found and "os.system" in found[0].message and "config.layers[2].config.function" in found[0].message


def test_lambda_bytecode_of_an_older_python_is_judged_from_its_names(tmp_path):
    """Python 3.8 `lambda x: os.system('id')`, written by hand: no disassembly, names suffice."""
    from test_marshal_reader import code_38

    path = tmp_path / "legacy.h5"
    encoded = base64.encodebytes(code_38()).decode()
    write_h5(path, keras2_model({"function": [encoded, None, None], "function_type": "lambda"}))
    result = scan_one(path)
    assert result.verdict == Verdict.MALICIOUS
    assert any(f.category == "command_exec" for f in result.findings)


def test_tf_op_layer_calling_a_dangerous_function(tmp_path):
    path = tmp_path / "legacy.h5"
    write_h5(path, keras2_model({"function": "os.system"}, class_name="TFOpLambda"))
    result = scan_one(path)
    assert "keras-tfop-dangerous" in rules(result)
    assert result.verdict == Verdict.MALICIOUS


def test_tf_op_layer_with_an_ordinary_op_is_clean(tmp_path):
    path = tmp_path / "legacy.h5"
    write_h5(path, keras2_model({"function": "math.add"}, class_name="TFOpLambda"))
    assert scan_one(path).verdict == Verdict.CLEAN


def test_training_config_is_read_too(tmp_path):
    path = tmp_path / "legacy.h5"
    training = {"loss": {"class_name": "function", "module": "os", "config": "popen"}}
    write_h5(path, keras2_model({"function": "math.add"}, class_name="TFOpLambda"),
             training_config=json.dumps(training).encode())
    result = scan_one(path)
    assert result.verdict == Verdict.MALICIOUS
    assert any("training_config" in f.message for f in result.findings)


# -- plain and broken HDF5

def test_plain_hdf5_is_data(tmp_path):
    path = tmp_path / "arrays.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("x", data=list(range(100)))
        h5.create_group("g").create_dataset("y", data=[[1.0, 2.0]])
        h5.attrs["note"] = "plain arrays"
    result = scan_one(path)
    assert result.verdict == Verdict.CLEAN
    assert result.format == "hdf5"
    assert not result.findings and not result.problems


def test_corrupt_hdf5_is_inconclusive(saved, tmp_path):
    data = saved["sequential.h5"].read_bytes()
    path = tmp_path / "broken.h5"
    path.write_bytes(data[:8] + bytes(64) + data[72:400])
    result = scan_one(path)
    assert result.verdict == Verdict.INCONCLUSIVE
    assert any("HDF5" in p.reason for p in result.problems)


def test_external_links_are_not_followed(tmp_path):
    path = tmp_path / "linked.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("x", data=[1, 2])
        h5["elsewhere"] = h5py.ExternalLink("/example.invalid/other.h5", "/")
    result = scan_one(path)
    assert "hdf5-external-link" in rules(result)
    assert result.verdict == Verdict.CLEAN


# -- keras_metadata.pb (SavedModel): protobuf with JSON strings, written by hand

def pb_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def pb_field(number: int, payload: bytes) -> bytes:
    return pb_varint(number << 3 | 2) + pb_varint(len(payload)) + payload


def keras_metadata(*layer_metadata: dict) -> bytes:
    nodes = b""
    for index, metadata in enumerate(layer_metadata):
        node = (pb_varint(2 << 3) + pb_varint(index) + pb_field(3, f"root.layer-{index}".encode())
                + pb_field(4, b"_tf_keras_layer") + pb_field(5, json.dumps(metadata).encode()))
        nodes += pb_field(1, node)
    return nodes


def scan_metadata(data: bytes) -> ScanContext:
    ctx = ScanContext("keras_metadata.pb")
    analyse(io.BytesIO(data), ctx, None, name="keras_metadata.pb", hint="keras_metadata")
    return ctx


def test_keras_metadata_with_a_lambda_layer():
    data = keras_metadata(
        {"name": "dense", "class_name": "Dense", "config": {"name": "dense", "units": 3}},
        {"name": "odd", "class_name": "Lambda", "config": {
            "name": "odd", "function": [code_text(HOSTILE_LAMBDA), None, None], "function_type": "lambda"}},
    )
    assert len(protobuf_json_strings(data)) == 2
    ctx = scan_metadata(data)
    assert any(f.category == "command_exec" and f.severity >= Severity.HIGH for f in ctx.findings)
    assert ctx.members[-1].verdict == Verdict.MALICIOUS
    assert ctx.members[-1].format == "keras_metadata"


def test_keras_metadata_file_is_routed_by_its_name(tmp_path):
    from malhug.formats.sniff import sniff

    data = keras_metadata({"name": "odd", "class_name": "Lambda", "config": {
        "name": "odd", "function": "system", "function_type": "function", "module": "os"}})
    if sniff(data, "keras_metadata.pb") != "keras_metadata":
        pytest.skip("keras_metadata.pb is not routed by name in this build")
    path = tmp_path / "keras_metadata.pb"
    path.write_bytes(data)
    result = scan_one(path)
    assert result.format == "keras_metadata"
    assert result.verdict == Verdict.MALICIOUS


def test_keras_metadata_of_ordinary_layers_is_clean():
    ctx = scan_metadata(keras_metadata({"name": "dense", "class_name": "Dense", "config": {"name": "dense"}}))
    assert not ctx.findings and not ctx.problems
    assert ctx.members[-1].verdict == Verdict.CLEAN


def test_json_is_found_in_bytes_that_are_not_protobuf():
    blob = b"\xff\xfe junk " + json.dumps({"class_name": "Lambda", "config": {}}).encode() + b"\x00 more"
    assert [text for _, text in protobuf_json_strings(blob)] == ['{"class_name": "Lambda", "config": {}}']


def test_configs_nested_too_deep_are_inconclusive(tmp_path):
    deep = {"class_name": "Dense", "config": {}}
    for _ in range(300):
        deep = {"class_name": "Wrapper", "config": {"layer": deep}}
    path = tmp_path / "deep.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.0.0"}))
        archive.writestr("config.json", json.dumps(deep))
    result = scan_one(path)
    assert result.verdict == Verdict.INCONCLUSIVE
    assert any("too large or too deep" in p.reason for p in result.problems)


@pytest.mark.parametrize("script,expected", [
    ("import time; time.sleep(30)", "limit hdf5_seconds"),
    ("import os; os.abort()", "HDF5 reader failed"),
    ("print('not json')", "HDF5 reader failed"),
])
def test_the_hdf5_reader_is_isolated(tmp_path, monkeypatch, script, expected):
    """The HDF5 library runs in a child process: a hang or a crash there leaves the scan
    inconclusive, never stuck or dead."""
    from malhug.formats import keras as keras_format

    monkeypatch.setattr(keras_format, "HDF5_CHILD", script)
    path = tmp_path / "model.h5"
    write_h5(path, keras2_model({"function": "math.add"}, class_name="TFOpLambda"))
    result = malhug.scan(str(path), limits={"hdf5_seconds": 1.0}).files[0]
    assert result.verdict == Verdict.INCONCLUSIVE
    assert any(expected in p.reason for p in result.problems)


def test_hdf5_link_cycles_are_suspicious(tmp_path):
    path = tmp_path / "cyclic.h5"
    with h5py.File(path, "w") as h5:
        h5.create_group("a/deeper")
        h5["a/deeper/up"] = h5["a"]
        h5["a/loop"] = h5py.SoftLink("/a")
    result = scan_one(path)
    assert result.verdict == Verdict.SUSPICIOUS
    cycle = next(f for f in result.findings if f.rule == "hostile-shape")
    assert "cycle" in cycle.message
    assert "a/deeper/up -> /a" in cycle.evidence and "soft link" in cycle.evidence


@pytest.mark.parametrize("answer", [
    '{"configs": 5}', '{"configs": [["model_config"]]}', '{"cycles": [1, 2]}', '[1, 2]',
    '{"external": "a -> b"}',
])
def test_an_hdf5_reader_answer_out_of_shape_is_inconclusive(tmp_path, monkeypatch, answer):
    """A child the file subverted could answer anything: the scan ends inconclusive, named."""
    from malhug.formats import keras as keras_format

    monkeypatch.setattr(keras_format, "HDF5_CHILD", f"print({answer!r})")
    path = tmp_path / "model.h5"
    write_h5(path, keras2_model({"function": "math.add"}, class_name="TFOpLambda"))
    result = malhug.scan(str(path)).files[0]
    assert result.verdict == Verdict.INCONCLUSIVE
    assert any(p.reason.startswith("HDF5 reader failed") for p in result.problems)
