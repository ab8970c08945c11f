"""Cancellation of a copy: an event and/or a deadline, checked between units and chunks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from regbot.copy.errors import CopyCancelled


class CancelToken:
    """Set by `cancel()`, by passing `deadline` (a time.monotonic() value), or through
    one of its parents. A child token is cancelled with its parents but not the other way
    round, so an executor can stop its own units on a failure without touching the
    caller's token."""

    def __init__(
        self,
        deadline: float | None = None,
        *,
        event: threading.Event | None = None,
        parents: Iterable[CancelToken | None] = (),
    ) -> None:
        self.deadline = deadline
        self.event = event or threading.Event()
        self.parents = tuple(p for p in parents if p is not None)
        self._reason = ""

    @classmethod
    def with_timeout(cls, seconds: float) -> CancelToken:
        return cls(deadline=time.monotonic() + seconds)

    def child(self) -> CancelToken:
        return CancelToken(parents=(self,))

    def cancel(self, reason: str = "cancelled") -> None:
        if not self.event.is_set():
            self._reason = reason
            self.event.set()

    @property
    def reason(self) -> str:
        if self.event.is_set():
            return self._reason or "cancelled"
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return "deadline passed"
        for parent in self.parents:
            reason = parent.reason
            if reason:
                return reason
        return ""

    @property
    def cancelled(self) -> bool:
        return bool(self.reason)

    def check(self, what: str) -> None:
        """Raise CopyCancelled naming `what` when cancelled."""
        reason = self.reason
        if reason:
            raise CopyCancelled(f"{what}: {reason}")

    def remaining(self) -> float | None:
        """Seconds left before the nearest deadline (self or parents), None if none."""
        lefts = [p.remaining() for p in self.parents]
        if self.deadline is not None:
            lefts.append(self.deadline - time.monotonic())
        known = [t for t in lefts if t is not None]
        return min(known) if known else None

    def sleep(self, seconds: float, what: str) -> None:
        """Wait `seconds`, raising CopyCancelled naming `what` as soon as cancelled."""
        end = time.monotonic() + seconds
        while True:
            self.check(what)
            left = end - time.monotonic()
            if left <= 0:
                return
            # Own event wakes at once; parents and remote signals are looked at often.
            self.event.wait(min(0.2, left))
