"""How transfer tasks tell the script waiting for them what became of their units.

Polling the result backend costs a round trip per unit per poll, and a script waiting
20-250 ms between polls adds that much to every unit. Instead each waiting process has one
Redis list (`Keys.unit_events`), named in the task message by an opaque id; the transfer
task pushes an event when it starts, as bytes go, and when it ends; one thread of the
waiting process blocks on the list and hands each event to the copy it belongs to.

Events are plain JSON: `{"copy": id, "task": id, "state": "STARTED"|"PROGRESS"|"SUCCESS"|
"FAILURE", ...}` with the UnitResult (`result`) or the error's type and one-line message
(`error_type`, `message`), never a secret. The list expires an hour after its last event,
so a process that died leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import uuid
from typing import Any

import redis

from regbot.limits import Limits

log = logging.getLogger("regbot.workers")

EVENTS_TTL = 3600  # seconds an events list outlives its last event
_BLOCK = 2  # seconds one blocking read waits (below the Redis client's socket timeout)


def publish(limits: Limits, listener: str, event: dict[str, Any]) -> None:
    """Push one event to the list of `listener`; a failure is logged, never raised (the
    waiting side falls back to the result backend)."""
    if not listener:
        return
    key = limits.keys.unit_events(listener)
    try:
        pipe = limits.store.pipeline(transaction=False)
        pipe.rpush(key, json.dumps(event, separators=(",", ":")))
        pipe.expire(key, EVENTS_TTL)
        pipe.execute()
    except redis.RedisError as exc:
        log.debug("cannot notify the waiting script: %s", exc)


class UnitEvents:
    """The waiting side: this process's events list and the thread that reads it."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._guard = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self.id = uuid.uuid4().hex
        self._pid = os.getpid()
        self._queues: dict[str, queue.Queue] = {}
        self._thread: threading.Thread | None = None

    def subscribe(self, copy_id: str, inbox: queue.Queue) -> None:
        """Put the events of `copy_id` on `inbox` (until `unsubscribe`)."""
        with self._guard:
            if self._pid != os.getpid():
                self._reset()  # forked: the parent's reader stays with the parent
            self._queues[copy_id] = inbox
            if self._thread is None:
                self._thread = threading.Thread(target=self._read, name="regbot-unit-events",
                                                daemon=True)
                self._thread.start()

    def unsubscribe(self, copy_id: str) -> None:
        with self._guard:
            self._queues.pop(copy_id, None)

    def _read(self) -> None:
        key = self.limits.keys.unit_events(self.id)
        while True:
            with self._guard:
                if not self._queues:
                    self._thread = None  # nobody waits: a later subscribe starts a new one
                    return
            try:
                item = self.limits.store.blpop([key], timeout=_BLOCK)
            except redis.RedisError as exc:
                # the copies fall back to polling meanwhile; the outage is the process's
                # one line (regbot/limits.py StoreOutage)
                self.limits.outage.note(exc)
                threading.Event().wait(1.0)
                continue
            self.limits.outage.ok()
            if item is None:
                continue
            try:
                event = json.loads(item[1])
            except (TypeError, ValueError):
                continue
            with self._guard:
                target = self._queues.get(str(event.get("copy", "")))
            if target is not None:
                target.put(event)
