"""Git LFS pointer files: the real content was never downloaded, so nothing can be said of it."""
from __future__ import annotations

from typing import BinaryIO

from .base import ScanContext


def handle(stream: BinaryIO, ctx: ScanContext, member: str | None, depth: int) -> str:
    text = stream.read(1024).decode("utf-8", "replace")
    fields = dict(line.split(" ", 1) for line in text.splitlines() if " " in line)
    oid = fields.get("oid", "unknown object")
    size = fields.get("size", "?")
    ctx.add_problem(member, f"not downloaded: Git LFS pointer to {oid} ({size} bytes)")
    return "lfs_pointer"


HANDLERS = {"lfs_pointer": handle}
