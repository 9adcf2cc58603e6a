"""Tell a file's format from its bytes. Suffixes only break ties between equal candidates."""
from __future__ import annotations

import io
import re
import struct

from ..pickle.machine import PickleMachine
from ..pickle.reader import ByteReader
from ..pickle.values import Global
from ..limits import Limits

SNIFF_BYTES = 64 * 1024

# The legacy format's first pickle is this number, written as LONG1 after PROTO (and, from
# protocol 4 on, after a FRAME).
TORCH_LEGACY_NUMBER = b"\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"

_MAGICS = [
    (b"PK\x03\x04", "zip"), (b"PK\x05\x06", "zip"), (b"PK\x07\x08", "zip"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"\x1f\x8b", "gzip"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x04\x22\x4d\x18", "lz4"),
    (b"\x93NUMPY", "npy"),
    (b"\x89HDF\r\n\x1a\n", "hdf5"),
    (b"GGUF", "gguf"),
    (b"\x89PNG\r\n\x1a\n", "image"), (b"\xff\xd8\xff", "image"), (b"GIF8", "image"),
    (b"PAR1", "parquet"),
    (b"ARROW1", "arrow"),
    (b"version https://git-lfs.github.com/spec/", "lfs_pointer"),
]

CODE_SUFFIXES = (".py", ".pyw", ".ipynb")
TEMPLATE_SUFFIXES = (".jinja", ".jinja2", ".j2")
# Formats without magic bytes (protobuf) are told by name, only once content said nothing.
BINARY_BY_SUFFIX = (
    ("keras_metadata.pb", "keras_metadata"), ("saved_model.pb", "tf_graph"), (".pb", "tf_graph"),
    (".pbtxt", "tf_graph"), (".onnx", "onnx"), (".ort", "onnx"), (".mlmodel", "coreml"),
)

# joblib before 0.10 compressed a pickle (or an array's data) as "ZF", the uncompressed length
# in hex padded with spaces (to 19 bytes under Python 3, 20 under Python 2), then a zlib stream.
_JOBLIB_ZF = re.compile(rb"ZF0x[0-9a-fA-F]{1,17}L? {0,20}")


def joblib_zf_offset(head: bytes) -> int | None:
    """Where the zlib stream of a joblib `ZF` file starts, or None when it is not one."""
    match = _JOBLIB_ZF.match(head)
    if match is None or match.end() not in (21, 22) or not _is_zlib(head[match.end():]):
        return None
    return match.end()


def _is_joblib_zf(head: bytes) -> bool:
    return joblib_zf_offset(head) is not None


def sniff(head: bytes, name: str = "") -> str:
    if _is_torch_legacy(head):
        return "torch_legacy"
    if _is_joblib_zf(head):
        return "joblib_zf"
    for magic, fmt in _MAGICS:
        if head.startswith(magic):
            return fmt
    if len(head) >= 263 and head[257:262] == b"ustar":
        return "tar"
    if head[:3] == b"BZh" and head[3:4].isdigit():
        return "bz2"
    if _is_zlib(head):
        return "zlib"
    if head[:3] == b"\x5d\x00\x00":
        return "lzma"
    if _looks_like_pickle(head):
        return "pickle"
    if _is_safetensors(head):
        return "safetensors"
    if not head:
        return "empty"
    if head[4:8] == b"TFL3":
        return "tflite"
    by_suffix = next((fmt for suffix, fmt in BINARY_BY_SUFFIX if name.lower().endswith(suffix)), None)
    if _is_text(head) and not (by_suffix and _has_control_bytes(head)):
        lowered = name.lower()
        if lowered.endswith(CODE_SUFFIXES):
            return "python"
        if lowered.endswith(TEMPLATE_SUFFIXES):
            return "template"
        if lowered.endswith(".pbtxt"):
            return "tf_graph"
        if head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"["):
            return "json"
        return "text"
    if len(head) >= 263 and _is_old_tar(head):
        return "tar"
    if by_suffix is None and TF_CHECKPOINT.search(name):
        return "tf_checkpoint"
    return by_suffix or "unknown"


# TensorFlow checkpoint files: `variables.index`, `variables.data-00000-of-00001`, `ckpt-7.index` ...
TF_CHECKPOINT = re.compile(r"\.(?:index|data-\d{5}-of-\d{5})$")


def _has_control_bytes(head: bytes) -> bool:
    """Protobuf tags and lengths are control bytes; text has none but whitespace."""
    return any(byte < 0x20 and byte not in b"\t\n\r\f\v" for byte in head)


def _is_torch_legacy(head: bytes) -> bool:
    if len(head) < 2 or head[0] != 0x80:
        return False
    body = head[2:]
    if body[:1] == b"\x95":
        body = body[9:]
    return body.startswith(TORCH_LEGACY_NUMBER)


def _is_zlib(head: bytes) -> bool:
    if len(head) < 2 or head[0] != 0x78:
        return False
    return (head[0] * 256 + head[1]) % 31 == 0 and head[1] in (0x01, 0x5E, 0x9C, 0xDA)


def _is_safetensors(head: bytes) -> bool:
    if len(head) < 10:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return 2 <= length < 100 * 1024 * 1024 and head[8:9] == b"{"


def _is_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
        return True
    except UnicodeDecodeError as exc:
        # a character cut by the sniff window, not a byte that can never start one
        return exc.start >= len(head) - 4 and exc.reason == "unexpected end of data"


def _is_old_tar(head: bytes) -> bool:
    """Pre-POSIX tar: a header whose checksum field matches its bytes."""
    try:
        stored = int(head[148:156].split(b"\x00")[0].strip() or b"-1", 8)
    except ValueError:
        return False
    computed = sum(head[:148]) + 8 * 32 + sum(head[156:512])
    return stored == computed


_PROBE_LIMITS = Limits(kept_bytes=SNIFF_BYTES, blob_prefix=16, max_pickles_per_stream=4)


def _looks_like_pickle(head: bytes) -> bool:
    """Strong header, or a trial run of the machine on the first bytes that reads like one."""
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return True
    if not head:
        return False
    trace = PickleMachine(ByteReader(io.BytesIO(head)), _PROBE_LIMITS).run()
    if trace.pickles:
        return True
    if not _plausible_imports(trace):
        return False  # `class Model:` in a source file is not GLOBAL('lass Model:', ...)
    if trace.error and trace.error.startswith("truncated") and "negative" not in trace.error:
        # valid all the way to the end of the input or of the sniff window; a complete
        # import already runs code (the imported module's top level) in a real load
        return trace.opcodes >= 3 or bool(trace.globals) or head[0] == 0x80
    return bool(trace.calls) and any(call.kind != "persistent_load" for call in trace.calls)


_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")


def _plausible_imports(trace) -> bool:
    """Without a pickle header or a complete pickle, imports must name dotted identifiers."""
    return all(isinstance(g, Global) and _DOTTED.match(g.module) and _DOTTED.match(g.name)
               for g in trace.globals)
