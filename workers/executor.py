"""CeleryExecutor: the units of a copy plan on the cluster, large blobs on the nodes.

It differs from regbot.copy's LocalExecutor only in how it fans out and waits. Units run
in the script's own process (on the engine's client) unless they are blobs of at least
`transfer_min` bytes: those are first checked on the target here (a HEAD; present means
done, nothing dispatched) and else sent as `regbot.transfer` tasks to queue `transfers`,
where any node takes them. By default a copy with no such blob (a small image) runs here
in full: that costs the cluster less CPU than a task per copy. With `spreadCopies: true`
it is sent whole instead, as one `units` bundle (regbot/copy/units.py) that a node runs
with its own threads, so a mirror of many small images spreads over the nodes at one
round trip per copy. A copy of only manifests and tags, and any copy into or out of an
OCI layout (a directory of this machine), always runs here.

A sent unit reports back by notification (workers/notify.py): started, bytes sent,
finished or failed, pushed to this process's events list and handed to the waiting copy
at once; the result backend is read only as a fallback, every few seconds (a task
revoked or expired before it ran, a notification lost). Progress is replayed to the
copy's listener, so counts and the live display are the same as for a local copy. On the
first failure, or when the copy's cancel token fires (the script's timeout, `once`
cancelled), nothing more starts, queued units are revoked, running ones are told to stop
through a Redis key they watch, and the failure is raised with the unit's own error type
and message.

A sent unit is never waited for longer than its lease, whatever the broker and its
visibility timeout: the transfer holds its task guard (a lock renewed every lease/3) while
it runs, and records its result when it ends (`Keys.task_done`). A unit whose guard is
gone for half a lease without a result (its node died, or Redis lost it), or that no node
started within a lease (the node that took the message died before starting it, or the
cluster is busy), is sent again under the same task id. That is idempotent: a delivery
finding the result recorded returns it, one finding the guard held does nothing, and a
second transfer of a blob finds it on the target (or waits for its claim) and skips it.

Redis (or the broker) going away does not fail the copy: sends wait, reads are retried,
one line says when it was lost and one when it is back; only an outage longer than
OUTAGE_LIMIT fails the copy, in one line. A unit whose task failed with anything but its
own error (always UnitFailed), e.g. its result could not be stored through a long outage,
is sent again too, up to CLUSTER_FAILURE_RESENDS times.

The script task that calls this runs in the `scripts` pool: the transfers run in the
separate `transfers` pool, so a node with one script slot never starves them.
"""

from __future__ import annotations

import contextvars
import json
import logging
import queue
import time
import uuid
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from celery import Celery
from celery.result import AsyncResult, EagerResult
from kombu.exceptions import OperationalError

from regbot import errors as regbot_errors
from regbot.config import DEFAULT_TRANSFER_MIN
from regbot.copy.cancel import CancelToken
from regbot.copy.errors import CopyCancelled, CopyError
from regbot.copy.execute import blob_present, execute_unit
from regbot.copy.executors import (
    ExecContext,
    ReadyQueue,
    RunTag,
    UnitThreads,
    topological_order,
)
from regbot.copy.progress import ProgressEvent, emit_result
from regbot.copy.units import STATUS_SKIPPED, BlobUnit, BundleUnit, Unit, UnitResult
from regbot.errors import LimitError, RegbotError
from regbot.limits import Limits, StoreOutage
from regbot.types.ref import OCIDIR_PREFIX, Reference
from workers.notify import UnitEvents
from workers.settings import DEFAULT_LEASE, NODE_OUTAGE_LIMIT, QUEUE_TRANSFERS, TRANSFER_TASK

log = logging.getLogger("regbot.workers")

