"""Executors run the units of a plan respecting their dependencies.

They differ only in how they fan out and wait; `execute_unit` does all the work. The
interface is one method, `run(units, ctx) -> results` (results in the order of `units`),
so a Celery executor can dispatch the same units as subtasks.
"""

from __future__ import annotations

import contextvars
import heapq
import threading
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from regbot.copy.cancel import CancelToken
from regbot.copy.errors import CopyCancelled, CopyError
from regbot.copy.execute import DEFAULT_PROGRESS_INTERVAL, execute_unit
from regbot.copy.progress import ProgressListener
from regbot.copy.units import BlobUnit, Unit, UnitResult

if TYPE_CHECKING:
    from regbot.client import RegClient

DEFAULT_CONCURRENCY = 4  # when neither side is a registry with its own setting
# Threads an executor may keep for the units of all the copies it runs at once; each copy
# still runs at most its own concurrency of them (request slots bound the real load).
MAX_THREADS = 64


@dataclass(frozen=True)
class RunTag:
    """Whom a copy runs for: the script, and on a cluster the `once` run (`run_id`) that
    relays its log lines at `log_level`. Executors that send units elsewhere label them
    with it; it never holds a secret."""

    script: str = ""
    run_id: str = ""
    log_level: int | None = None


@dataclass
class ExecContext:
    """What an executor needs besides the units. `client` may be None for executors that
    run units elsewhere (workers build their own client from their configuration)."""

    client: RegClient | None
    progress: ProgressListener = field(default_factory=ProgressListener)
    cancel: CancelToken = field(default_factory=CancelToken)
    concurrency: int = DEFAULT_CONCURRENCY
    progress_interval: float = DEFAULT_PROGRESS_INTERVAL
    run: RunTag = field(default_factory=RunTag)


class Executor(Protocol):
    cancel: CancelToken | None

    @property
    def threads(self) -> ThreadPoolExecutor | None:
        """Threads of this process the executor works on, which planning may share
        (None: planning makes its own)."""

    def run(self, units: Sequence[Unit], ctx: ExecContext) -> list[UnitResult]:
        """Run every unit once its deps are done; raise the first failure (the rest are
        cancelled); return one result per unit, in the order of `units`."""


def topological_order(units: Sequence[Unit]) -> list[Unit]:
    """The units in an order where each comes after its deps (stable: plan order wins
    ties). Raises CopyError on unknown deps, duplicate ids or cycles."""
    by_id: dict[str, Unit] = {}
    for unit in units:
        if unit.id in by_id:
            raise CopyError(f"copy plan has two units with id {unit.id!r}")
        by_id[unit.id] = unit
    for unit in units:
        for dep in set(unit.deps):
            if dep not in by_id:
                raise CopyError(f"copy unit {unit.id!r} depends on unknown unit {dep!r}")
    ready = ReadyQueue(units, plan_order=True)
    order: list[Unit] = []
    while ready:
        unit = ready.pop()
        order.append(unit)
        ready.done(unit)
    if len(order) != len(units):
        raise CopyError(f"copy plan has a dependency cycle among units {ready.blocked()[:5]}")
    return order


class ReadyQueue:
    """The units of a plan whose deps have all finished, in the order to start them:
    largest blob first, then the other units, plan order breaking ties (`plan_order`:
    plan order only). `done(unit)` releases the units that were waiting for it. The ids
    and deps must be valid (see `topological_order`)."""

    def __init__(self, units: Sequence[Unit], *, plan_order: bool = False) -> None:
        self._units = units
        self._index = {u.id: i for i, u in enumerate(units)}
        self._waiting = {u.id: len(set(u.deps)) for u in units}
        self._dependents: dict[str, list[str]] = {u.id: [] for u in units}
        for unit in units:
            for dep in set(unit.deps):
                self._dependents[dep].append(unit.id)
        self._plan_order = plan_order
        self._heap: list[tuple[tuple[int, ...], int]] = []
        for unit in units:
            if self._waiting[unit.id] == 0:
                self._push(unit.id)

    def __bool__(self) -> bool:
        return bool(self._heap)

    def pop(self) -> Unit:
        """The next unit to start."""
        return self._units[heapq.heappop(self._heap)[1]]

    def done(self, unit: Unit) -> None:
        for uid in self._dependents[unit.id]:
            self._waiting[uid] -= 1
            if self._waiting[uid] == 0:
                self._push(uid)

    def blocked(self) -> list[str]:
        """The ids of the units still waiting for a dep, sorted."""
        return sorted(uid for uid, n in self._waiting.items() if n > 0)

    def _push(self, uid: str) -> None:
        position = self._index[uid]
        unit = self._units[position]
        key = (position,) if self._plan_order else _priority(unit, position)
        heapq.heappush(self._heap, (key, position))


