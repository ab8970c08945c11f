"""Live progress on a terminal: scripts, blobs and bytes, updated as copy units report."""

from __future__ import annotations

import threading
from typing import IO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TransferSpeedColumn,
)

from regbot.copy.progress import ProgressEvent, ProgressListener


class LiveDisplay:
    """One line for the run (scripts done / total), one for blobs, one for bytes.

    With `total_scripts` None (one `regbot image copy`) the scripts line is left out."""

    def __init__(self, total_scripts: int | None, stream: IO[str]) -> None:
        self._console = Console(file=stream)
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:.0f}/{task.total:.0f}", style="progress.percentage"),
            console=self._console,
            transient=False,
        )
        self._bytes = Progress(
            SpinnerColumn(),
            TextColumn("bytes  "),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=self._console,
        )
        self._lock = threading.Lock()
        self._scripts = (None if total_scripts is None
                         else self._progress.add_task("scripts", total=total_scripts))
        self._blobs = self._progress.add_task("blobs", total=0)
        self._bytes_task = self._bytes.add_task("bytes", total=0)
        self._sent: dict[str, int] = {}
        self._live = None

    @property
    def console(self) -> Console:
        return self._console

    def __enter__(self) -> LiveDisplay:
        from rich.console import Group
        from rich.live import Live

        self._live = Live(Group(self._progress, self._bytes), console=self._console,
                          refresh_per_second=8)
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)

    def script_done(self) -> None:
        if self._scripts is not None:
            self._progress.advance(self._scripts)

    def for_script(self, name: str) -> ProgressListener:
        return _ScriptListener(self)

    # --- called from copy worker threads ---

    def _started(self, event: ProgressEvent) -> None:
        if event.kind != "blob":
            return
        with self._lock:
            task = self._progress.tasks[self._blobs]
            self._progress.update(self._blobs, total=(task.total or 0) + 1)
            btask = self._bytes.tasks[self._bytes_task]
            self._bytes.update(self._bytes_task, total=(btask.total or 0) + max(event.size, 0))
            self._sent[event.unit_id] = 0

    def _bytes_done(self, event: ProgressEvent) -> None:
        with self._lock:
            before = self._sent.get(event.unit_id, 0)
            self._sent[event.unit_id] = event.bytes_done
            self._bytes.advance(self._bytes_task, event.bytes_done - before)

    def _ended(self, event: ProgressEvent, transferred: bool) -> None:
        if event.kind != "blob":
            return
        with self._lock:
            before = self._sent.pop(event.unit_id, 0)
            if transferred:
                self._bytes.advance(self._bytes_task, max(event.size, 0) - before)
            else:
                # nothing moved: take its size back out of the byte total
                btask = self._bytes.tasks[self._bytes_task]
                self._bytes.update(self._bytes_task, total=max((btask.total or 0) - max(event.size, 0), 0),
                                   completed=max(btask.completed - before, 0))
            self._progress.advance(self._blobs)


class _ScriptListener(ProgressListener):
    def __init__(self, display: LiveDisplay) -> None:
        self._display = display

    def started(self, event: ProgressEvent) -> None:
        self._display._started(event)

    def bytes_done(self, event: ProgressEvent) -> None:
        self._display._bytes_done(event)

    def skipped(self, event: ProgressEvent) -> None:
        self._display._ended(event, transferred=False)

    def mounted(self, event: ProgressEvent) -> None:
        self._display._ended(event, transferred=False)

    def finished(self, event: ProgressEvent) -> None:
        self._display._ended(event, transferred=True)

    def failed(self, event: ProgressEvent) -> None:
        self._display._ended(event, transferred=False)