CANCEL_TTL = 3600  # seconds the stop signal of a copy is kept
STATE_PROGRESS = "PROGRESS"
POLL_FALLBACK = 2.0  # seconds between two reads of the result backend for sent units
CLUSTER_FAILURE_RESENDS = 3  # sends of a unit whose task failed for the cluster's sake
OUTAGE_LIMIT = NODE_OUTAGE_LIMIT  # seconds without Redis or the broker before a copy gives up
# What a Redis or broker outage raises through redis-py, kombu and regbot's limits.
OUTAGE_ERRORS = (redis.RedisError, OperationalError, LimitError, ConnectionError, TimeoutError)


def task_guard_name(task_id: str) -> str:
    """The lock a delivery of task `task_id` holds while it runs (workers/jobs.py)."""
    return f"task:{task_id}"


class Outage:
    """Tracks one process's view of a Redis/broker outage: one line when it starts, one
    when it ends, and a one-line error once it has lasted longer than `limit` seconds.
    With `report` (the process's StoreOutage of its Redis), a Redis failure is said there,
    in the one line the whole process gives an outage of its Redis."""

    def __init__(self, what: str, limit: float, logger: logging.Logger = log,
                 error: type[RegbotError] | None = None,
                 report: StoreOutage | None = None) -> None:
        self.what = what
        self.limit = limit
        self.log = logger
        self.error = error or ClusterLost
        self.report = report
        self.since: float | None = None
        self.said = False  # whether this tracker logged the start itself

    def failed(self, exc: BaseException) -> None:
        """A call failed for the outage; raises ClusterLost past the limit."""
        now = time.monotonic()
        if self.since is None:
            self.since = now
            if self.report is not None and isinstance(exc, (redis.RedisError, LimitError)):
                self.report.note(exc)
            else:
                self.said = True
                self.log.warning("lost %s, waiting up to %gs for it to come back: %s",
                                 self.what, self.limit, _one_line(exc))
        elif now - self.since > self.limit:
            raise self.error(f"lost {self.what} for more than {self.limit:g}s: "
                             f"{_one_line(exc)}") from None

    def ok(self) -> None:
        if self.since is not None:
            if self.said:
                self.log.warning("%s is back after %.1fs", self.what,
                                 time.monotonic() - self.since)
            if self.report is not None:
                self.report.ok()
            self.since, self.said = None, False


class ClusterLost(CopyError):
    """Redis or the broker stayed away longer than the outage limit."""


def _between_registries(unit: Unit) -> bool:
    """Whether any node can run `unit`: an OCI layout is a directory of this machine."""
    return not (unit.src.startswith(OCIDIR_PREFIX) or unit.tgt.startswith(OCIDIR_PREFIX))


def _repository(ref: str) -> str:
    """`registry/repo` of a unit's `registry/repo@digest` (or `:tag`) reference."""
    try:
        return Reference.parse(ref).name
    except RegbotError:
        return ref


def _one_line(value: object) -> str:
    return " ".join(str(value).split()) or type(value).__name__


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
class _Sent:
    unit: Unit
    result: AsyncResult
    started: bool = False
    bytes_done: int = 0
    sent_at: float = 0.0  # monotonic time of the last send
    running: bool = False  # its guard was seen held, or it reported, since the last send
    missing_since: float | None = None  # monotonic: guard seen gone after it ran
    resends: int = 0


