"""Format dispatch: sniff a stream, hand it to the module that reads that format.

A handler is `handle(stream, ctx, member, depth) -> str | None`: it reads the stream, reports
findings and problems into ctx, calls `analyse` again for what it contains (nested members),
and may return a more precise format name (a zip that is a PyTorch checkpoint: "torch_zip").
"""
from __future__ import annotations

from typing import BinaryIO, Callable

from ..limits import LimitExceeded
from .base import ScanContext, peek_stream
from .sniff import SNIFF_BYTES, sniff

Handler = Callable[[BinaryIO, ScanContext, "str | None", int], "str | None"]

# Formats that hold only data (no code can run when they are read) are clean once sniffed.
DATA_ONLY = {
    "text": "text",
    "json": "JSON data",
    "image": "image",
    "parquet": "Parquet table",
    "arrow": "Arrow table",
    "empty": "empty file",
}


# Which module reads each format: a handler's module is imported the first time its format is
# met, so a scan of pickles never pays for the HDF5, ONNX or Jinja readers.
# (tests/test_formats_registry.py checks this table against each module's HANDLERS.)
HANDLER_MODULES: dict[str, str] = {
    "pickle": "pickle_stream",
    "torch_legacy": "torch",
    "zip": "zip",
    **dict.fromkeys(("7z", "bz2", "gzip", "joblib_zf", "lz4", "lzma", "tar", "xz", "zlib"), "archives"),
    "npy": "numpy_files",
    "safetensors": "safetensors",
    "lfs_pointer": "lfs",
    "python": "python_source",
    **dict.fromkeys(("hdf5", "keras_config", "keras_metadata"), "keras"),
    **dict.fromkeys(("tf_graph", "tf_checkpoint"), "tensorflow"),
    "onnx": "onnx",
    "gguf": "gguf",
    "template": "templates",
    "json": "json_files",
    **dict.fromkeys(("coreml", "tflite"), "data_only"),
}

_HANDLERS: dict[str, Handler | None] = {}


def handler_for(fmt: str) -> Handler | None:
    """The handler of a format, importing its module on first use (None: no reader)."""
    if fmt in _HANDLERS:
        return _HANDLERS[fmt]
    module_name = HANDLER_MODULES.get(fmt)
    handler = None
    if module_name is not None:
        try:
            module = __import__(f"{__name__}.{module_name}", fromlist=["HANDLERS"])
        except ImportError:  # an optional reader whose library is missing
            module = None
        if module is not None:
            handler = (getattr(module, "HANDLERS", None) or {"pickle": getattr(module, "handle", None)}).get(fmt)
    _HANDLERS[fmt] = handler
    return handler


def handlers() -> dict[str, Handler]:
    """Every available handler by format (imports every reader)."""
    found = {fmt: handler_for(fmt) for fmt in HANDLER_MODULES}
    return {fmt: handler for fmt, handler in found.items() if handler is not None}


def analyse(stream: BinaryIO, ctx: ScanContext, member: str | None, name: str = "",
            depth: int = 0, hint: str | None = None) -> str:
    """Sniff and read one stream (a file or a member); returns the format it was read as."""
    if depth > ctx.limits.max_depth:
        ctx.limit_hit(member, LimitExceeded("max_depth", f"nesting deeper than {ctx.limits.max_depth}"))
        ctx.record_member(member, "nested", analysed=False)
        return "nested"
    head, stream = peek_stream(stream, SNIFF_BYTES)
    if depth == 0 and ctx.origin is None:
        ctx.origin = stream
    fmt = hint or sniff(head, name or (member or ctx.file))
    handler = handler_for(fmt)
    if handler is not None:
        try:
            fmt = handler(stream, ctx, member, depth) or fmt
        except LimitExceeded as exc:
            ctx.limit_hit(member, exc)
        ctx.record_member(member, fmt)
    elif fmt in DATA_ONLY:
        ctx.record_member(member, fmt, note=f"{DATA_ONLY[fmt]}: holds no code")
    else:
        reason = f"format {fmt!r} is not analysed yet" if fmt != "unknown" else "unrecognised format"
        ctx.add_problem(member, reason)
        ctx.record_member(member, fmt, analysed=False, note=reason)
    return fmt
