"""Fuzz targets: each takes bytes and must return. Findings, problems and an inconclusive
verdict are all fine answers; an exception escaping the public entry point is a crash.

Used by tests/fuzz/run.py (atheris, coverage guided) and by the hypothesis smoke tests.
"""
from __future__ import annotations

import ast
import io
import struct

from malhug.formats import analyse
from malhug.formats.base import ScanContext
from malhug.limits import DEFAULT_LIMITS, Deadline

SECONDS_PER_INPUT = 10.0  # the scan's own deadline; libFuzzer's -timeout is set above it
# the HDF5 library's spins on mutated files are cut at 2 s rather than a minute
LIMITS = DEFAULT_LIMITS.with_overrides(max_member_size=64 << 20, ratio_floor=8 << 20, hdf5_seconds=2.0)


def _context(name: str) -> ScanContext:
    return ScanContext(name, LIMITS, Deadline(SECONDS_PER_INPUT))


def _scan(data: bytes, name: str, hint: str | None) -> ScanContext:
    ctx = _context(name)
    analyse(io.BytesIO(data), ctx, None, name=name, hint=hint)
    return ctx


def read_hdf5_in_forked_children() -> None:
    """Run the HDF5 reader's child program in a fork of this process rather than a new
    interpreter per input (h5py is imported once, here), keeping the child's time limit: the
    HDF5 library spins on many mutated files, and that must stay a limit hit, not a hang."""
    import contextlib
    import os
    import select
    import subprocess
    import sys
    import time

    import h5py  # noqa: F401  (imported before forking, so no child imports it again)

    from malhug.formats import keras

    program = compile(keras.HDF5_CHILD, "<hdf5 reader>", "exec")
    argv = [str(keras.MAX_HDF5_OBJECTS), str(keras.MAX_ATTRIBUTES)]

    def child(path: str, write_end: int) -> None:
        try:
            output = io.StringIO()
            sys.argv = ["-c", path, *argv]
            with contextlib.redirect_stdout(output):
                exec(program, {"__name__": "__main__"})
            data = output.getvalue().encode()
            while data:
                data = data[os.write(write_end, data):]
        finally:
            os._exit(0)

    def run(path: str, seconds: float) -> subprocess.CompletedProcess:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            child(path, write_end)
        os.close(write_end)
        chunks, expires = [], time.monotonic() + seconds
        try:
            while True:
                remaining = expires - time.monotonic()
                if remaining <= 0 or not select.select([read_end], [], [], remaining)[0]:
                    os.kill(pid, 9)
                    os.waitpid(pid, 0)
                    raise subprocess.TimeoutExpired(path, seconds)
                data = os.read(read_end, 1 << 16)
                if not data:
                    break
                chunks.append(data)
        finally:
            os.close(read_end)
        status = os.waitpid(pid, 0)[1]
        return subprocess.CompletedProcess(path, os.waitstatus_to_exitcode(status), b"".join(chunks), b"")

    keras.run_hdf5_child = run


def container(hint: str | None, name: str):
    def target(data: bytes) -> None:
        _scan(data, name, hint)

    target.__name__ = f"fuzz_{hint or 'sniff'}"
    return target


def fuzz_pickle(data: bytes) -> None:
    """The machine on raw bytes, its program rendered and parsed, then the whole format path."""
    from malhug.pickle.checks import check_trace
    from malhug.pickle.decompile import Renderer
    from malhug.pickle.machine import PickleMachine
    from malhug.pickle.reader import ByteReader

    trace = PickleMachine(ByteReader(io.BytesIO(data)), LIMITS, Deadline(SECONDS_PER_INPUT)).run()
    program = Renderer(LIMITS).program(trace, LIMITS.max_program_chars)
    ast.parse(program.source)
    ctx = _context("x.pkl")
    check_trace(trace, ctx.location(None), LIMITS)
    _scan(data, "x.pkl", "pickle")


_HDF5_HEAD = b"\x89HDF\r\n\x1a\n" + bytes(56)


def fuzz_hdf5_answer(data: bytes) -> None:
    """What the scanner makes of any answer the HDF5 reader's child could give (first byte: its
    exit code; the rest: its output), through the model-config walker."""
    import subprocess

    from malhug.formats import keras

    def answer(path: str, seconds: float) -> subprocess.CompletedProcess:
        code = data[0] - 256 if data and data[0] > 127 else (data[0] if data else 0)
        return subprocess.CompletedProcess(path, code, data[1:], b"")

    saved, keras.run_hdf5_child = keras.run_hdf5_child, answer
    try:
        _scan(_HDF5_HEAD, "model.h5", "hdf5")
    finally:
        keras.run_hdf5_child = saved


