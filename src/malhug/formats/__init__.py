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


def _registry() -> dict[str, Handler]:
    from . import pickle_stream

    handlers: dict[str, Handler] = {"pickle": pickle_stream.handle}
    for module_name in ("torch", "zip", "archives", "numpy_files", "safetensors", "lfs", "python_source",
                        "keras", "tensorflow", "onnx", "gguf", "templates", "json_files", "data_only"):
        try:
            module = __import__(f"{__name__}.{module_name}", fromlist=["HANDLERS"])
        except ImportError:
            continue
        handlers.update(getattr(module, "HANDLERS", {}))
    return handlers


_HANDLERS: dict[str, Handler] | None = None


def handlers() -> dict[str, Handler]:
    global _HANDLERS
    if _HANDLERS is None:
        _HANDLERS = _registry()
    return _HANDLERS


def analyse(stream: BinaryIO, ctx: ScanContext, member: str | None, name: str = "",
            depth: int = 0, hint: str | None = None) -> str:
    """Sniff and read one stream (a file or a member); returns the format it was read as."""
    if depth > ctx.limits.max_depth:
        ctx.limit_hit(member, LimitExceeded("max_depth", f"nesting deeper than {ctx.limits.max_depth}"))
        ctx.record_member(member, "nested", analysed=False)
        return "nested"
    head, stream = peek_stream(stream, SNIFF_BYTES)
    fmt = hint or sniff(head, name or (member or ctx.file))
    handler = handlers().get(fmt)
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
