"""Helpers for the beat tests: a fake clock, and reading what a beat sent to a Redis broker.

Kombu's Redis transport keeps a queue as a Redis list of JSON envelopes
(`{"body": ..., "headers": {"task": ..., "argsrepr": ...}, "properties": ...}`), so the
tests read sent runs straight from the list without running a worker.
"""

from __future__ import annotations

import ast
import json
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis


class FakeClock:
    """An aware UTC clock that moves only when told (starts at the real now, whole second,
    so message expiry times computed from it lie in the future)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC).replace(microsecond=0)
        self._guard = threading.Lock()

    def now(self) -> datetime:
        with self._guard:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._guard:
            self._now += timedelta(seconds=seconds)

    def set(self, when: datetime) -> None:
        with self._guard:
            self._now = when


@dataclass(frozen=True)
class SentRun:
    task: str
    args: tuple
    scheduled: str  # the regbot_scheduled header: ISO due time
    task_id: str
    expires: str | None


def sent_runs(client: redis.Redis, queue: str) -> list[SentRun]:
    """The messages waiting in `queue`, oldest first (kombu LPUSHes, workers BRPOP)."""
    runs = []
    for raw in reversed(client.lrange(queue, 0, -1)):
        envelope = json.loads(raw)
        headers = envelope["headers"]
        runs.append(SentRun(
            task=headers["task"],
            args=ast.literal_eval(headers["argsrepr"]),
            scheduled=headers.get("regbot_scheduled", ""),
            task_id=headers["id"],
            expires=headers.get("expires"),
        ))
    return runs


def tick_until(scheduler, clock: FakeClock, until: datetime, max_ticks: int = 100_000) -> int:
    """Drive `scheduler.tick()` with the fake clock until it reaches `until`, sleeping (by
    advancing the clock) as long as each tick asks. Returns the number of ticks."""
    ticks = 0
    while clock.now() < until:
        delay = scheduler.tick()
        ticks += 1
        if ticks > max_ticks:
            raise AssertionError("the scheduler kept ticking without moving on")
        # Celery's tick returns 0 both after a send and while spinning out the last 10 ms
        # before a due time; a real clock moves meanwhile, so this one does too.
        step = delay if delay and delay > 0 else 0.001
        clock.advance(min(step, (until - clock.now()).total_seconds() + 0.001))
    return ticks


class Captured(logging.Handler):
    """Collects records of one logger (regbot loggers do not propagate once configured)."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._logger = logging.getLogger(name)

    def __enter__(self) -> Captured:
        self._old_level = self._logger.level
        self._logger.addHandler(self)
        if self._logger.getEffectiveLevel() > logging.DEBUG:
            self._logger.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._old_level)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, level: int = logging.DEBUG) -> list[tuple[str, dict]]:
        return [(r.getMessage(), dict(getattr(r, "fields", {}) or {}))
                for r in self.records if r.levelno >= level]
