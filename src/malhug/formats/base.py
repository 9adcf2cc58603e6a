"""What format modules share: the per-file scan context they report into."""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import BinaryIO

from ..findings import Finding, Location, MemberResult, Problem, Severity
from ..judge import verdict_for
from ..limits import DEFAULT_LIMITS, Deadline, LimitExceeded, Limits


def join_member(parent: str | None, child: str) -> str:
    """Member paths of nested containers are joined with ':' (outer.zip:inner.tar:x.pkl)."""
    return f"{parent}:{child}" if parent else child


@dataclass
class ScanContext:
    """Everything one file's scan reports into. Formats add to it; the scanner judges it."""

    file: str
    limits: Limits = DEFAULT_LIMITS
    deadline: Deadline = field(default_factory=lambda: Deadline(None))
    findings: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    members: list = field(default_factory=list)
    traces: dict = field(default_factory=dict)  # member path -> pickle trace (for explain)
    member_count: int = 0
    expanded_bytes: int = 0  # declared sizes of archive members read so far, nested ones multiplied
    origin: object = None  # the file's own stream, which stored members of nested zips are slices of
    # (offset in the file, length, method, encrypted) of stored-in-place members read so far -> path
    read_regions: dict = field(default_factory=dict, repr=False)
    # member path prefix -> [worst unsuppressed finding, first problem], so that judging each of
    # many members stays linear; members nested deeper than _TALLY_DEPTH parts are kept by their
    # first _TALLY_DEPTH parts and matched one by one within that group
    _tally: dict = field(default_factory=dict, repr=False)
    _deep: dict = field(default_factory=dict, repr=False)

    def location(self, member: str | None, offset: int | None = None, line: int | None = None) -> Location:
        return Location(self.file, member, offset, line)

    def add_finding(self, finding: Finding) -> None:
        self.findings.append(finding)
        self._count(finding.location.member, finding, None)

    def add_problem(self, member: str | None, reason: str, offset: int | None = None) -> None:
        problem = Problem(reason, self.location(member, offset))
        self.problems.append(problem)
        self._count(member, None, problem)

    def _count(self, member: str | None, finding: Finding | None, problem: Problem | None) -> None:
        parts = tuple(member.split(":", _TALLY_DEPTH)) if member else ()
        if len(parts) > _TALLY_DEPTH:
            parts = parts[:_TALLY_DEPTH]
            self._deep.setdefault(parts, []).append((member, finding, problem))
        for end in range(len(parts) + 1):
            tally = self._tally.setdefault(parts[:end], [None, None])
            _merge(tally, finding, problem)

    def limit_hit(self, member: str | None, exc: LimitExceeded, offset: int | None = None) -> None:
        """A bound was reached: inconclusive, and suspicious when the shape itself is hostile."""
        self.add_problem(member, str(exc), offset)
        if exc.hostile:
            self.add_finding(Finding(
                "hostile-shape", Severity.MEDIUM, "tampering",
                f"input built to exhaust a scanner or loader ({exc})", self.location(member, offset),
            ))

    def count_member(self, member: str | None) -> None:
        self.member_count += 1
        if self.member_count > self.limits.max_members:
            raise LimitExceeded("max_members", f"more than {self.limits.max_members} members")

    def record_member(self, name: str | None, fmt: str, analysed: bool = True, note: str = "") -> None:
        """Give one artefact its own result, judged from the findings and problems located in it
        and in what it contains (the file itself: everything)."""
        key = name or ""
        parts = tuple(key.split(":", _TALLY_DEPTH)) if key else ()
        if len(parts) > _TALLY_DEPTH:
            group = self._deep.get(parts[:_TALLY_DEPTH], ())
            if len(group) > _DEEP_MATCHED:  # a crafted pile of deep members: judged with their group
                tally = self._tally.get(parts[:_TALLY_DEPTH], [None, None])
            else:
                tally = [None, None]
                for member, finding, problem in group:
                    if member == key or member.startswith(key + ":"):
                        _merge(tally, finding, problem)
        else:
            tally = self._tally.get(parts, [None, None])
        worst, problem = tally
        verdict = verdict_for([worst] if worst else [], [problem] if problem else [])
        self.members.append(MemberResult(key or "(file)", fmt, verdict, analysed, note))


_TALLY_DEPTH = 16  # member path segments indexed for record_member
_DEEP_MATCHED = 1000  # deeper members of one group matched one by one, at most


def _merge(tally: list, finding: Finding | None, problem: Problem | None) -> None:
    if finding is not None and finding.suppressed is None and (
            tally[0] is None or finding.severity > tally[0].severity):
        tally[0] = finding
    if problem is not None and tally[1] is None:
        tally[1] = problem


def peek_stream(stream: BinaryIO, size: int) -> tuple[bytes, BinaryIO]:
    """The first bytes of a stream, and a stream that still yields them."""
    if _seekable(stream):
        start = stream.tell()
        head = stream.read(size)
        stream.seek(start)
        return head, stream
    head = _read_up_to(stream, size)
    return head, _Prepended(head, stream)


def _read_up_to(stream: BinaryIO, size: int) -> bytes:
    parts = []
    while size > 0:
        data = stream.read(size)
        if not data:
            break
        parts.append(data)
        size -= len(data)
    return b"".join(parts)


def _seekable(stream) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, OSError, ValueError):
        return False


class _Prepended(io.RawIOBase):
    """A non-seekable stream with bytes already read put back in front."""

    def __init__(self, head: bytes, rest: BinaryIO):
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            data, self._head = self._head + self._rest.read(), b""
            return data
        if self._head:
            data, self._head = self._head[:n], self._head[n:]
            return data
        return self._rest.read(n)

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
