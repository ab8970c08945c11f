"""Live progress on a terminal: scripts, copies, blobs, bytes and the registries' rate
limits, updated as copies report. It stays one screen however many copies a run makes:
totals and counts, never a line per copy."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import IO, TYPE_CHECKING, Any

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
from regbot.types.ratelimit import RateLimit

if TYPE_CHECKING:
    from regbot.engine import Engine

RATE_LIMIT_EVERY = 1.0  # seconds between two looks at the registries' rate limits

RateLimits = Callable[[], Mapping[str, "RateLimit | None"]]


def registry_rate_limits(engine: Engine) -> RateLimits:
    """registry -> the last RateLimit seen there, for each registry of the config and
    docker.io: from the engine's limits, in memory for an embedded run, in the cluster's
    Redis for `once` on a cluster (where the workers record what the registries answer)."""
    names = sorted({"docker.io", *(host.name for host in engine.config.creds)})
    limits = engine.limits
    return lambda: {name: limits.last_ratelimit(name) for name in names}


class LiveDisplay:
    """A line for the run (scripts done / total), one for image copies (done / started,
    how many in flight), one for blobs, one for bytes, and one with the rate limit left
    at each registry that reports one (`rate_limits`: registry -> last RateLimit seen).

    With `total_scripts` None (one `regbot image copy`) the scripts line is left out."""

    def __init__(self, total_scripts: int | None, stream: IO[str],
                 rate_limits: RateLimits | None = None) -> None:
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
        self._copies = self._progress.add_task("copies", total=0)
        self._blobs = self._progress.add_task("blobs", total=0)
        self._in_flight = 0
        self._failed_copies = 0
        self._rate_limits = rate_limits
        self._rate_text = ""
        self._rate_checked = float("-inf")
        self._bytes_task = self._bytes.add_task("bytes", total=0)
        self._sent: dict[str, int] = {}
        self._live = None

    @property
    def console(self) -> Console:
        return self._console

    def __enter__(self) -> LiveDisplay:
        from rich.console import Group
        from rich.live import Live

        self._live = Live(Group(self._progress, self._bytes, _Line(self._status_line)),
                          console=self._console, refresh_per_second=8)
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        # the last frame stays on the screen: show the rate limits as the run left them
        self._rate_checked = float("-inf")
        if self._live is not None:
            self._live.__exit__(*exc)

    def script_done(self) -> None:
        if self._scripts is not None:
            self._progress.advance(self._scripts)

    def for_script(self, name: str) -> ProgressListener:
        return _ScriptListener(self)

    def _status_line(self) -> str:
        """Copies in flight, and the rate limits left (looked up once a second)."""
        now = time.monotonic()
        if self._rate_limits is not None and now - self._rate_checked >= RATE_LIMIT_EVERY:
            self._rate_checked = now
            try:
                limits = self._rate_limits()
            except Exception:  # a display must never break the run it shows
                limits = {}
            self._rate_text = "  ".join(
                f"{name} {rl.remain}/{rl.limit}" for name, rl in sorted(limits.items())
                if rl is not None and rl.set)
        with self._lock:
            parts = [f"in flight: {self._in_flight} copies"]
            if self._failed_copies:
                parts.append(f"failed: {self._failed_copies}")
        if self._rate_text:
            parts.append(f"rate limit left: {self._rate_text}")
        return "  ".join(parts)

    def _copy_started(self) -> None:
        with self._lock:
            self._in_flight += 1
            task = self._progress.tasks[self._copies]
            self._progress.update(self._copies, total=(task.total or 0) + 1)

    def _copy_ended(self, failed: bool) -> None:
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            self._failed_copies += failed
            self._progress.advance(self._copies)

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


class _Line:
    """A renderable line whose text is asked for at each refresh."""

    def __init__(self, text: Callable[[], str]) -> None:
        self._text = text

    def __rich__(self) -> Any:
        from rich.text import Text

        return Text(self._text(), style="progress.description")


class _ScriptListener(ProgressListener):
    def __init__(self, display: LiveDisplay) -> None:
        self._display = display

    def copy_started(self, event: ProgressEvent) -> None:
        self._display._copy_started()

    def copy_ended(self, event: ProgressEvent) -> None:
        self._display._copy_ended(bool(event.error))

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