class CeleryExecutor:
    """Runs plan units in this process and, for large blobs, as `regbot.transfer` tasks
    of `app`; one per process.

    `limits` (Redis) carries the notifications and the stop signal; the copy's RunTag
    (script, run id, log level) travels with each sent unit so Flower and the logs name
    the script, and the worker relays its lines to `once`. At most `max_in_flight` units
    of one copy are sent and not finished at once (default: twice the copy's concurrency,
    at least 4), so one huge image does not fill the transfers queue ahead of every other
    script. `transfer_min` is regbot.yml's `defaults.transferMin`; `lease` is the nodes'
    transfer lease (how soon a lost unit is sent again). `spread_copies` is
    `defaults.spreadCopies`: whether small copies are sent whole.
    """

    def __init__(
        self,
        app: Celery,
        limits: Limits,
        *,
        cancel: CancelToken | None = None,
        max_in_flight: int | None = None,
        transfer_min: int = DEFAULT_TRANSFER_MIN,
        spread_copies: bool = False,
        poll_fallback: float = POLL_FALLBACK,
        lease: float = DEFAULT_LEASE,
        outage_limit: float = OUTAGE_LIMIT,
    ) -> None:
        if max_in_flight is not None and max_in_flight < 1:
            raise CopyError(f"max_in_flight must be at least 1, not {max_in_flight}")
        self.app = app
        self.limits = limits
        self.cancel = cancel
        self.max_in_flight = max_in_flight
        self.transfer_min = transfer_min
        self.spread_copies = spread_copies
        self.poll_fallback = poll_fallback
        self.lease = lease
        self.outage_limit = outage_limit
        self.events = UnitEvents(limits)
        self._threads = UnitThreads()

    @property
    def threads(self) -> ThreadPoolExecutor:
        return self._threads.pool

    def run(self, units: Sequence[Unit], ctx: ExecContext) -> list[UnitResult]:
        topological_order(units)  # validates ids, deps and acyclicity up front
        if not units:
            return []
        bundle = self.bundle(units, ctx)
        if bundle is None:
            return _CopyRun(self, units, ctx).run()
        [result] = _CopyRun(self, [bundle], ctx).run()
        by_id = {part.id: part for part in result.parts or []}
        missing = [u.id for u in units if u.id not in by_id]
        if missing:
            raise CopyError(f"{bundle.describe()}: the node sent no result for units {missing[:5]}")
        return [by_id[u.id] for u in units]

    def sends(self, unit: Unit, ctx: ExecContext) -> bool:
        """Whether `unit` goes to the transfers queue (else it runs in this process)."""
        if ctx.client is None or isinstance(unit, BundleUnit):
            return True  # nothing to run it with here, or made to be sent
        return (isinstance(unit, BlobUnit) and unit.size >= self.transfer_min
                and _between_registries(unit))

    def bundle(self, units: Sequence[Unit], ctx: ExecContext) -> BundleUnit | None:
        """The copy's units as one bundle for a node, when the copy is small and moves
        blobs between registries (see the module docstring); else None."""
        if not self.spread_copies or ctx.client is None:
            return None
        if not any(isinstance(u, BlobUnit) for u in units):
            return None  # a few manifest puts: cheaper here than a round trip
        if any(self.sends(u, ctx) or not _between_registries(u) for u in units):
            return None
        return BundleUnit(id="bundle", src=_repository(units[0].src),
                          tgt=_repository(units[0].tgt), units=list(units),
                          concurrency=max(1, ctx.concurrency))

    # --- sending and stopping ---

    def send(self, unit: Unit, copy_id: str, token: CancelToken, tag: RunTag,
             task_id: str | None = None) -> _Sent:
        """Send `unit` as a transfer task (again, when `task_id` is an earlier send's)."""
        left = token.remaining()
        deadline = None if left is None else time.time() + max(left, 0.0)
        run = {"script": tag.script, "run_id": tag.run_id, "log_level": tag.log_level,
               "copy_id": copy_id, "deadline": deadline, "notify": self.events.id}
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
        if task_id is not None:
            options["task_id"] = task_id
        sig = self.app.signature(TRANSFER_TASK, args=(unit.to_dict(), tag.script),
                                 kwargs={"run": run}, **options)
        return _Sent(unit, sig.apply_async(), sent_at=time.monotonic())

    def recorded_result(self, task_id: str) -> UnitResult | None:
        """The result a finished delivery of `task_id` recorded (workers/jobs.py)."""
        raw = self.limits.store.get(self.limits.keys.task_done(task_id))
        try:
            data = json.loads(raw) if raw else None
        except (TypeError, ValueError):
            return None
        return UnitResult.from_dict(data) if isinstance(data, dict) else None

    def stop(self, copy_id: str, pending: list[_Sent], reason: str) -> None:
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


