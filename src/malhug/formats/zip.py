"""Zip archives, and the zip-based model formats: PyTorch checkpoints, TorchScript, npz.

Every member is read by its content (a member's name is only a label, never a path on disk),
except the records a torch layout reads as raw bytes: tensor storages are counted, not read.
"""
from __future__ import annotations

import io
from typing import BinaryIO

from ..findings import Finding, Severity
from ..limits import MIB, LimitExceeded
from ..streams import origin
from . import analyse
from .base import ScanContext, join_member, peek_stream
from .keras import keras_layout
from .sniff import SNIFF_BYTES, sniff
from .torch import TorchZipLayout, zip_layout
from .zipmember import UnsupportedMethod, open_member
from .zipreader import FLAG_ENCRYPTED, Entry, list_entries

# A zip nested in a compressed member has no random access; it is held in memory up to this.
NESTED_ZIP_IN_MEMORY = 256 * MIB


def handle(stream: BinaryIO, ctx: ScanContext, member: str | None, depth: int) -> str:
    archive = _random_access(stream, ctx, member)
    if archive is None:
        return "zip"
    listing = list_entries(archive, ctx.deadline)
    for reason, offset in listing.problems:
        ctx.add_problem(member, reason, offset)
    names = [entry.name for entry in listing.entries]
    layout = zip_layout(names) or keras_layout(names)  # a Keras 3 `.keras` archive: config.json read as its config
    raw_records = _RawRecords()
    labels: set[str] = set()
    regions: dict[tuple, tuple[str, int]] = {}
    size = archive.seek(0, 2)
    expansion = _Expansion(ctx, size)
    recursion_noted = False
    for entry in listing.entries:
        label = _label(entry, labels)
        ctx.count_member(join_member(member, label))
        hidden = listing.hidden(entry)
        if layout is not None and not hidden and layout.is_raw_record(entry.name):
            raw_records.add(entry, layout)
            continue
        region = (entry.data_offset, entry.compressed_size, entry.method, entry.flags & FLAG_ENCRYPTED)
        if entry.data_offset is not None and region in regions:
            # Many entries over the same bytes is how overlapping zip bombs multiply work.
            first, nested = regions[region]
            ctx.record_member(join_member(member, label), "zip_member", analysed=False,
                              note=f"same data as {first}")
            expansion.add(entry, nested, repeated=True)
            continue
        place = _place_in_file(ctx, archive, size, entry)
        earlier = ctx.read_regions.get(place) if place is not None else None
        if earlier is not None:
            # A nested archive listing the very bytes of a member already read: an archive that
            # contains itself, whose work would multiply with every level of nesting.
            child = join_member(member, label)
            ctx.record_member(child, "zip_member", analysed=False, note=f"same data as {earlier}")
            if not recursion_noted:
                recursion_noted = True
                _note_recursion(ctx, child, earlier, entry.header_offset)
            expansion.add(entry, 0, repeated=True)
            continue
        if place is not None:
            ctx.read_regions[place] = join_member(member, label)
        before = ctx.expanded_bytes
        _read_entry(archive, ctx, member, label, entry, depth, layout, hidden)
        nested = ctx.expanded_bytes - before
        regions[region] = (label, nested)
        expansion.add(entry, nested, repeated=False)
    raw_records.record(ctx, member)
    if layout is not None:
        return layout.format
    return "npz" if names and all(name.endswith(".npy") for name in names) else "zip"


class _Expansion:
    """What the members of one zip expand to, by their declared sizes, with what nested
    archives inside them expand to: a zip of zips (42.zip) or of entries sharing one
    compressed kernel is a bomb to whoever extracts it, though each piece looks small."""

    def __init__(self, ctx: ScanContext, archive_size: int):
        self.ctx = ctx
        self.packed = max(archive_size, 1)
        self.total = 0

    def add(self, entry: Entry, nested: int, repeated: bool) -> None:
        """nested: what archives inside the member expand to (already counted unless repeated)."""
        ctx = self.ctx
        size = entry.size or 0
        ctx.expanded_bytes += size + nested if repeated else size
        self.total += size + nested
        limits = ctx.limits
        total = self.total
        if total > limits.ratio_floor and total > limits.max_ratio * self.packed:
            detail = f"zip members expand to more than {total} bytes from a {self.packed} byte zip"
            raise LimitExceeded("max_ratio", detail, hostile=True)


def _place_in_file(ctx: ScanContext, archive: BinaryIO, archive_size: int, entry: Entry) -> tuple | None:
    """Where a member's bytes lie in the scanned file itself, when they are there as they are
    (a stored zip inside a stored zip is a slice of the file, and so are its members)."""
    if entry.data_offset is None:
        return None
    root, start = origin(archive, entry.data_offset)
    if root is not ctx.origin:
        return None
    length = entry.compressed_size
    if length is None:
        length = archive_size - entry.data_offset
    return start, length, entry.method, entry.flags & FLAG_ENCRYPTED


