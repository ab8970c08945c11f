"""The work behind the two tasks, as plain functions; workers/tasks.py only unpacks
Celery's request and calls these.

- `script_job`: one run of one script from the worker's own config, under the script's
  cluster-wide lock (regbot/runner.py), its image copies fanned out by a CeleryExecutor,
  its log lines and progress relayed to `once` when a run id came with it.
- `transfer_job`: one copy unit (regbot.copy.execute_unit, which retries transient
  failures as it does embedded) with the worker's own client, or a bundle of a small
  copy's units on the worker's own threads; stopped when its copy is cancelled.

Both run under a per-task guard: deliveries of one task id never run at the same time
(a script sends a transfer again under the same id when its lease lapsed, workers/executor.py;
a broker may deliver a message twice), and once one succeeded, later deliveries do nothing
(a transfer's returns the result the first recorded). A dead holder's guard expires with
its lease, so the next delivery does the work.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import redis
from celery import Celery

from regbot.copy.cancel import CancelToken
from regbot.copy.execute import execute_unit
from regbot.copy.executors import ExecContext
from regbot.copy.progress import ProgressEvent, ProgressListener
from regbot.copy.units import BundleUnit, Unit, UnitResult
from regbot.engine import Engine
from regbot.errors import ConfigError, RegbotError
from regbot.limits import Limits
from regbot.logs import get_logger, log_fields, redact
from regbot.runner import (
    SCRIPT_LOCK_LEASE,
    STATUS_FAILED,
    RunOptions,
    ScriptResult,
    run_script_locked,
)
from workers import context
from workers.executor import STATE_PROGRESS, UnitFailed, task_guard_name
from workers.logstream import RunStream, StreamProgress, relay_logs, watch_cancel
from workers.notify import publish
from workers.settings import DEFAULT_LEASE

log = get_logger("regbot.workers")

TASK_LEASE = DEFAULT_LEASE  # seconds a dead delivery keeps its task guard
DONE_TTL = 6 * 3600  # seconds a finished task id is remembered (redeliveries come sooner)
CANCEL_CHECK_EVERY = 0.5  # seconds between two looks at a copy's stop signal


__all__ = ["Duplicate", "task_guard", "task_guard_name"]


class Duplicate(Exception):
    """Another delivery of this task id runs, or already succeeded: do nothing. `done` is
    what the successful one recorded (None while another one runs)."""

    def __init__(self, task_id: str, done: bytes | None = None) -> None:
        super().__init__(task_id)
        self.done = done


class Done:
    """What the body of a task_guard records when it succeeds (`value`, plain text)."""

    value: str = "1"


@contextmanager
def task_guard(limits: Limits, task_id: str, *, wait: bool,
               lease: float = TASK_LEASE, timeout: float | None = None) -> Iterator[Done]:
    """Run the body for one delivery of `task_id` at a time, and only until one succeeds.

    `wait`: block while another delivery holds the guard; else raise Duplicate at once."""
    lock = limits.lock(task_guard_name(task_id), ttl=lease)
    if not lock.acquire(blocking=wait, timeout=timeout):
        raise Duplicate(task_id)
    lock.keep_alive()
    done_key = limits.keys.task_done(task_id)
    try:
        recorded = limits.store.get(done_key)
        if recorded is not None:
            raise Duplicate(task_id, recorded)
        done = Done()
        yield done
        try:
            limits.store.set(done_key, done.value, ex=DONE_TTL)
        except redis.RedisError as exc:
            # The work is done; its result still reaches the waiting side by the result
            # backend, and a later delivery would find the work on the target.
            log.warning("cannot record task %s as done: %s", task_id, exc)
    finally:
        lock.release()


# --- scripts -----------------------------------------------------------------------------


def script_job(name: str, *, app: Celery, task_id: str, dry_run: bool = False,
               run_id: str = "", log_level: int | None = None,
               progress: bool = True) -> dict[str, Any]:
    """Run script `name` of this worker's config once; the ScriptResult as a dict (its
    error redacted). With a `run_id`, its log lines go to that run's stream, and its copy
    progress too when `progress` (a `once` with a live display)."""
    ctx = context.current()
    try:
        config = ctx.config()
    except ConfigError as exc:
        return _failed(name, f"worker config: {exc}")
    try:
        script = config.script(name)
    except KeyError:
        return _failed(name, f"script {name!r} is not in the worker's config {config.source}")
    engine = ctx.engine(app)
    stream = RunStream(engine.limits, run_id) if run_id else None
    cancel = threading.Event()
    options = RunOptions(dry_run=dry_run, run_id=run_id, log_level=log_level)
    with task_guard(engine.limits, task_id, wait=False, lease=ctx.lease or TASK_LEASE), \
            ExitStack() as stack:
        if stream is not None:
            stack.enter_context(relay_logs(stream, name, log_level))
            stack.enter_context(watch_cancel(stream, cancel))
        result = run_script_locked(
            engine, script, options,
            progress=StreamProgress(stream, name) if stream is not None and progress else None,
            cancel=cancel, lease=ctx.lease or SCRIPT_LOCK_LEASE)
    result.error = redact(result.error)
    return result.to_dict()


def _failed(name: str, error: str) -> dict[str, Any]:
    log_fields(log, logging.ERROR, "Script failed", script=name, error=redact(error))
    return ScriptResult(name=name, status=STATUS_FAILED, error=redact(error)).to_dict()


# --- transfers ---------------------------------------------------------------------------


class RemoteCancelToken(CancelToken):
    """A CancelToken that also fires when the copy's stop signal appears in Redis. A
    thread of its own looks every CANCEL_CHECK_EVERY seconds from `start()` to `close()`,
    so a slow or cut-off Redis never holds the copy up."""

    def __init__(self, store: redis.Redis, key: str, deadline: float | None = None) -> None:
        super().__init__(deadline)
        self._store = store
        self._key = key
        self._done = threading.Event()

    def start(self) -> RemoteCancelToken:
        """Look once now (a unit of a stopped copy does not start), then keep looking."""
        if self._key:
            self._look()
            threading.Thread(target=self._watch, name="regbot-copy-cancel",
                             daemon=True).start()
        return self

    def close(self) -> None:
        self._done.set()

    def _watch(self) -> None:
        while not self._done.wait(CANCEL_CHECK_EVERY) and not self.event.is_set():
            self._look()

    def _look(self) -> None:
        try:
            value = self._store.get(self._key)
        except redis.RedisError:
            return  # a blip, or an outage: the copy goes on, and we look again
        if value:
            text = value.decode(errors="replace") if isinstance(value, bytes) else value
            self.cancel(f"copy stopped: {text}")


class _Reporter(ProgressListener):
    """Tells the waiting copy about a unit's bytes (workers/notify.py), and keeps the
    task's state (PROGRESS) for Flower and the fallback read. Sent by a thread of its own,
    the latest count only: while Redis is slow or cut off the reports wait, the copy's
    data does not. `close()` waits for a report under way, so none lands after the
    task's result."""

    def __init__(self, report: Callable[[int], None] | None,
                 notify: Callable[[dict[str, Any]], None]) -> None:
        self._report = report
        self._notify = notify
        self._latest: int | None = None
        self._closed = False
        self._wake = threading.Condition()
        self._thread = threading.Thread(target=self._send, name="regbot-progress",
                                        daemon=True)
        self._thread.start()

    def bytes_done(self, event: ProgressEvent) -> None:
        with self._wake:
            self._latest = event.bytes_done
            self._wake.notify()

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join()

    def _send(self) -> None:
        while True:
            with self._wake:
                while self._latest is None and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return  # what is left is superseded by the unit's end
                done, self._latest = self._latest, None
            self._notify({"state": STATE_PROGRESS, "bytes_done": done})
            try:
                if self._report is not None:
                    self._report(done)
            except Exception as exc:  # progress is a nicety, never a reason to fail
                log.debug("cannot report transfer progress: %s", exc)


