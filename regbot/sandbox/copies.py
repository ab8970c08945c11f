"""The copies a script run has in flight: `image.copy` returns before its copy ends.

A plain Lua loop of `image.copy` calls would wait for each copy in turn; here a copy is
started on a thread of the run and the script goes on, so copies overlap (on a cluster
their large blobs spread over the nodes). What a script can observe stays as if each
copy had ended before `image.copy` returned:

- A call that reads a repository (`tag.ls`, `manifest.*`, `image.config`, `blob.*`, ...)
  first waits for the copies into it; a call that changes one also waits for the copies
  reading from it; `repo.ls` waits for the copies into that registry; `image.copy` waits
  for the copies into its source, from its target, and into the same target reference.
  An OCI layout is one unit: every copy touching it waits for the others.
- The first copy that fails fails the script at its next registry call (or its next
  `image.copy`, or its end), with the line of the `image.copy` that started it and the
  copy's own error; nothing is started after it and copies not yet started are dropped.
- At most `size` copies are in flight (`copyWindow`; 1 is one copy at a time, as the
  Go regbot does). The run's heavy slot (defaults.parallel) is held while any is.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from regbot.errors import RegbotError
from regbot.types.ref import Reference


class CopyFailed(RegbotError):
    """A copy started by `image.copy` at `line` failed: raised at the script's next sync
    point, naming that line."""

    def __init__(self, line: int | None, error: BaseException) -> None:
        super().__init__(" ".join(str(error).split()))
        self.line = line
        self.error = error


@dataclass(eq=False)
class _Copy:
    src: Reference
    tgt: Reference
    line: int | None
    done: threading.Event = field(default_factory=threading.Event)

    def touches_layout(self, ref: Reference) -> bool:
        return ref.is_ocidir and ref.path in (self.src.path if self.src.is_ocidir else None,
                                              self.tgt.path if self.tgt.is_ocidir else None)


class CopyWindow:
    """Copies in flight for one script run; every method is called from the script's
    thread except the copies themselves, which run on the window's threads.

    `wait` is how the script thread waits (it must notice the run's deadline and
    cancellation); `hold_slot`/`drop_slot` take and give back the run's heavy slot."""

    def __init__(self, size: int, *, wait: Callable[[threading.Event], None],
                 hold_slot: Callable[[], None], drop_slot: Callable[[], None]) -> None:
        self.size = max(1, int(size))
        self._wait = wait
        self._hold_slot = hold_slot
        self._drop_slot = drop_slot
        self._guard = threading.Lock()
        self._in_flight: list[_Copy] = []
        self._changed = threading.Event()  # set whenever a copy ends
        self._failure: CopyFailed | None = None
        self._threads: ThreadPoolExecutor | None = None
        self._holding = False

    # --- the script's side ---

    def start(self, src: Reference, tgt: Reference, line: int | None,
              run: Callable[[], Any]) -> None:
        """Start `run` (the copy of src to tgt) once it may: after the copies it must not
        overlap and while fewer than `size` are in flight."""
        self.check()
        self._settle(lambda c: c.tgt.name == src.name                   # reads its source
                     or c.src.name == tgt.name                          # writes what is read
                     or c.tgt.common_name() == tgt.common_name()        # the same target
                     or (src.is_ocidir and c.touches_layout(src))
                     or (tgt.is_ocidir and c.touches_layout(tgt)))
        while True:
            with self._guard:
                if len(self._in_flight) < self.size:
                    break
                self._changed.clear()
            self._wait(self._changed)
            self.check()
        if not self._holding:
            self._hold_slot()
            self._holding = True
        copy = _Copy(src, tgt, line)
        with self._guard:
            self._in_flight.append(copy)
            if self._threads is None:
                self._threads = ThreadPoolExecutor(max_workers=self.size,
                                                   thread_name_prefix="regbot-copies")
        # The script's context (the script name its log lines carry) goes along.
        self._threads.submit(contextvars.copy_context().run, self._run, copy, run)

    def before_read(self, ref: Reference) -> None:
        """Wait for the copies into ref's repository; raise a copy's failure."""
        self.check()
        self._settle(lambda c: c.tgt.name == ref.name or c.touches_layout(ref))

    def before_write(self, ref: Reference) -> None:
        """Wait for the copies into or out of ref's repository; raise a copy's failure."""
        self.check()
        self._settle(lambda c: ref.name in (c.tgt.name, c.src.name) or c.touches_layout(ref))

    def before_registry_read(self, ref: Reference) -> None:
        """Wait for the copies into any repository of ref's registry (repo.ls)."""
        self.check()
        self._settle(lambda c: c.tgt.host_key == ref.host_key and c.tgt.scheme == ref.scheme)

    def drain(self) -> None:
        """Wait for every copy (the end of the script); raise the first failure."""
        self._settle(lambda c: True)
        self.check()

    def busy(self) -> bool:
        """Whether any copy is still in flight."""
        with self._guard:
            return bool(self._in_flight)

    def check(self) -> None:
        """Raise the first copy failure, if any."""
        if self._failure is not None:
            raise self._failure

    def close(self) -> None:
        """Stop waiting: the copies stop with the run's cancel token (the caller cancels
        it first); wait for the threads and give the heavy slot back."""
        with self._guard:
            threads, self._threads = self._threads, None
        if threads is not None:
            threads.shutdown(wait=True, cancel_futures=True)
        self._release_slot()

    # --- inside ---

    def _settle(self, conflicts: Callable[[_Copy], bool]) -> None:
        while True:
            with self._guard:
                waiting = [c for c in self._in_flight if conflicts(c)]
                idle = not self._in_flight
            if not waiting:
                if idle:
                    self._release_slot()
                return
            for copy in waiting:
                self._wait(copy.done)

    def _release_slot(self) -> None:
        if self._holding:
            self._holding = False
            self._drop_slot()

    def _run(self, copy: _Copy, run: Callable[[], Any]) -> None:
        try:
            if self._failure is None:  # a copy failed meanwhile: start nothing more
                run()
        except BaseException as exc:
            with self._guard:
                if self._failure is None:
                    self._failure = CopyFailed(copy.line, exc)
        finally:
            with self._guard:
                self._in_flight.remove(copy)
            copy.done.set()
            self._changed.set()
