"""The way back from workers to `regbot once`: log lines and progress of one run.

`once` makes a run id and passes it in every task's arguments. While a task of that run
is going, its worker process sends each regbot log record (after the secret-redaction
filter) and each copy progress event to a Redis stream named after the run
(`<prefix>:run:<id>`, regbot/limits.py Keys); `once` reads the stream, prints the lines through its own logging (so
they look as they do in an embedded run) and feeds the events to its progress display.
The stream holds only what the log lines hold (names, references, digests, counts), is
capped in length and expires a day after its last entry. Entries are sent in batches
(one pipeline every FLUSH_EVERY seconds from one thread per process, and at the end of
each task), so a copy of many small units does not pay a Redis round trip per event.
`once` can also ask the run's scripts to stop (`cancel`), which they do as at their
timeout.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis

from regbot.copy.progress import ProgressEvent, ProgressListener
from regbot.limits import Limits
from regbot.logs import ROOT, RedactFilter, ScriptFieldFilter, redact

log = logging.getLogger("regbot.workers")

STREAM_MAXLEN = 50_000  # entries kept per run (approximate trim)
STREAM_TTL = 24 * 3600  # seconds a run's stream outlives its last entry
FLUSH_EVERY = 0.05  # seconds an entry may wait to be sent with others
PENDING_MAX = 10_000  # entries kept while Redis does not answer (oldest dropped)
PROGRESS_EVENTS = ("started", "bytes_done", "skipped", "mounted", "finished", "failed",
                   "copy_started", "copy_ended")


class RunStream:
    """The stream of one run id, in the Redis of `limits` under its key builder."""

    def __init__(self, limits: Limits, run_id: str) -> None:
        if not run_id or not run_id.replace("-", "").isalnum():
            raise ValueError(f"bad run id {run_id!r}")
        self.store = limits.store
        self.outage = limits.outage  # the process's one word on its Redis being away
        self.run_id = run_id
        self.key = limits.keys.run_stream(run_id)
        self.cancel_key = limits.keys.run_cancel(run_id)
        self._pending: list[str] = []
        self._pending_lock = threading.Lock()
        self._send_lock = threading.Lock()

    # --- writing (workers) ---

    def publish(self, entry: dict[str, Any]) -> None:
        """Queue one entry; it is sent within FLUSH_EVERY seconds, or by `flush()`."""
        body = json.dumps(entry, separators=(",", ":"), default=str)
        with self._pending_lock:
            self._pending.append(body)
            if len(self._pending) > PENDING_MAX:
                del self._pending[: len(self._pending) - PENDING_MAX]
        _flusher().watch(self)

    def flush(self) -> None:
        """Send what is queued now, in order; a Redis error is logged once per stream
        (the relay must never break the script it reports on)."""
        with self._send_lock:
            with self._pending_lock:
                batch, self._pending = self._pending, []
            if not batch:
                return
            try:
                pipe = self.store.pipeline(transaction=False)
                for body in batch:
                    pipe.xadd(self.key, {"e": body}, maxlen=STREAM_MAXLEN, approximate=True)
                pipe.expire(self.key, STREAM_TTL)
                pipe.execute()
            except redis.RedisError as exc:
                with self._pending_lock:  # kept for the next try, oldest first
                    self._pending[:0] = batch[-PENDING_MAX:]
                self.outage.note(exc)
                log.debug("cannot relay log lines and progress of run %s to its Redis "
                          "stream: %s", self.run_id, exc)
                return
            self.outage.ok()

    @property
    def pending(self) -> bool:
        with self._pending_lock:
            return bool(self._pending)

    def cancelled(self) -> str:
        """Why `once` asked this run to stop, "" when it did not."""
        raw = self.store.get(self.cancel_key)
        return raw.decode() if isinstance(raw, bytes) else (raw or "")

    # --- reading (once) ---

    def read(self, after: str, block: float | None = None,
             count: int = 500) -> list[tuple[str, dict[str, Any]]]:
        """Entries after id `after` ("0" for all), waiting up to `block` seconds for one."""
        block_ms = None if block is None else max(1, int(block * 1000))
        answer = self.store.xread({self.key: after}, count=count, block=block_ms)
        out: list[tuple[str, dict[str, Any]]] = []
        for _key, entries in answer or ():
            for entry_id, data in entries:
                eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                raw = data.get(b"e", data.get("e"))
                try:
                    out.append((eid, json.loads(raw)))
                except (TypeError, ValueError):
                    log.debug("ignoring an unreadable entry %s of run %s", eid, self.run_id)
        return out

    def cancel(self, reason: str) -> None:
        self.store.set(self.cancel_key, reason, ex=STREAM_TTL)

    def delete(self) -> None:
        self.store.delete(self.key, self.cancel_key)


# --- the worker side ---------------------------------------------------------------------


class StreamLogHandler(logging.Handler):
    """Sends regbot log records to a RunStream (redacted); never raises into the logger."""

    def __init__(self, stream: RunStream, script: str, level: int) -> None:
        super().__init__(level)
        self.stream = stream
        self.script = script
        self.addFilter(ScriptFieldFilter())
        self.addFilter(RedactFilter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = getattr(record, "fields", None) or {}
            entry = {
                "t": "log",
                "script": self.script,
                "logger": record.name,
                "level": record.levelno,
                "time": record.created,
                "msg": redact(record.getMessage()),
                "fields": {str(k): _plain(v) for k, v in fields.items()},
            }
            if record.exc_text:
                entry["exc"] = redact(record.exc_text)
            self.stream.publish(entry)
        except Exception:  # the relay must never break the script it reports on
            self.handleError(record)


class StreamProgress(ProgressListener):
    """A copy ProgressListener that forwards every event to a RunStream."""

    def __init__(self, stream: RunStream, script: str) -> None:
        self.stream = stream
        self.script = script

    def _send(self, name: str, event: ProgressEvent) -> None:
        self.stream.publish({"t": "progress", "script": self.script, "event": name,
                             "data": event.to_dict()})

    def started(self, event: ProgressEvent) -> None:
        self._send("started", event)

    def bytes_done(self, event: ProgressEvent) -> None:
        self._send("bytes_done", event)

    def skipped(self, event: ProgressEvent) -> None:
        self._send("skipped", event)

    def mounted(self, event: ProgressEvent) -> None:
        self._send("mounted", event)

    def finished(self, event: ProgressEvent) -> None:
        self._send("finished", event)

    def failed(self, event: ProgressEvent) -> None:
        self._send("failed", event)

    def copy_started(self, event: ProgressEvent) -> None:
        self._send("copy_started", event)

    def copy_ended(self, event: ProgressEvent) -> None:
        self._send("copy_ended", event)


_level_guard = threading.Lock()


@contextmanager
def relay_logs(stream: RunStream, script: str, level: int | None) -> Iterator[None]:
    """While inside, this process's regbot log records at `level` and above (default: what
    the node logs) also go to `stream`."""
    root = logging.getLogger(ROOT)
    level = root.getEffectiveLevel() if level is None else level
    handler = StreamLogHandler(stream, script, level)
    with _level_guard:
        if root.getEffectiveLevel() > level:
            # Lower the logger only: this node's own handler keeps its threshold.
            for existing in root.handlers:
                if existing.level == logging.NOTSET:
                    existing.setLevel(root.getEffectiveLevel())
            root.setLevel(level)
        root.addHandler(handler)
    try:
        yield
    finally:
        with _level_guard:
            root.removeHandler(handler)
        stream.flush()  # everything of this task is in the stream before its result


@contextmanager
def watch_cancel(stream: RunStream, event: threading.Event,
                 interval: float = 1.0) -> Iterator[None]:
    """Set `event` when `once` cancels the run (checked every `interval` seconds)."""
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(interval):
            try:
                if stream.cancelled():
                    event.set()
                    return
            except redis.RedisError:
                continue  # a blip: look again next time

    thread = threading.Thread(target=watch, name="regbot-cancel-watch", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()


class _Flusher:
    """The one thread of a process that sends the streams' queued entries: it runs while
    some stream has entries waiting, every FLUSH_EVERY seconds."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._streams: weakref.WeakSet[RunStream] = weakref.WeakSet()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, stream: RunStream) -> None:
        with self._cond:
            self._streams.add(stream)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="regbot-stream-flush",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not any(s.pending for s in self._streams):
                    self._cond.wait()
                streams = list(self._streams)
            time.sleep(FLUSH_EVERY)  # let a burst of events gather into one batch
            for stream in streams:
                stream.flush()