def transfer_job(unit_data: dict[str, Any], script: str, run: dict[str, Any], *,
                 task_id: str, hostname: str = "",
                 report: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Run one copy unit (or bundle); its UnitResult as a dict (plus the node that ran
    it). A failure is raised as UnitFailed carrying the regbot error type and its one-line
    message."""
    unit = Unit.from_dict(unit_data)
    ctx = context.current()
    engine = ctx.engine()
    limits = engine.limits
    deadline = run.get("deadline")
    copy_id = str(run.get("copy_id") or "")
    token = RemoteCancelToken(
        limits.store, limits.keys.copy_cancel(copy_id) if copy_id else "",
        deadline=None if deadline is None else time.monotonic() + (deadline - time.time()))
    try:
        return _transfer(ctx, engine, unit, script, run, task_id=task_id, hostname=hostname,
                         report=report, token=token.start())
    finally:
        token.close()


def _transfer(ctx: context.WorkerContext, engine: Engine, unit: Unit, script: str,
              run: dict[str, Any], *, task_id: str, hostname: str,
              report: Callable[[int], None] | None, token: CancelToken) -> dict[str, Any]:
    limits = engine.limits
    copy_id = str(run.get("copy_id") or "")
    listener = str(run.get("notify") or "")

    def notify(event: dict[str, Any]) -> None:
        publish(limits, listener, {"copy": copy_id, "task": task_id, **event})

    run_id = str(run.get("run_id") or "")
    level = run.get("log_level")
    try:
        # No waiting for another delivery: if its holder dies, the script sends the unit
        # again once the guard's lease lapsed.
        with task_guard(limits, task_id, wait=False, lease=ctx.transfer_lease) as done, \
                ExitStack() as stack:
            notify({"state": "STARTED", "hostname": hostname})
            if run_id:
                stack.enter_context(relay_logs(RunStream(limits, run_id), script,
                                               level if isinstance(level, int) else None))
            if isinstance(unit, BundleUnit):
                # Small units: their outcomes travel in the result, no progress on the way.
                parts = ctx.local_executor().run(
                    unit.units, ExecContext(engine.client, cancel=token,
                                            concurrency=unit.concurrency))
                result = UnitResult.of_bundle(unit, parts)
            else:
                progress = _Reporter(report, notify)
                try:
                    result = execute_unit(engine.client, unit, progress=progress,
                                          cancel=token)
                finally:
                    progress.close()
            out = {**result.to_dict(), "hostname": hostname}
            done.value = json.dumps(out, separators=(",", ":"))
    except Duplicate as dup:
        recorded = _recorded(dup.done)
        if recorded is None:
            raise
        # A delivery after the one that did the work: tell the waiting side its result.
        notify({"state": "SUCCESS", "result": recorded})
        return recorded
    except RegbotError as exc:
        failed = UnitFailed.from_error(exc, redact(" ".join(str(exc).split())))
        notify({"state": "FAILURE", "error_type": failed.error_type,
                "message": failed.message})
        raise failed from None
    notify({"state": "SUCCESS", "result": out})
    return out


def _recorded(raw: bytes | None) -> dict[str, Any] | None:
    try:
        data = json.loads(raw) if raw else None
    except (TypeError, ValueError):
        return None
    return data if isinstance(data, dict) and "status" in data else None