class _CopyRun:
    """One `CeleryExecutor.run`: the units of one copy until all are done or one failed.

    Everything that happens (a local unit or a target check ending, a sent unit's event)
    arrives on one queue, read by the calling thread, which alone changes the state."""

    def __init__(self, executor: CeleryExecutor, units: Sequence[Unit], ctx: ExecContext) -> None:
        self.ex = executor
        self.units = units
        self.ctx = ctx
        self.token = CancelToken(parents=(ctx.cancel, executor.cancel))
        # Local units stop with this one: on a failure here, or with the copy.
        self.local_token = CancelToken(parents=(self.token,))
        self.copy_id = uuid.uuid4().hex
        self.ready = ReadyQueue(units)  # the LocalExecutor's order
        self.results: dict[str, UnitResult] = {}
        self.inbox: queue.Queue = queue.Queue()
        self.local: dict[str, Unit] = {}  # unit id -> unit running (or checked) here
        self.checked: deque[Unit] = deque()  # absent from the target: to send
        self.sent: dict[str, _Sent] = {}  # task id -> unit on the cluster
        self.failure: RegbotError | None = None
        self.local_limit = max(1, ctx.concurrency)
        self.send_limit = executor.max_in_flight or max(4, 2 * ctx.concurrency)
        self.subscribed = False
        self.polled = time.monotonic()
        self.leases_checked = time.monotonic()
        self.outage = Outage("Redis or the broker", executor.outage_limit,
                             report=executor.limits.outage)

    def run(self) -> list[UnitResult]:
        try:
            while self.failure is None and (self.ready or self.local or self.sent
                                            or self.checked):
                if self.token.cancelled:
                    self.failure = CopyCancelled(
                        f"copy stopped before {len(self.units) - len(self.results)} of "
                        f"{len(self.units)} units ran: {self.token.reason}")
                    break
                self._start()
                self._take(self._next())
                self._watch_cluster()
        except BaseException as exc:
            if self.failure is None:
                self.failure = exc if isinstance(exc, RegbotError) else None
            self._wind_down(str(exc) or type(exc).__name__)
            raise
        self._wind_down(str(self.failure) if self.failure else "")
        if self.failure is not None:
            raise self.failure
        return [self.results[u.id] for u in self.units]

    # --- starting ---

    def _start(self) -> None:
        while self.ready and len(self.local) < self.local_limit:
            unit = self.ready.pop()
            self.local[unit.id] = unit
            sends = self.ex.sends(unit, self.ctx)
            if sends and self.ctx.client is not None and isinstance(unit, BlobUnit):
                self._submit(unit, "checked", self._check, unit)
            elif sends:  # a bundle checks its blobs where it runs
                del self.local[unit.id]
                self.checked.append(unit)
            else:
                self._submit(unit, "local", execute_unit, self.ctx.client, unit,
                             progress=self.ctx.progress, cancel=self.local_token,
                             progress_interval=self.ctx.progress_interval)
        while self.checked and len(self.sent) < self.send_limit:
            if not self.subscribed:
                self.ex.events.subscribe(self.copy_id, self.inbox)
                self.subscribed = True
            try:
                item = self.ex.send(self.checked[0], self.copy_id, self.token, self.ctx.run)
            except OUTAGE_ERRORS as exc:
                self.outage.failed(exc)  # the unit stays first in line; sent when it is back
                return
            self.outage.ok()
            self.checked.popleft()
            self.sent[item.result.id] = item

    def _submit(self, unit: Unit, kind: str, fn: Any, *args: Any, **kwargs: Any) -> None:
        # The caller's context (e.g. the script name logs carry) goes along.
        future = self.ex.threads.submit(contextvars.copy_context().run, fn, *args, **kwargs)
        future.add_done_callback(lambda f: self.inbox.put((kind, unit, f)))

    def _check(self, unit: Unit) -> bool:
        """Whether the target already has the blob (then nothing is sent)."""
        self.local_token.check(unit.describe())
        return blob_present(self.ctx.client, Reference.parse(unit.tgt), unit.digest)

    # --- what happened ---

    def _next(self) -> Any:
        wait = self.ex.poll_fallback if self.sent else 1.0
        try:
            return self.inbox.get(timeout=wait)
        except queue.Empty:
            return None

    def _take(self, item: Any) -> None:
        if item is None:
            return
        if isinstance(item, dict):
            self._event(item)
            return
        kind, unit, future = item
        del self.local[unit.id]
        exc = future.exception()
        if exc is not None:
            self._fail(exc)
        elif kind == "checked" and future.result():
            progress = self.ctx.progress
            progress.started(ProgressEvent.for_unit(unit))
            progress.skipped(ProgressEvent.for_unit(unit))
            self._done(unit, UnitResult(unit.id, unit.kind, STATUS_SKIPPED, unit.digest, 0))
        elif kind == "checked":
            self.checked.append(unit)
        else:
            self._done(unit, future.result())

    def _event(self, event: dict[str, Any]) -> None:
        item = self.sent.get(str(event.get("task", "")))
        if item is None:
            return  # a unit already settled (by the fallback read), or a stray
        state = event.get("state")
        if state == "STARTED":
            self._replay_running(item, {})
        elif state == STATE_PROGRESS:
            self._replay_running(item, event)
        elif state == "SUCCESS" and isinstance(event.get("result"), dict):
            self._sent_done(item, UnitResult.from_dict(event["result"]))
        elif state == "FAILURE":
            failed = UnitFailed(str(event.get("error_type", "")), str(event.get("message", "")))
            self._sent_failed(item, rebuild_error(failed, item.unit))

    def _watch_cluster(self) -> None:
        """The fallback read and the lease check, riding out a Redis/broker outage."""
        try:
            reached = self._poll_backend()
            if self.failure is None:
                reached = self._check_leases() or reached
        except OUTAGE_ERRORS as exc:
            self.outage.failed(exc)
        else:
            if reached:  # only a call that got through says the outage is over
                self.outage.ok()

    def _poll_backend(self) -> bool:
        """The fallback: the result backend's word on sent units, every poll_fallback s.
        Returns whether it read the backend."""
        if not self.sent or time.monotonic() - self.polled < self.ex.poll_fallback:
            return False
        self.polled = time.monotonic()
        for item in list(self.sent.values()):
            state, info = task_state(item.result)
            if state in ("PENDING", "RECEIVED", "RETRY"):
                continue
            if state in ("STARTED", STATE_PROGRESS):
                self._replay_running(item, info if isinstance(info, dict) else {})
            elif state == "SUCCESS" and isinstance(info, dict):
                self._sent_done(item, UnitResult.from_dict(info))
            elif state == "REVOKED":
                self._sent_failed(item, CopyCancelled(
                    f"{item.unit.describe()}: transfer revoked (expired or cancelled)"))
            elif not isinstance(info, UnitFailed) and item.resends < CLUSTER_FAILURE_RESENDS:
                # Not the unit's own error (that is always UnitFailed): the cluster's, e.g.
                # a result that could not be stored through an outage. Done again.
                self._send_again(item, f"its task failed on the cluster: {_one_line(info)}")
            else:
                self._sent_failed(item, rebuild_error(
                    info if isinstance(info, BaseException) else None, item.unit))
            if self.failure is not None:
                break
        return True

    def _check_leases(self) -> bool:
        """Send again what no live node is doing (see the module docstring). Returns
        whether it looked (and so reached Redis)."""
        now = time.monotonic()
        if not self.sent or now - self.leases_checked < self.ex.poll_fallback:
            return False
        self.leases_checked = now
        lease = self.ex.lease
        for task_id, item in list(self.sent.items()):
            if self.ex.limits.is_locked(task_guard_name(task_id)):
                item.running, item.missing_since = True, None
                continue
            if item.running:
                # Ran, and no guard now: it ended (its result is on its way) or its node
                # stopped renewing. Half a lease lets a live holder take a lapsed guard back.
                if item.missing_since is None:
                    item.missing_since = now
                if now - item.missing_since < lease / 2:
                    continue
                why = "its node stopped renewing its lease"
            elif now - item.sent_at < lease:
                continue
            else:
                why = f"no node started it within {lease:g}s"
            if task_id not in self.sent:
                continue  # settled meanwhile
            recorded = self.ex.recorded_result(task_id)
            if recorded is not None:
                self._sent_done(item, recorded)
                continue
            self._send_again(item, why)
        return True

    def _send_again(self, item: _Sent, why: str) -> None:
        """Send a unit again under its task id (idempotent: see the module docstring)."""
        log.warning("sending %s again: %s", item.unit.describe(), why)
        forget_result(item.result)  # a dead delivery's STARTED would read as running
        again = self.ex.send(item.unit, self.copy_id, self.token, self.ctx.run,
                             task_id=item.result.id)
        again.resends = item.resends + 1
        again.started, again.bytes_done = item.started, item.bytes_done  # for progress
        self.sent[item.result.id] = again

    # --- settling ---

    def _done(self, unit: Unit, result: UnitResult) -> None:
        self.results[unit.id] = result
        self.ready.done(unit)

    def _fail(self, exc: BaseException) -> None:
        # Keep the first real failure; cancellations it caused come later.
        if self.failure is None or (isinstance(self.failure, CopyCancelled)
                                    and not isinstance(exc, CopyCancelled)):
            self.failure = exc if isinstance(exc, RegbotError) else CopyError(
                f"{type(exc).__name__}: {exc}")
        self.local_token.cancel("stopped after a unit of the copy failed")

    def _sent_done(self, item: _Sent, result: UnitResult) -> None:
        del self.sent[item.result.id]
        progress = self.ctx.progress
        if isinstance(item.unit, BundleUnit):
            # Its units' outcomes, as if they had run here (counts, display, metrics).
            parts = {part.id: part for part in result.parts or []}
            for unit in item.unit.units:
                if unit.id in parts:
                    progress.started(ProgressEvent.for_unit(unit))
                    emit_result(progress, unit, parts[unit.id])
        else:
            if not item.started:
                item.started = True
                progress.started(ProgressEvent.for_unit(item.unit))
            emit_result(progress, item.unit, result)
        forget_result(item.result)
        self._done(item.unit, result)

    def _sent_failed(self, item: _Sent, err: RegbotError) -> None:
        del self.sent[item.result.id]
        if not isinstance(item.unit, BundleUnit):  # a bundle's error names its unit
            if not item.started:
                self.ctx.progress.started(ProgressEvent.for_unit(item.unit))
            self.ctx.progress.failed(ProgressEvent.for_unit(item.unit, error=str(err)))
        forget_result(item.result)
        self._fail(err)

    def _replay_running(self, item: _Sent, info: dict[str, Any]) -> None:
        item.running = True
        if isinstance(item.unit, BundleUnit):
            return  # its units are reported when it ends
        if not item.started:
            item.started = True
            self.ctx.progress.started(ProgressEvent.for_unit(item.unit))
        done = info.get("bytes_done")
        if isinstance(done, int) and done > item.bytes_done:
            item.bytes_done = done
            self.ctx.progress.bytes_done(ProgressEvent.for_unit(item.unit, bytes_done=done))

    def _wind_down(self, reason: str) -> None:
        """Stop what still runs: revoke and signal the sent units, let local ones end."""
        if self.sent:
            self.ex.stop(self.copy_id, list(self.sent.values()),
                         reason or self.token.reason or "stopped")
            self.sent.clear()
        if self.local:
            self.local_token.cancel(reason or "copy stopped")
            while self.local:  # they stop at their next chunk or request
                item = self.inbox.get()
                if isinstance(item, tuple):
                    self.local.pop(item[1].id, None)
        if self.subscribed:
            self.ex.events.unsubscribe(self.copy_id)


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

