"""PyTorch checkpoints: the legacy pickle sequence, and how to read a zip laid out by torch.

Only pickles and TorchScript code run when a checkpoint loads; tensor storages are copied as
raw bytes, so they are never read here and the cost of a scan does not grow with them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import BinaryIO

from .base import ScanContext
from .pickle_stream import analyse_pickle

# magic number, protocol version, sys_info, the object, storage keys; raw storages follow
LEGACY_PICKLES = 5

# Records torch reads as raw bytes, relative to the archive's top folder.
_STORAGE_RECORD = re.compile(r"(?:[^/]+/)+\d+")
_FORMAT_RECORDS = frozenset({
    "byteorder", "version", ".format_version", ".storage_alignment",
    ".data/serialization_id", ".data/version",
})
_ARCHIVE_PICKLES = frozenset({"data.pkl", "constants.pkl", "attributes.pkl"})
_PICKLE_SUFFIXES = (".pkl", ".debug_pkl")


def handle_legacy(stream: BinaryIO, ctx: ScanContext, member: str | None, depth: int) -> str:
    analyse_pickle(stream, ctx, member, depth, max_pickles=LEGACY_PICKLES)
    return "torch_legacy"


@dataclass(frozen=True)
class TorchZipLayout:
    """The top folders of a zip that torch.load or torch.jit.load would read."""

    format: str  # "torch_zip" or "torchscript"
    roots: frozenset

    def split(self, name: str) -> tuple[str, str] | None:
        root, _, rest = name.partition("/")
        return (root, rest) if rest and root in self.roots else None

    def is_raw_record(self, name: str) -> bool:
        """Tensor storages and format records: read by torch as bytes, never as code."""
        parts = self.split(name)
        if parts is None:
            return False
        return parts[1] in _FORMAT_RECORDS or bool(_STORAGE_RECORD.fullmatch(parts[1]))

    def is_storage(self, name: str) -> bool:
        parts = self.split(name)
        return parts is not None and bool(_STORAGE_RECORD.fullmatch(parts[1]))

    def hint_for(self, name: str) -> str | None:
        """How torch itself reads the record, whatever its bytes look like."""
        parts = self.split(name)
        if parts is None:
            return None
        rest = parts[1]
        if rest.endswith(_PICKLE_SUFFIXES):
            return "pickle"
        if rest.startswith("code/") and rest.endswith(".py"):
            return "python"
        return None


def zip_layout(names: list[str]) -> TorchZipLayout | None:
    roots = set()
    scripted = False
    for name in names:
        root, _, rest = name.partition("/")
        if not root or not rest:
            continue
        if rest in _ARCHIVE_PICKLES or rest == "model.json":
            roots.add(root)
        if rest.startswith("code/") or rest in ("constants.pkl", "attributes.pkl", "model.json"):
            scripted = True
    if not roots:
        return None
    return TorchZipLayout("torchscript" if scripted else "torch_zip", frozenset(roots))


HANDLERS = {"torch_legacy": handle_legacy}