class UnitThreads:
    """Threads of this process for copy units, made on first use and kept: one set per
    executor, shared by the copies it runs at once (each within its own concurrency)."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._guard = threading.Lock()

    @property
    def pool(self) -> ThreadPoolExecutor:
        with self._guard:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=MAX_THREADS,
                                                thread_name_prefix="regbot-copy")
            return self._pool


class SequentialExecutor:
    """Runs the units one by one in the calling thread (a reference and a debugging aid)."""

    threads = None

    def __init__(self, cancel: CancelToken | None = None) -> None:
        self.cancel = cancel

    def run(self, units: Sequence[Unit], ctx: ExecContext) -> list[UnitResult]:
        if ctx.client is None:
            raise CopyError("the sequential executor needs a client")
        token = CancelToken(parents=(ctx.cancel, self.cancel))
        results: dict[str, UnitResult] = {}
        for unit in topological_order(units):
            results[unit.id] = execute_unit(ctx.client, unit, progress=ctx.progress,
                                            cancel=token,
                                            progress_interval=ctx.progress_interval)
        return [results[u.id] for u in units]


class LocalExecutor:
    """Units on threads of this process, kept from one copy to the next.

    A copy runs at most `max_workers` units at once when given, else the context's
    concurrency (the target host's request concurrency); copies running at the same time
    share the threads. Ready units start largest blob first, so long transfers overlap
    the many small ones. On the first failure no new unit starts, running ones stop at
    their next chunk, and that first failure is raised.
    """

    def __init__(self, max_workers: int | None = None, cancel: CancelToken | None = None) -> None:
        if max_workers is not None and max_workers < 1:
            raise CopyError(f"max_workers must be at least 1, not {max_workers}")
        self.max_workers = max_workers
        self.cancel = cancel
        self._threads = UnitThreads()

    @property
    def threads(self) -> ThreadPoolExecutor:
        return self._threads.pool

    def run(self, units: Sequence[Unit], ctx: ExecContext) -> list[UnitResult]:
        if ctx.client is None:
            raise CopyError("the local executor needs a client")
        topological_order(units)  # validates ids, deps and acyclicity up front
        if not units:
            return []
        workers = max(1, self.max_workers or ctx.concurrency)
        token = CancelToken(parents=(ctx.cancel, self.cancel))
        ready = ReadyQueue(units)
        results: dict[str, UnitResult] = {}
        first_error: BaseException | None = None
        running: dict[Future[UnitResult], Unit] = {}
        pool = self.threads
        try:
            while ready or running:
                while ready and len(running) < workers and first_error is None \
                        and not token.cancelled:
                    unit = ready.pop()
                    # The caller's context (e.g. the script name logs carry) goes along.
                    fut = pool.submit(contextvars.copy_context().run, execute_unit,
                                      ctx.client, unit, progress=ctx.progress,
                                      cancel=token, progress_interval=ctx.progress_interval)
                    running[fut] = unit
                if not running:
                    break
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in finished:
                    unit = running.pop(fut)
                    exc = fut.exception()
                    if exc is not None:
                        # Keep the first real failure; cancellations it caused come later.
                        if first_error is None or (isinstance(first_error, CopyCancelled)
                                                   and not isinstance(exc, CopyCancelled)):
                            first_error = exc
                        token.cancel(f"stopped after {unit.describe()} failed")
                        continue
                    results[unit.id] = fut.result()
                    ready.done(unit)
        except BaseException:
            # Interrupted while waiting: the started units stop at their next chunk, and
            # none outlives the copy that started it.
            token.cancel("copy interrupted")
            wait(running)
            raise
        if first_error is not None:
            raise first_error
        if len(results) != len(units):
            raise CopyCancelled(f"copy stopped before {len(units) - len(results)} of "
                                f"{len(units)} units ran: {token.reason or 'cancelled'}")
        return [results[u.id] for u in units]


def _priority(unit: Unit, position: int) -> tuple[int, int, int]:
    if isinstance(unit, BlobUnit):
        return (0, -max(unit.size, 0), position)
    return (1, 0, position)
