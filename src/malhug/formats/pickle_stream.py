"""Raw pickle streams (.pkl, .pickle, .joblib, .dill, a .bin that is a pickle ...)."""
from __future__ import annotations

import io
from typing import BinaryIO

from ..pickle.checks import NestedPayload, check_trace
from ..pickle.machine import CallHook, PickleMachine, Trace
from ..pickle.reader import ByteReader
from .base import ScanContext, join_member


def handle(stream: BinaryIO, ctx: ScanContext, member: str | None, depth: int) -> None:
    analyse_pickle(stream, ctx, member, depth)


def analyse_pickle(stream: BinaryIO, ctx: ScanContext, member: str | None, depth: int,
                   max_pickles: int | None = None, hook: CallHook | None = None,
                   start: int | None = None, end: int | None = None) -> Trace:
    """Run the machine over a stream, judge its trace, and follow nested payloads."""
    if start is None:
        start = _position(stream)
    reader = ByteReader(stream, start=start, end=end)
    machine = PickleMachine(reader, ctx.limits, ctx.deadline, hook=hook or default_hook(),
                            max_pickles=max_pickles)
    trace = machine.run()
    ctx.traces[member or ""] = trace
    verdict = check_trace(trace, ctx.location(member), ctx.limits)
    for finding in verdict.findings:
        ctx.add_finding(finding)
    if trace.error:
        ctx.add_problem(member, f"pickle stream broken at offset {trace.error_offset}: {trace.error}",
                        trace.error_offset)
    if trace.limit is not None:
        ctx.limit_hit(member, trace.limit, trace.error_offset)
    for payload in verdict.nested:
        _follow(payload, reader, ctx, member, depth)
    if any(f.rule != "pickle-anomaly" for f in verdict.findings):
        _analyse_program(trace, ctx, member, depth)
    return trace


PROGRAM_LITERAL = 256 * 1024  # code strings up to this size reach the engine whole


def _analyse_program(trace: Trace, ctx: ScanContext, member: str | None, depth: int) -> None:
    """Read what the pickle would run as code: data flow across its calls gives the behaviour
    (a reverse shell, an exfiltration ...). Only pickles that import something not known to be
    safe get here, so ordinary checkpoints cost nothing more."""
    from ..code.engine import Unit, analyse_unit
    from ..pickle.decompile import Renderer

    program = Renderer(ctx.limits, max_literal=PROGRAM_LITERAL).program(trace, ctx.limits.max_program_chars)
    analyse_unit(Unit(program.source, "pickle", member, lines=program.lines), ctx, depth)


def default_hook() -> CallHook | None:
    try:
        from .joblib_arrays import joblib_hook
    except ImportError:
        return None
    return joblib_hook


def _follow(payload: NestedPayload, reader: ByteReader, ctx: ScanContext, member: str | None,
            depth: int) -> None:
    from . import analyse

    name = join_member(member, f"<{payload.label}>")
    if payload.data is not None:
        analyse(io.BytesIO(payload.data), ctx, name, depth=depth + 1)
        return
    region = reader.region(payload.offset, payload.length)
    if region is None:
        ctx.add_problem(name, "embedded payload in a stream that cannot be re-read")
        ctx.record_member(name, "pickle", analysed=False)
        return
    analyse(_ReaderStream(region), ctx, name, depth=depth + 1)


def _position(stream) -> int:
    try:
        return stream.tell()
    except (AttributeError, OSError, ValueError):
        return 0


class _ReaderStream(io.RawIOBase):
    """A ByteReader seen as a plain binary stream."""

    def __init__(self, reader: ByteReader):
        self._reader = reader

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = 1 << 62
        out = self._reader.peek(min(n, 1 << 20))
        self._reader.skip(len(out))
        return out

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
