"""Write the seed corpus of every fuzz target: small benign and malicious inputs.

    python tests/fuzz/make_seeds.py [--out tests/fuzz/corpus]

Each target gets a folder of files; nothing here is ever loaded, only written.
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
import marshal
import pickle
import struct
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "helpers"))

MALICIOUS_PICKLE = b"cos\nsystem\n(S'echo seed'\ntR."
MALICIOUS_PICKLE_4 = (b"\x80\x04\x95\x1e\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x8c\x04eval\x93"
                      b"\x8c\x06print()\x85R.")
BENIGN_DATA = [{"a": [1, 2.5, None, True], "b": (b"x", "y")}, list(range(20)), {"nested": [[[]]]}]


def pickles() -> list[bytes]:
    out = [pickle.dumps(value, protocol) for value in BENIGN_DATA for protocol in (0, 2, 4, 5)]
    out += [MALICIOUS_PICKLE, MALICIOUS_PICKLE_4,
            b"\x80\x02cbuiltins\ngetattr\n(cbuiltins\n__import__\n(X\x02\x00\x00\x00ostRX\x06\x00\x00\x00systemtR.",
            b"\x80\x02(((lp0\n(g0\ng0\nl" + b"." ]
    return out


def _zip(members: dict, method=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def zips() -> list[bytes]:
    return [
        _zip({"data.pkl": pickle.dumps(BENIGN_DATA[0], 2), "readme.txt": b"hello"}),
        _zip({"archive/data.pkl": MALICIOUS_PICKLE, "archive/version": b"3\n",
              "archive/data/0": bytes(16)}, zipfile.ZIP_STORED),
        _zip({"inner.zip": _zip({"x.pkl": MALICIOUS_PICKLE})}),
        _zip({"a.npy": npys()[0]} if npys() else {"a.txt": b"a"}),
    ]


def tars() -> list[bytes]:
    out = []
    for members in ({"x.pkl": MALICIOUS_PICKLE}, {"a.txt": b"text", "b.json": b"{}"}):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
        out.append(buffer.getvalue())
    return out


def sevenzips() -> list[bytes]:
    try:
        import py7zr
    except ImportError:
        return []
    out = []
    for members in ({"x.pkl": MALICIOUS_PICKLE}, {"a.txt": b"text"}):
        buffer = io.BytesIO()
        with py7zr.SevenZipFile(buffer, "w") as archive:
            for name, data in members.items():
                archive.writestr(data, name)
        out.append(buffer.getvalue())
    return out


def gzips() -> list[bytes]:
    return [gzip.compress(MALICIOUS_PICKLE), gzip.compress(b"plain text\n" * 10),
            gzip.compress(tars()[0])]


def npys() -> list[bytes]:
    try:
        import numpy
    except ImportError:
        return []
    out = []
    for array in (numpy.arange(6, dtype="<i4").reshape(2, 3), numpy.array([{"a": 1}, None], dtype=object)):
        buffer = io.BytesIO()
        numpy.save(buffer, array, allow_pickle=True)
        out.append(buffer.getvalue())
    header = b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header = header.ljust(118) + b"\n"
    out.append(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + MALICIOUS_PICKLE)
    return out


def _gguf_string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def ggufs() -> list[bytes]:
    template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    hostile = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    out = []
    for text in (template, hostile):
        body = b"GGUF" + struct.pack("<IQQ", 3, 0, 2)
        body += _gguf_string("general.architecture") + struct.pack("<I", 8) + _gguf_string("llama")
        body += _gguf_string("tokenizer.chat_template") + struct.pack("<I", 8) + _gguf_string(text)
        out.append(body + bytes(32))
    return out


def safetensors_files() -> list[bytes]:
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                         "__metadata__": {"format": "pt"}}).encode()
    ok = struct.pack("<Q", len(header)) + header + bytes(8)
    bad = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                      "__metadata__": {"code": "__import__('os').system('x')"}}).encode()
    return [ok, struct.pack("<Q", len(bad)) + bad + bytes(8)]


def onnx_models() -> list[bytes]:
    try:
        import onnx
        from onnx import TensorProto, helper
    except ImportError:
        return []
    out = []
    for op, domain in (("Relu", ""), ("PyOp", "ai.onnx.contrib")):
        node = helper.make_node(op, ["x"], ["y"], domain=domain)
        graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid(domain, 1)])
        out.append(model.SerializeToString())
    return out


def _field(number: int, data: bytes) -> bytes:
    key = (number << 3) | 2
    return _varint(key) + _varint(len(data)) + data


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def tf_graphs() -> list[bytes]:
    """GraphDef: node (field 1) = NodeDef(name 1, op 2, input 3)."""
    graphs = []
    for ops in (("Const", "Identity"), ("ReadFile", "WriteFile", "PyFunc")):
        graph = b"".join(_field(1, _field(1, f"n{i}".encode()) + _field(2, op.encode()))
                         for i, op in enumerate(ops))
        graphs.append(graph)
    saved_model = _field(2, _field(2, graphs[1]))  # SavedModel.meta_graphs.graph_def
    return graphs + [saved_model]


def keras_configs() -> list[dict]:
    code = marshal.dumps(compile("lambda x: __import__('os').system('id')", "<k>", "eval"))
    import base64

    lam = {"class_name": "Lambda", "config": {"name": "l", "function": [base64.b64encode(code).decode(), None, None]}}
    dense = {"class_name": "Dense", "config": {"name": "d", "units": 2}}
    return [{"class_name": "Sequential", "config": {"name": "m", "layers": layers}}
            for layers in ([dense], [dense, lam])]


def keras_metadata() -> list[bytes]:
    return [_field(1, _field(3, json.dumps(config).encode())) for config in keras_configs()]


def keras_config_files() -> list[bytes]:
    return [json.dumps(config).encode() for config in keras_configs()]


def hdf5_answers() -> list[bytes]:
    """What the HDF5 reader's child program answers (its exit code first, then its output)."""
    configs = [["model_config", json.dumps(config)] for config in keras_configs()]
    answers = [
        {"configs": configs, "external": [], "unreadable": [], "cycles": []},
        {"configs": configs[:1], "external": ["a -> other.h5:/x"], "unreadable": ["training_config"],
         "cycles": ["a/up -> /a"]},
        {"limit": "hdf5_objects", "detail": "more than 100000 HDF5 objects"},
        {"error": "OSError: Unable to open file"},
    ]
    return [b"\x00" + json.dumps(answer).encode() for answer in answers] + [b"\x86Traceback"]


