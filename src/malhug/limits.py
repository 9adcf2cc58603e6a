"""Every bound the scanner keeps, in one place. Hitting one is reported, never silent."""
from __future__ import annotations

import time
from dataclasses import dataclass, fields, replace

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


@dataclass(frozen=True)
class Limits:
    # pickle machine
    max_opcodes: int = 20_000_000
    max_stack: int = 5_000_000
    max_memo: int = 5_000_000
    max_line: int = 1 * MIB  # text opcodes (GLOBAL, INT, STRING ...) end with a newline
    kept_bytes: int = 1 * MIB  # byte/string arguments up to this size are kept whole
    blob_prefix: int = 64 * KIB  # of larger ones, only this prefix is kept (for sniffing)
    max_pickles_per_stream: int = 64
    # containers
    max_members: int = 100_000
    max_depth: int = 8  # nested containers / nested payloads
    max_member_size: int = 4 * GIB  # decompressed size of one member we are willing to read
    max_ratio: int = 1000  # decompressed / compressed, beyond which the shape itself is hostile
    ratio_floor: int = 256 * MIB  # below this much output a high ratio is ordinary (zero arrays)
    max_scan_bytes: int = 64 * GIB  # bytes read from all inputs of one scan
    # rendering evidence
    max_evidence_chars: int = 400
    max_render_depth: int = 24
    max_program_chars: int = 2 * MIB
    # reporting: files up to this size get a sha256 (one more full read); 0 hashes nothing
    hash_max_bytes: int = 512 * MIB
    # time
    seconds_per_file: float = 300.0
    hdf5_seconds: float = 60.0  # the HDF5 library reading one file's structure (in a child process)
    # isolation: the worker process that reads each file (malhug.isolation)
    worker_address_space: int = 2 * GIB  # RLIMIT_AS of a worker; 0 leaves it as inherited
    worker_open_files: int = 256  # RLIMIT_NOFILE
    worker_cpu_margin: float = 10.0  # CPU seconds a file may use beyond seconds_per_file (RLIMIT_CPU)
    worker_kill_grace: float = 10.0  # wall seconds beyond seconds_per_file before the worker is killed

    def with_overrides(self, **overrides) -> "Limits":
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"unknown limits: {', '.join(sorted(unknown))}")
        return replace(self, **overrides)


DEFAULT_LIMITS = Limits()


class LimitExceeded(Exception):
    """Raised when input goes past a configured bound; the message names the bound."""

    def __init__(self, limit: str, detail: str = "", hostile: bool = False):
        self.limit = limit
        self.hostile = hostile
        super().__init__(f"limit {limit} exceeded" + (f": {detail}" if detail else ""))


class Deadline:
    """Wall-clock budget for one file; checked from loops, cheap to call often."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.expires = None if seconds is None else time.monotonic() + seconds

    def check(self) -> None:
        if self.expires is not None and time.monotonic() > self.expires:
            raise LimitExceeded("seconds_per_file", f"{self.seconds:g}s")
