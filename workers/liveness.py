"""How a node's launcher knows its Celery processes still serve: a heartbeat file each.

The launcher names a file per Celery process (`REGBOT_HEARTBEAT_FILE`, in a private
directory it removes when the node exits). The worker's main process (a bootstep in
workers/app.py) rewrites it every BEAT_EVERY seconds with its state: `serving`, or
`stopping` from the moment a shutdown begins, whoever asked for it (a signal, Celery's own
"Unrecoverable error", a consumer that gave up). The launcher reads it: a process that
says `stopping` when the launcher did not ask it to stop, or whose file has not been
rewritten for STALE_AFTER seconds (its main process hangs), no longer serves, and is
ended and started again (workers/launcher.py).

A worker retrying its broker or Redis still says `serving`: it reconnects on its own.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from enum import Enum
from pathlib import Path

BEAT_EVERY = 2.0  # seconds between two writes of the heartbeat file
STALE_AFTER = 60.0  # seconds without a write after which the process counts as hung

SERVING = "serving"
STOPPING = "stopping"


class Health(Enum):
    STARTING = "starting"  # no heartbeat yet: the process is still importing
    SERVING = "serving"
    STOPPING = "stopping"  # began a shutdown
    HUNG = "hung"  # its heartbeat stopped


def write_state(path: Path, state: str) -> None:
    """Replace the file in one step, so a reader never sees half a state."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    tmp.write_text(state)
    os.replace(tmp, path)


class HeartbeatWatch:
    """The launcher's side, for one process's file. Staleness is judged by the launcher's
    own monotonic clock (how long the file has not changed), so a jump of the wall clock
    never reads as a hang."""

    def __init__(self, path: Path, stale_after: float | None = None) -> None:
        self.path = path
        self.stale_after = STALE_AFTER if stale_after is None else stale_after
        self._written: int | None = None  # the file's last mtime seen (ns)
        self._seen_at = 0.0  # monotonic time it was first seen

    def health(self, now: float) -> Health:
        """What the file says at monotonic time `now`."""
        try:
            state = self.path.read_text().strip()
            written = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return Health.STARTING
        if state == STOPPING:
            return Health.STOPPING
        if written != self._written:
            self._written, self._seen_at = written, now
        return Health.HUNG if now - self._seen_at > self.stale_after else Health.SERVING


class Heartbeat:
    """The worker side: a daemon thread rewriting the file until the process ends."""

    def __init__(self, path: Path, every: float = BEAT_EVERY) -> None:
        self.path = path
        self.every = every
        self.state = SERVING
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._beat()
        self._thread = threading.Thread(target=self._run, name="regbot-heartbeat",
                                        daemon=True)
        self._thread.start()

    def stopping(self) -> None:
        """A shutdown began: say so now (the thread keeps the file fresh meanwhile).
        No lock: this may run in a signal handler; a beat of the thread that read the
        old state just before is overwritten by its next beat."""
        self.state = STOPPING
        self._beat()

    def _run(self) -> None:
        while True:
            time.sleep(self.every)
            self._beat()

    def _beat(self) -> None:
        # The directory goes with the node: a write after it is gone changes nothing.
        with contextlib.suppress(OSError):
            write_state(self.path, self.state)
