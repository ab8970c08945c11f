"""CeleryExecutor: runs the units of a copy plan as `regbot.transfer` tasks on the cluster.

It differs from regbot.copy's LocalExecutor only in how it fans out and waits: a unit is
sent once all its deps have finished (a bounded number in flight, largest blobs first), and
the executor polls their results. Progress comes back through the result backend (a
started transfer is STARTED, a running one reports PROGRESS with the bytes sent, a finished
one carries its UnitResult) and is replayed to the copy's listener, so counts and the live
display are the same as for a local copy. On the first failure, or when the copy's cancel
token fires (the script's timeout, `once` cancelled), nothing more is sent, queued units are
revoked and running ones are told to stop through a Redis key they watch; the failure is
raised with the unit's own error type and message.

The script task that calls this runs in the `scripts` pool and only waits: the transfers
run in the separate `transfers` pool, so a node with one script slot never starves them.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from celery import Celery
from celery.result import AsyncResult, EagerResult

from regbot import errors as regbot_errors
from regbot.copy.cancel import CancelToken
from regbot.copy.errors import CopyCancelled, CopyError
from regbot.copy.executors import ExecContext, ReadyQueue, RunTag, topological_order
from regbot.copy.progress import ProgressEvent, emit_result
from regbot.copy.units import Unit, UnitResult
from regbot.errors import RegbotError
from regbot.limits import Limits
from workers.settings import QUEUE_TRANSFERS, TRANSFER_TASK

log = logging.getLogger("regbot.workers")

CANCEL_TTL = 3600  # seconds the stop signal of a copy is kept
STATE_PROGRESS = "PROGRESS"
_POLL_MIN = 0.02
_POLL_MAX = 0.25


class UnitFailed(Exception):
    """How a transfer task reports a unit's failure: the regbot error type's name and its
    one-line message (already naming the unit). Plain strings, so JSON carries it and the
    waiting side rebuilds it."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(error_type, message)
        self.error_type = error_type
        self.message = message

    def __str__(self) -> str:
        return self.message

    @classmethod
    def from_error(cls, exc: BaseException, message: str) -> UnitFailed:
        return cls(type(exc).__name__, message)


# Error types a unit may fail with, rebuilt by name on the waiting side.
_ERROR_TYPES: dict[str, type[RegbotError]] = {
    cls.__name__: cls
    for cls in (*vars(regbot_errors).values(), CopyError, CopyCancelled)
    if isinstance(cls, type) and issubclass(cls, RegbotError)
}


def rebuild_error(exc: BaseException | None, unit: Unit) -> RegbotError:
    """The RegbotError a failed transfer task stands for."""
    if isinstance(exc, UnitFailed):
        cls = _ERROR_TYPES.get(exc.error_type)
        if cls is not None and issubclass(cls, regbot_errors.RegistryError):
            err: RegbotError = cls("", exc.message)
        elif cls is not None and not issubclass(cls, regbot_errors.ScriptError):
            err = cls(exc.message)
        else:
            err = CopyError(exc.message)
        err.copy_unit = unit.id  # type: ignore[attr-defined]
        return err
    detail = f"{type(exc).__name__}: {exc}" if exc is not None else "no result"
    return CopyError(f"{unit.describe()}: transfer task failed: {detail}")


@dataclass
class _InFlight:
    unit: Unit
    result: AsyncResult
    started: bool = False
    bytes_done: int = 0