def hdf5_files() -> list[bytes]:
    try:
        import h5py
    except ImportError:
        return []
    out = []
    with tempfile.TemporaryDirectory() as folder:
        for index, config in enumerate(keras_configs()):
            path = Path(folder) / f"{index}.h5"
            with h5py.File(path, "w") as f:
                f.attrs["model_config"] = json.dumps(config)
                f.attrs["keras_version"] = "2.15.0"
                f.create_dataset("model_weights/d/kernel", data=[1.0, 2.0])
            out.append(path.read_bytes())
    return out


def templates() -> list[bytes]:
    return [t.encode() for t in (
        "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "{% set x = 'o' ~ 's' %}{{ self._TemplateReference__context[x] }}",
        "{{ ''|attr('__cla' + 'ss__') }}{{ lipsum['__glo' 'bals__'] }}",
        "{% if messages|length > 1 %}{{ raise_exception('x') }}{% endif %}",
    )]


def marshals() -> list[bytes]:
    code = compile("import os\nos.system('echo x')\ndef f(a, *b, c=1, **d):\n    return [a, b, c, d]\n",
                   "<seed>", "exec")
    values = [1, 2 ** 80, -1.5, 1j, "text", b"bytes", (1, "a"), [None, True], {"k": frozenset({1})},
              {1, 2}, Ellipsis, StopIteration]
    return [marshal.dumps(code)] + [marshal.dumps(v) for v in values if _marshallable(v)]


def _marshallable(value) -> bool:
    try:
        marshal.dumps(value)
        return True
    except ValueError:
        return False


def folds() -> list[bytes]:
    return [bytes(range(256)), b"\x00" * 64, b"\x02\x05abcde\x01\x03xyz" * 4, b"\x05" * 40,
            bytes([0, 7, 1, 0, 30, 2, 1]) + b"aGVsbG8=" + bytes(30)]


SEEDS = {
    "pickle": pickles, "marshal": marshals, "zip": zips, "tar": tars, "7z": sevenzips, "gzip": gzips,
    "npy": npys, "gguf": ggufs, "safetensors": safetensors_files, "onnx": onnx_models,
    "tf_graph": tf_graphs, "keras_metadata": keras_metadata, "keras_config": keras_config_files,
    "hdf5": hdf5_files, "hdf5_answer": hdf5_answers,
    "template": templates, "fold": folds,
}


def sniff_seeds() -> list[bytes]:
    return [seed for name, make in SEEDS.items() if name not in ("fold", "marshal", "sniff", "hdf5_answer") for seed in make()[:2]]


SEEDS["sniff"] = sniff_seeds


def write(out: Path) -> dict:
    counts = {}
    for target, make in SEEDS.items():
        folder = out / target
        folder.mkdir(parents=True, exist_ok=True)
        seeds = make()
        for index, seed in enumerate(seeds):
            (folder / f"seed-{index:03d}").write_bytes(seed)
        counts[target] = len(seeds)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "corpus")
    args = parser.parse_args()
    for target, count in write(args.out).items():
        print(f"{target:15} {count} seeds")


if __name__ == "__main__":
    main()