def fuzz_marshal(data: bytes) -> None:
    from malhug.code.marshal_reader import MarshalError, load_code, loads

    for read in (loads, load_code):
        try:
            read(data)
        except MarshalError:
            pass
    for version in ((3, 8), (3, 11), (3, 12)):
        try:
            loads(data, version)
        except MarshalError:
            pass


def fuzz_template(data: bytes) -> None:
    from malhug.formats.templates import analyse_template

    analyse_template(data.decode("utf-8", "replace"), _context("tokenizer_config.json"), None)


class _Values:
    """Python constants drawn from fuzz bytes (the shapes fold functions are handed)."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def chunk(self) -> bytes:
        size = self.byte() % 48
        out = self.data[self.pos:self.pos + size]
        self.pos += size
        return out

    def text(self) -> str:
        return self.chunk().decode("latin-1")

    def value(self, depth: int = 0):
        kind = self.byte() % (12 if depth < 2 else 8)
        if kind == 0:
            return self.text()
        if kind == 1:
            return self.chunk()
        if kind == 2:
            return int.from_bytes(self.chunk()[:16], "little", signed=True)
        if kind == 3:
            raw = self.chunk()[:8].ljust(8, b"\0")
            return struct.unpack("<d", raw)[0]
        if kind == 4:
            return bool(self.byte() & 1)
        if kind == 5:
            return None
        if kind == 6:
            return self.byte() - 128
        if kind == 7:
            return bytearray(self.chunk())
        if kind == 8:
            return [self.value(depth + 1) for _ in range(self.byte() % 4)]
        if kind == 9:
            return tuple(self.value(depth + 1) for _ in range(self.byte() % 4))
        if kind == 10:
            return {self.text(): self.value(depth + 1) for _ in range(self.byte() % 3)}
        return slice(self.byte() - 128, self.byte() - 128, (self.byte() % 5) - 2 or None)


def fuzz_fold(data: bytes) -> None:
    from malhug.code import fold

    values = _Values(data)
    names = sorted(fold.foldable_names())
    budget = fold.FoldBudget(max_output=1 << 20, max_steps=64)
    binops = ("Add", "Sub", "Mult", "Mod", "FloorDiv", "Div", "Pow", "LShift", "RShift", "BitOr",
              "BitXor", "BitAnd", "MatMult")
    for _ in range(4):
        kind = values.byte() % 6
        if kind == 0 and names:
            name = names[(values.byte() * 256 + values.byte()) % len(names)]
            args = tuple(values.value() for _ in range(values.byte() % 4))
            kwargs = {values.text(): values.value() for _ in range(values.byte() % 2)}
            fold.fold_call(name, args, kwargs, budget)
        elif kind == 1:
            receiver = values.value()
            method = values.text() or "decode"
            fold.fold_method(receiver, method, tuple(values.value() for _ in range(values.byte() % 3)),
                             {}, budget)
        elif kind == 2:
            fold.fold_binop(binops[values.byte() % len(binops)], values.value(), values.value(), budget)
        elif kind == 3:
            fold.fold_unaryop(("USub", "UAdd", "Invert", "Not")[values.byte() % 4], values.value(), budget)
        elif kind == 4:
            fold.fold_subscript(values.value(), values.value(), budget)
        else:
            parts = [values.text() if values.byte() & 1 else
                     (values.value(), (-1, 115, 114, 97)[values.byte() % 4], values.text() or None)
                     for _ in range(values.byte() % 4)]
            fold.fold_fstring(parts, budget)


TARGETS = {
    "pickle": fuzz_pickle,
    "marshal": fuzz_marshal,
    "zip": container("zip", "x.zip"),
    "tar": container("tar", "x.tar"),
    "7z": container("7z", "x.7z"),
    "gzip": container("gzip", "x.gz"),
    "npy": container("npy", "x.npy"),
    "gguf": container("gguf", "x.gguf"),
    "safetensors": container("safetensors", "x.safetensors"),
    "onnx": container("onnx", "model.onnx"),
    "tf_graph": container("tf_graph", "saved_model.pb"),
    "keras_metadata": container("keras_metadata", "keras_metadata.pb"),
    "keras_config": container("keras_config", "config.json"),
    "hdf5": container("hdf5", "model.h5"),
    "hdf5_answer": fuzz_hdf5_answer,
    "sniff": container(None, "x.bin"),
    "template": fuzz_template,
    "fold": fuzz_fold,
}