_flusher_lock = threading.Lock()
_flusher_of_process: _Flusher | None = None


def _flusher() -> _Flusher:
    """This process's flusher (a forked pool process makes its own)."""
    global _flusher_of_process
    with _flusher_lock:
        if _flusher_of_process is None or _flusher_of_process.pid != os.getpid():
            _flusher_of_process = _Flusher()
        return _flusher_of_process


def _plain(value: Any) -> Any:
    """A field value as JSON carries it, secrets redacted (the filter only does that when
    secrets are known)."""
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    if isinstance(value, (list, tuple, dict)):
        return json.loads(redact(json.dumps(value, default=str)))
    return redact(str(value))


# --- the `once` side ---------------------------------------------------------------------


class RunFollower:
    """Replays a run's entries in this process: log lines through regbot's logging, progress
    events to `progress_for(script)` listeners."""

    def __init__(self, stream: RunStream,
                 progress_for: Callable[[str], ProgressListener | None] | None = None) -> None:
        self.stream = stream
        self.progress_for = progress_for
        self.last = "0"
        self._listeners: dict[str, ProgressListener | None] = {}

    def poll(self, block: float | None = None) -> int:
        """Replay what arrived (waiting up to `block` seconds); returns how many entries."""
        entries = self.stream.read(self.last, block=block)
        for entry_id, entry in entries:
            self.last = entry_id
            self._replay(entry)
        return len(entries)

    def drain(self) -> None:
        while self.poll(block=None):
            pass

    def _replay(self, entry: dict[str, Any]) -> None:
        kind = entry.get("t")
        if kind == "log":
            self._replay_log(entry)
        elif kind == "progress" and self.progress_for is not None:
            self._replay_progress(entry)

    def _replay_log(self, entry: dict[str, Any]) -> None:
        name = str(entry.get("logger") or ROOT)
        if name != ROOT and not name.startswith(ROOT + "."):
            name = f"{ROOT}.{name}"
        logger = logging.getLogger(name)
        level = int(entry.get("level") or logging.INFO)
        if not logger.isEnabledFor(level):
            return
        fields = entry.get("fields") or {}
        if not isinstance(fields, dict):
            fields = {}
        record = logger.makeRecord(name, level, "(worker)", 0, str(entry.get("msg", "")), None,
                                   None, extra={"fields": fields})
        created = entry.get("time")
        if isinstance(created, (int, float)):
            record.created = float(created)
            record.msecs = (record.created - int(record.created)) * 1000
        if entry.get("exc"):
            record.exc_text = str(entry["exc"])
        logger.handle(record)

    def _replay_progress(self, entry: dict[str, Any]) -> None:
        script = str(entry.get("script", ""))
        if script not in self._listeners:
            self._listeners[script] = self.progress_for(script) if self.progress_for else None
        listener = self._listeners[script]
        name = entry.get("event")
        data = entry.get("data")
        if listener is None or name not in PROGRESS_EVENTS or not isinstance(data, dict):
            return
        try:
            event = ProgressEvent(**{k: data[k] for k in ProgressEvent.__dataclass_fields__
                                     if k in data})
        except TypeError:
            return
        getattr(listener, name)(event)