class CeleryExecutor:
    """Runs plan units as `regbot.transfer` tasks of `app`; one per process.

    `limits` (Redis) carries the stop signal to running units; the copy's RunTag (script,
    run id, log level) travels with each unit so Flower and the logs name the script, and
    the worker relays its lines to `once`. At most `max_in_flight` units are queued or
    running at once (default: twice the copy's concurrency, at least 4), so one huge image
    does not fill the transfers queue ahead of every other script.
    """

    def __init__(
        self,
        app: Celery,
        limits: Limits,
        *,
        cancel: CancelToken | None = None,
        max_in_flight: int | None = None,
    ) -> None:
        if max_in_flight is not None and max_in_flight < 1:
            raise CopyError(f"max_in_flight must be at least 1, not {max_in_flight}")
        self.app = app
        self.limits = limits
        self.cancel = cancel
        self.max_in_flight = max_in_flight

    threads = None  # units run on the workers; planning makes its own threads

    def run(self, units: Sequence[Unit], ctx: ExecContext) -> list[UnitResult]:
        topological_order(units)  # validates ids, deps and acyclicity up front
        if not units:
            return []
        token = CancelToken(parents=(ctx.cancel, self.cancel))
        copy_id = uuid.uuid4().hex
        limit = self.max_in_flight or max(4, 2 * ctx.concurrency)
        ready = ReadyQueue(units)  # the LocalExecutor's order
        results: dict[str, UnitResult] = {}
        in_flight: dict[str, _InFlight] = {}
        failure: RegbotError | None = None
        pause = _POLL_MIN
        try:
            while (ready or in_flight) and failure is None:
                if token.cancelled:
                    failure = CopyCancelled(f"copy stopped before {len(units) - len(results)}"
                                            f" of {len(units)} units ran: {token.reason}")
                    break
                while ready and len(in_flight) < limit:
                    sent = self._send(ready.pop(), copy_id, token, ctx.run)
                    in_flight[sent.result.id] = sent
                changed = False
                for task_id, item in list(in_flight.items()):
                    state, info = task_state(item.result)
                    if state in ("PENDING", "RECEIVED", "RETRY"):
                        continue
                    if state in ("STARTED", STATE_PROGRESS):
                        changed |= self._replay_running(item, info, ctx)
                        continue
                    changed = True
                    del in_flight[task_id]
                    if state == "SUCCESS":
                        result = UnitResult.from_dict(info)
                        self._replay_done(item, result, ctx)
                        results[item.unit.id] = result
                        forget_result(item.result)
                        ready.done(item.unit)
                    else:
                        failure = self._failed(item, state, info, ctx)
                        forget_result(item.result)
                        break
                if changed:
                    pause = _POLL_MIN
                elif in_flight:
                    time.sleep(pause)
                    pause = min(pause * 2, _POLL_MAX)
        finally:
            if failure is not None or in_flight:
                reason = str(failure) if failure is not None else (token.reason or "stopped")
                self._stop(copy_id, list(in_flight.values()), reason)
        if failure is not None:
            raise failure
        return [results[u.id] for u in units]

    # --- sending and stopping ---

    def _send(self, unit: Unit, copy_id: str, token: CancelToken, tag: RunTag) -> _InFlight:
        left = token.remaining()
        deadline = None if left is None else time.time() + max(left, 0.0)
        run = {"script": tag.script, "run_id": tag.run_id, "log_level": tag.log_level,
               "copy_id": copy_id, "deadline": deadline}
        options: dict[str, Any] = {
            "queue": QUEUE_TRANSFERS,
            # What Flower and the worker's log show for the task: readable, never the
            # (possibly inline, base64) manifest body.
            "argsrepr": repr((tag.script, unit.kind, unit.src, unit.tgt, unit.digest,
                              unit.size)),
            "kwargsrepr": repr({"run_id": tag.run_id}),
        }
        if deadline is not None:
            options["expires"] = datetime.fromtimestamp(deadline, tz=UTC)
        sig = self.app.signature(TRANSFER_TASK, args=(unit.to_dict(), tag.script),
                                 kwargs={"run": run}, **options)
        return _InFlight(unit, sig.apply_async())

    def _stop(self, copy_id: str, pending: list[_InFlight], reason: str) -> None:
        """Tell running units to stop and revoke the queued ones (best effort)."""
        try:
            self.limits.store.set(self.limits.keys.copy_cancel(copy_id), reason[:500],
                                  ex=CANCEL_TTL)
        except redis.RedisError as exc:
            log.warning("cannot signal the transfers of a stopped copy to stop: %s", exc)
        ids = [item.result.id for item in pending]
        if ids and not self.app.conf.task_always_eager:
            try:
                self.app.control.revoke(ids)
            except Exception as exc:  # the broker may be what failed
                log.warning("cannot revoke %d queued transfers: %s", len(ids), exc)
        for item in pending:
            forget_result(item.result)

    # --- replaying progress ---

    def _replay_running(self, item: _InFlight, info: Any, ctx: ExecContext) -> bool:
        """Report what is new about a running unit; False when nothing is."""
        news = False
        if not item.started:
            item.started = news = True
            ctx.progress.started(ProgressEvent.for_unit(item.unit))
        done = info.get("bytes_done") if isinstance(info, dict) else None
        if isinstance(done, int) and done > item.bytes_done:
            item.bytes_done, news = done, True
            ctx.progress.bytes_done(ProgressEvent.for_unit(item.unit, bytes_done=done))
        return news

    def _replay_done(self, item: _InFlight, result: UnitResult, ctx: ExecContext) -> None:
        if not item.started:
            item.started = True
            ctx.progress.started(ProgressEvent.for_unit(item.unit))
        emit_result(ctx.progress, item.unit, result)

    def _failed(self, item: _InFlight, state: str, info: Any, ctx: ExecContext) -> RegbotError:
        if state == "REVOKED":
            err: RegbotError = CopyCancelled(f"{item.unit.describe()}: transfer revoked "
                                             "(expired or cancelled)")
        else:
            err = rebuild_error(info if isinstance(info, BaseException) else None, item.unit)
        if not item.started:
            ctx.progress.started(ProgressEvent.for_unit(item.unit))
        ctx.progress.failed(ProgressEvent.for_unit(item.unit, error=str(err)))
        return err


def task_state(result: AsyncResult) -> tuple[str, Any]:
    """(state, result or meta) with one backend read."""
    if isinstance(result, EagerResult):
        return result.state, result.result
    meta = result.backend.get_task_meta(result.id)
    return meta.get("status", "PENDING"), meta.get("result")


def forget_result(result: AsyncResult) -> None:
    """Drop a read result from the backend (Redis stays small); best effort."""
    if isinstance(result, EagerResult):
        return
    try:
        result.forget()
    except Exception as exc:
        log.debug("cannot forget result %s: %s", result.id, exc)

