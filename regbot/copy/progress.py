"""Progress of a copy, unit by unit, and the listener that turns it into a CopyResult.

Each unit reports `started`, then any number of (throttled) `bytes_done`, then exactly one
of `skipped`, `mounted`, `finished` or `failed`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from regbot.copy.units import (
    STATUS_COPIED,
    STATUS_MOUNTED,
    STATUS_SKIPPED,
    Unit,
    UnitResult,
)


@dataclass
class ProgressEvent:
    """`kind` is the unit kind ("blob", "manifest", "tag"); `bytes_done` counts blob bytes
    sent so far (for `finished`, all of them); `error` is set on `failed`."""

    kind: str
    unit_id: str
    src: str
    tgt: str
    digest: str
    size: int
    bytes_done: int = 0
    error: str = ""

    @classmethod
    def for_copy(cls, copy_id: str, src: str, tgt: str, error: str = "") -> ProgressEvent:
        return cls("image", copy_id, src, tgt, "", 0, 0, error)

    @classmethod
    def for_unit(cls, unit: Unit, bytes_done: int = 0, error: str = "") -> ProgressEvent:
        return cls(unit.kind, unit.id, unit.src, unit.tgt, unit.digest, unit.size,
                   bytes_done, error)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class ProgressListener:
    """No-op base: override what you need. Called from worker threads, so overrides must
    be thread safe and quick."""

    def started(self, event: ProgressEvent) -> None:
        pass

    def bytes_done(self, event: ProgressEvent) -> None:
        pass

    def skipped(self, event: ProgressEvent) -> None:
        pass

    def mounted(self, event: ProgressEvent) -> None:
        pass

    def finished(self, event: ProgressEvent) -> None:
        pass

    def failed(self, event: ProgressEvent) -> None:
        pass

    # A whole image copy (kind "image", no digest or size), around its units' events.

    def copy_started(self, event: ProgressEvent) -> None:
        pass

    def copy_ended(self, event: ProgressEvent) -> None:
        """The copy is over: `error` says why when it failed."""


class CompositeListener(ProgressListener):
    """Forwards every event to each listener in turn."""

    def __init__(self, listeners: Iterable[ProgressListener | None]) -> None:
        self.listeners = [lst for lst in listeners if lst is not None]

    def started(self, event: ProgressEvent) -> None:
        for lst in self.listeners:
            lst.started(event)

    def bytes_done(self, event: ProgressEvent) -> None:
        for lst in self.listeners:
            lst.bytes_done(event)

    def skipped(self, event: ProgressEvent) -> None:
        for lst in self.listeners:
            lst.skipped(event)

    def mounted(self, event: ProgressEvent) -> None:
        for lst in self.listeners:
            lst.mounted(event)

    def finished(self, event: ProgressEvent) -> None:
        for lst in self.listeners:
            lst.finished(event)

    def failed(self, event: ProgressEvent) -> None:
        for lst in self.listeners:
            lst.failed(event)

    def copy_started(self, event: ProgressEvent) -> None:
        for lst in self.listeners:
            lst.copy_started(event)

    def copy_ended(self, event: ProgressEvent) -> None:
        for lst in self.listeners:
            lst.copy_ended(event)


@dataclass
class CopyResult:
    """What a copy did. `skipped` is True when the target was already up to date
    (nothing pushed, transferred or mounted)."""

    skipped: bool = False
    manifests: int = 0
    blobs_copied: int = 0
    blobs_skipped: int = 0
    blobs_mounted: int = 0
    bytes_copied: int = 0
    tags: int = 0  # tags written after their manifest was pushed by digest

    def to_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped, "manifests": self.manifests,
                "blobs_copied": self.blobs_copied, "blobs_skipped": self.blobs_skipped,
                "blobs_mounted": self.blobs_mounted, "bytes_copied": self.bytes_copied,
                "tags": self.tags}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CopyResult:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


class AggregatingListener(ProgressListener):
    """Counts terminal events into a CopyResult (thread safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._result = CopyResult()

    def skipped(self, event: ProgressEvent) -> None:
        if event.kind == "blob":
            with self._lock:
                self._result.blobs_skipped += 1

    def mounted(self, event: ProgressEvent) -> None:
        with self._lock:
            self._result.blobs_mounted += 1

    def finished(self, event: ProgressEvent) -> None:
        with self._lock:
            if event.kind == "blob":
                self._result.blobs_copied += 1
                self._result.bytes_copied += event.bytes_done
            elif event.kind == "manifest":
                self._result.manifests += 1
            elif event.kind == "tag":
                self._result.tags += 1

    def result(self) -> CopyResult:
        with self._lock:
            out = CopyResult(**self._result.to_dict())
        out.skipped = not (out.manifests or out.tags or out.blobs_copied or out.blobs_mounted)
        return out


def emit_result(listener: ProgressListener, unit: Unit, result: UnitResult) -> None:
    """Report a unit's outcome that happened elsewhere (e.g. on a Celery worker) as its
    terminal event, so the same listeners count remote and local runs alike."""
    event = ProgressEvent.for_unit(unit, bytes_done=result.bytes)
    if result.status == STATUS_SKIPPED:
        listener.skipped(event)
    elif result.status == STATUS_MOUNTED:
        listener.mounted(event)
    elif result.status == STATUS_COPIED or result.kind != "blob":
        listener.finished(event)
