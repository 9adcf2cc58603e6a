"""A progress bar on standard error while a scan runs: files done (of how many, when known),
bytes read, and the file being read."""
from __future__ import annotations

from .text_report import safe

MAX_NAME = 60


class ScanProgress:
    """The scanner's progress callback: told (display path, size) before each file."""

    def __init__(self, stream, total: int | None = None):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console = Console(file=stream, highlight=False, markup=False, emoji=False)
        counts = "{task.completed}/{task.total} files" if total is not None else "{task.completed} files"
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("scanning"),
            BarColumn(),
            TextColumn(counts),
            TextColumn("{task.fields[bytes]}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[current]}", markup=False),
            console=self.console, transient=True, redirect_stdout=False, redirect_stderr=False,
        )
        self.task = self.progress.add_task("scan", total=total, bytes="0 bytes", current="")
        self.done_bytes = 0
        self.pending = 0
        self.started = False

    def __call__(self, display: str, size: int | None) -> None:
        from rich.filesize import decimal

        if not self.started:
            self.progress.start()
            self.started = True
        else:
            self.progress.advance(self.task)
        self.done_bytes += self.pending
        self.pending = size or 0
        self.progress.update(self.task, bytes=decimal(self.done_bytes), current=_short(safe(display)))

    def close(self) -> None:
        if not self.started:
            return
        from rich.filesize import decimal

        self.done_bytes += self.pending
        self.pending = 0
        self.progress.advance(self.task)
        self.progress.update(self.task, bytes=decimal(self.done_bytes), current="")
        self.progress.stop()


def _short(name: str) -> str:
    return name if len(name) <= MAX_NAME else "…" + name[-(MAX_NAME - 1):]