def _note_recursion(ctx: ScanContext, child: str, earlier: str, offset: int | None) -> None:
    ctx.add_finding(Finding(
        "hostile-shape", Severity.MEDIUM, "tampering",
        f"input built to exhaust a scanner or loader (a nested archive holds the same bytes as "
        f"{earlier}: an archive that contains itself)", ctx.location(child, offset)))


def _label(entry: Entry, seen: set[str]) -> str:
    label = entry.name if entry.name not in seen else f"{entry.name}@{entry.header_offset}"
    seen.add(label)
    return label


def _read_entry(archive: BinaryIO, ctx: ScanContext, parent: str | None, label: str, entry: Entry,
                depth: int, layout: TorchZipLayout | None, hidden: bool) -> None:
    child = join_member(parent, label)
    _note_tampering(ctx, child, entry, hidden)
    if entry.data_offset is None:
        _unread(ctx, child, f"no local header at offset {entry.header_offset}", entry.header_offset)
        return
    try:
        data = open_member(archive, entry, ctx.limits)
    except UnsupportedMethod as exc:
        _unread(ctx, child, str(exc), entry.header_offset)
        return
    try:
        head, readable = peek_stream(data, SNIFF_BYTES)
        if entry.flags & FLAG_ENCRYPTED and not _readable_despite_flag(ctx, child, entry, head, data):
            return
        hint = layout.hint_for(entry.name) if layout is not None else None
        analyse(readable, ctx, child, name=entry.name, depth=depth + 1, hint=hint)
    except LimitExceeded as exc:
        ctx.limit_hit(child, exc)
        ctx.record_member(child, "zip_member", analysed=False, note=str(exc))
    error = getattr(data, "error", None)
    if error:
        ctx.add_problem(child, error, entry.header_offset)


def _readable_despite_flag(ctx: ScanContext, child: str, entry: Entry, head: bytes, data) -> bool:
    """Torch ignores the encryption flag; only data that reads as nothing is taken as encrypted."""
    if sniff(head, entry.name) == "unknown" or getattr(data, "error", None):
        _unread(ctx, child, "encrypted member, cannot be read", entry.header_offset)
        return False
    ctx.add_finding(Finding(
        "zip-false-encryption-flag", Severity.LOW, "tampering",
        "member is flagged encrypted but is readable (most zip tools refuse it; torch loads it)",
        ctx.location(child, entry.header_offset)))
    return True


def _note_tampering(ctx: ScanContext, child: str, entry: Entry, hidden: bool) -> None:
    if hidden:
        ctx.add_finding(Finding(
            "zip-local-only-member", Severity.LOW, "tampering",
            "member is in a local header but not in the central directory (most zip readers miss it)",
            ctx.location(child, entry.header_offset)))
    elif entry.local_name is not None and entry.local_name != entry.name:
        ctx.add_finding(Finding(
            "zip-header-mismatch", Severity.LOW, "tampering",
            f"local header names this member {entry.local_name!r}",
            ctx.location(child, entry.header_offset)))


def _unread(ctx: ScanContext, child: str, reason: str, offset: int | None) -> None:
    ctx.add_problem(child, reason, offset)
    ctx.record_member(child, "zip_member", analysed=False, note=reason)


def _random_access(stream: BinaryIO, ctx: ScanContext, member: str | None) -> BinaryIO | None:
    try:
        if stream.seekable():
            return stream
    except (AttributeError, OSError, ValueError):
        pass
    data = stream.read(NESTED_ZIP_IN_MEMORY + 1)
    if len(data) > NESTED_ZIP_IN_MEMORY:
        ctx.limit_hit(member, LimitExceeded(
            "nested_zip_in_memory", f"compressed nested zip larger than {NESTED_ZIP_IN_MEMORY} bytes"))
        return None
    return io.BytesIO(data)


class _RawRecords:
    """Tensor storages and format records of torch layouts, summed up as one member result."""

    def __init__(self):
        self.storages = 0
        self.records = 0
        self.storage_bytes = 0

    def add(self, entry: Entry, layout: TorchZipLayout) -> None:
        if layout.is_storage(entry.name):
            self.storages += 1
            self.storage_bytes += entry.compressed_size or 0
        else:
            self.records += 1

    def record(self, ctx: ScanContext, member: str | None) -> None:
        if not (self.storages or self.records):
            return
        note = (f"{self.storages} tensor storages ({self.storage_bytes} bytes) and {self.records} "
                f"format records: read by torch as raw bytes, not read")
        name = join_member(member, "<tensor storages>")
        ctx.record_member(name, "tensor_data", analysed=False, note=note)


HANDLERS = {"zip": handle}
