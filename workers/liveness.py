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


def read_health(path: Path, now: float | None = None,
                stale_after: float = STALE_AFTER) -> Health:
    """What the heartbeat file at `path` says (`now` is wall-clock time)."""
    try:
        state = path.read_text().strip()
        written = path.stat().st_mtime
    except FileNotFoundError:
        return Health.STARTING
    if state == STOPPING:
        return Health.STOPPING
    if (time.time() if now is None else now) - written > stale_after:
        return Health.HUNG
    return Health.SERVING


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
