"""All cluster-shared state of regbot: request slots, request rates, locks, blob claims.

Everything lives in one store under one key prefix and changes only through its atomic
operations (regbot/limitstore.py): Redis for a cluster, so threads, processes and a whole
Celery cluster agree; process memory for an embedded run, with the same contract.

- Holders are random owner tokens (uuid4): a release frees only what that token holds and
  can be repeated safely; acquire scripts are idempotent per token, so a command retried
  after a lost reply does not take a second slot.
- Everything held is a lease with a TTL that a background thread of the holder renews; a
  holder that dies stops renewing and its slots, locks and claims expire on their own.
- On Redis, times come from the server (TIME), so hosts with skewed clocks agree.
- Keys hold only host names, repository names, digests and script names, never credentials.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from regbot.errors import LimitError, LimitTimeout
from regbot.limitstore import (
    LimitStore,
    MemoryStore,
    RedisStore,
    StoreError,
    describe_client,
    is_limit_store,
)
from regbot.types.ratelimit import RateLimit

if TYPE_CHECKING:
    import redis  # a cluster's: embedded runs never import it

__all__ = [
    "BlobClaim",
    "Keys",
    "LimitError",
    "LimitTimeout",
    "Limits",
    "Lock",
    "StoreOutage",
    "describe_store",
    "store_from_url",
]

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "regbot"
DEFAULT_LEASE = 30.0  # seconds a slot outlives a holder that stopped renewing it
DEFAULT_CLAIM_TTL = 300.0  # seconds a blob claim outlives a holder that stopped renewing it
# Seconds a blob claim that ended well stays marked done: the next claimant of that digest
# in that repository knows the blob is there without looking.
CLAIM_DONE_TTL = 30.0
# Seconds after a request slot was taken from a shared store during which this process's
# threads hand it on to each other without giving it back (_Gate).
HANDOFF_MAX = 0.25
RENEWER_IDLE_EXIT = 30.0  # seconds the lease renewer thread waits for work before it exits
RATELIMIT_TTL = 6 * 3600  # registries count pulls over 6 h windows (RateLimit-Limit w=21600)

# Waiting polls the store with jittered, doubling pauses between these bounds; a release made
# by this process wakes its local waiters at once.
_POLL_MIN = 0.01
_POLL_MAX = 0.2
_OUTAGE_PAUSE = 1.0  # seconds between two tries while the store is unreachable

# --- stores ----------------------------------------------------------------------------

# How every Redis client of a cluster (this store, Celery's broker and result backend,
# workers/app.py) notices a connection that went silent: a network cut sends no RST, so
# only a timeout tells. No command of regbot blocks on the server for more than 2 s.
SOCKET_TIMEOUT = 5.0  # seconds a reply may take before the connection counts as dead
CONNECT_TIMEOUT = 5.0
HEALTH_CHECK_INTERVAL = 10  # seconds idle after which a connection is PINGed before use


def store_from_url(url: str, *, retries: int = 6) -> redis.Redis:
    """A Redis client for `redis://…`/`rediss://…`/`unix://…`.

    A refused or reset connection is retried with exponential backoff (about 5 s in all
    with the default `retries`), enough to ride out a Redis restart or a failover. A reply
    that does not come within SOCKET_TIMEOUT is not retried here: the connection is
    dropped (the next call makes a new one) and the caller learns of the outage within
    seconds, to wait it out at its own level (Limits' outage_limit, the executor, `once`).
    """
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_keepalive=True,
        health_check_interval=HEALTH_CHECK_INTERVAL,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), retries,
                    supported_errors=(redis.ConnectionError,)),
    )


def describe_store(store: redis.Redis | LimitStore) -> str:
    """Where a store lives, for messages: host, port and db only (never user or password)."""
    return store.where if is_limit_store(store) else describe_client(store)


# --- keys ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Keys:
    """Every Redis key regbot uses, all under one prefix: no other module builds one."""

    prefix: str

    def _join(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def request_slots(self, host: str) -> str:
        return self._join("slots", "req", host)

    def heavy_slots(self) -> str:
        return self._join("slots", "heavy")

    def request_rate(self, host: str) -> str:
        return self._join("rate", host)

    def lock(self, name: str) -> str:
        return self._join("lock", name)

    def blob(self, repo_key: str, digest: str) -> str:
        return self._join("blob", repo_key, digest)

    def ratelimit(self, key: str) -> str:
        return self._join("ratelimit", key)

    def once(self, key: str) -> str:
        return self._join("once", key)

    def task_done(self, task_id: str) -> str:
        """Set once a task succeeded, so a redelivery of it does nothing."""
        return self.once(f"task-done:{task_id}")

    def copy_cancel(self, copy_id: str) -> str:
        """The stop signal of one copy's dispatched units."""
        return self._join("cancel", "copy", copy_id)

    def unit_events(self, listener: str) -> str:
        """Where transfer tasks tell one waiting process about their units."""
        return self._join("events", listener)

    def run_stream(self, run_id: str) -> str:
        """The log and progress stream of one `once` run on a cluster."""
        return self._join("run", run_id)

    def run_cancel(self, run_id: str) -> str:
        """Set when `once` asks the scripts of its run to stop."""
        return self._join("run", run_id, "cancel")

    def beat_last_run(self, script: str) -> str:
        """When the beat last sent a script (survives a beat restart)."""
        return self._join("beat", "last", script)


# --- public API ------------------------------------------------------------------------


@dataclass(frozen=True)
class BlobClaim:
    """The right to transfer one digest into one repository.

    `waited` is True when another holder had it first. `done` is True when the holder
    before it (on any node) ended well within CLAIM_DONE_TTL: it transferred the digest
    into the repository or found it there, so the blob is there now, no need to look.
    """

    repo_key: str
    digest: str
    waited: bool
    done: bool = False


class Limits:
    """Cluster-wide slots, rates, locks and claims on one store; safe to share between threads.

    `store` is a Redis client (a cluster: every node on the same Redis) or a LimitStore
    (`Limits.in_memory()`: an embedded run).

    `outage_limit` (seconds, default 0: none): taking a slot, a lock or a claim waits out a
    store that cannot be reached (a restart, a network cut) for up to this long, one line
    when it is lost and one when it is back, before it fails with LimitError. A worker
    node sets it (workers/context.py), so its transfers pause through an outage instead
    of failing; renewals, releases and reads never wait.
    """

    def __init__(
        self, store: redis.Redis | LimitStore, prefix: str = DEFAULT_PREFIX, *,
        lease: float = DEFAULT_LEASE, claim_ttl: float = DEFAULT_CLAIM_TTL,
        outage_limit: float = 0.0,
    ) -> None:
        if lease <= 0 or claim_ttl <= 0:
            raise ValueError("lease and claim_ttl must be positive")
        self.prefix = prefix
        self.keys = Keys(prefix)
        self.lease = lease
        self.claim_ttl = claim_ttl
        self.outage_limit = outage_limit
        self._redis = None if is_limit_store(store) else store
        self._ops: LimitStore = store if is_limit_store(store) else RedisStore(store)
        self._where = self._ops.where
        self.outage = StoreOutage(self._where)
        self._renewer = _Renewer(self.outage)
        self._wakeups = _Wakeups()
        self._gates = _LocalGates()
        # Whether no other Limits shares the store (in_memory): then a slot is only this
        # process's gate, with no token, lease or renewal in a store nobody else reads.
        self._sole_user = False

    @classmethod
    def in_memory(cls, **kwargs) -> Limits:
        """Limits of this process alone (embedded runs)."""
        limits = cls(MemoryStore(), **kwargs)
        limits._sole_user = True
        return limits

    def __repr__(self) -> str:
        return f"Limits(store={self._where!r}, prefix={self.prefix!r})"

    @property
    def store(self) -> redis.Redis:
        """The Redis client under these limits, for the cluster's other shared records
        (run streams, stop signals), always with keys from `keys`. LimitError when the
        limits are in memory (an embedded run has no cluster records)."""
        if self._redis is None:
            raise LimitError("limits kept in memory have no Redis (embedded run)")
        return self._redis

    @property
    def shared(self) -> bool:
        """Whether other processes see these limits (a Redis store)."""
        return self._redis is not None

    @property
    def where(self) -> str:
        """Where the store lives, for messages (never a password)."""
        return self._where

    # slots and rates

    @contextmanager
    def request_slot(
        self, host: str, concurrent: int, per_sec: float, timeout: float | None = None
    ) -> Iterator[None]:
        """Hold one of `concurrent` request slots for `host` (<= 0: no limit) and start no
        sooner than the shared `per_sec` pace allows (<= 0: any rate). The slot is taken
        first, so starts stay evenly spaced however long slots were queued for.
        Raises LimitTimeout when both cannot be had within `timeout` seconds."""
        deadline = _Deadline(timeout)
        key = self.keys.request_slots(host)
        with self._slot(key, concurrent, deadline, f"request slot for {host}"):
            if per_sec > 0:
                self._pace(host, per_sec, deadline)
            yield

    @contextmanager
    def heavy_slot(self, parallel: int, timeout: float | None = None) -> Iterator[None]:
        """Hold one of `parallel` cluster-wide slots for heavy work (image copies)."""
        with self._slot(self.keys.heavy_slots(), parallel, _Deadline(timeout), "heavy slot"):
            yield

    # locks and claims

    def lock(self, name: str, ttl: float) -> Lock:
        """A lock named `name` (a script name, say) whose lease lasts `ttl` seconds."""
        return Lock(self, self.keys.lock(name), name, ttl)

    @contextmanager
    def blob_claim(
        self, repo_key: str, digest: str, ttl: float | None = None, timeout: float | None = None
    ) -> Iterator[BlobClaim]:
        """One transfer of `digest` into `repo_key` at a time, cluster-wide. Blocks while
        another holder has it (until it releases or its lease lapses); the lease (`ttl`,
        default `claim_ttl`) is renewed while held. Raises LimitTimeout after `timeout`
        seconds of waiting. A claim whose body ended without an error stays marked done
        for CLAIM_DONE_TTL: the next claimant's `done` is True then, and it need not look
        at the target."""
        name = f"{repo_key}@{digest}"
        lock = Lock(self, self.keys.blob(repo_key, digest), name, ttl or self.claim_ttl)
        deadline = _Deadline(timeout)
        finished = False
        try:
            waited = not lock.acquire()
            if waited and not lock.acquire(blocking=True, timeout=deadline.remaining()):
                raise LimitTimeout(
                    f"blob claim {name}: another transfer still held it after {timeout:g}s"
                )
            lock.keep_alive()
            yield BlobClaim(repo_key, digest, waited, lock.after_done)
            finished = True
        finally:
            lock.release(done_for=CLAIM_DONE_TTL if finished else 0)

    def is_locked(self, name: str) -> bool:
        """Whether anyone holds the lock `name` now (a lapsed lease counts as free)."""
        return self._call(self._ops.exists, self.keys.lock(name))

    def once_per(self, key: str, ttl: float) -> bool:
        """True for the first caller only until `ttl` seconds pass (one beat fires a
        scheduled run, not two: key like "beat:<script>:<scheduled timestamp>")."""
        return bool(self._lock_acquire(self.keys.once(key), uuid.uuid4().hex, _ms(ttl)))

    # registry rate-limit headers

    def record_ratelimit(self, key: str, rl: RateLimit) -> None:
        """Keep the last RateLimit seen for `key` (a registry host) until its window resets."""
        ttl = rl.reset if rl.reset > 0 else RATELIMIT_TTL
        body = json.dumps(rl.to_dict(), separators=(",", ":"))
        self.put_record(self.keys.ratelimit(key), body, ttl)

    def put_record(self, key: str, body: str, ttl: float) -> None:
        """Keep `body` under `key` (from `keys`) for `ttl` seconds."""
        self._call(self._ops.set, key, body, max(1, math.ceil(ttl)))

    def get_record(self, key: str) -> bytes | None:
        """What `put_record` kept under `key`, None once it expired."""
        return self._call(self._ops.get, key)

    def stored_keys(self) -> list[str]:
        """Every key under this prefix that holds something now (tests, hygiene checks)."""
        return self._call(self._ops.keys, f"{self.prefix}:*")

    def last_ratelimit(self, key: str) -> RateLimit | None:
        raw = self.get_record(self.keys.ratelimit(key))
        if raw is None:
            return None
        try:
            return RateLimit.from_dict(json.loads(raw))
        except (ValueError, TypeError, AttributeError):
            log.warning("ignoring an unreadable rate limit record for %s", key)
            return None

    # internals shared by the pieces above

    def _call(self, fn: Callable, *args, **kwargs):
        """Run one store command or script; store failures become a one-line LimitError."""
        try:
            result = fn(*args, **kwargs)
        except StoreError as exc:
            raise LimitError(f"limits store {self._where}: {exc}") from exc
        self.outage.ok()
        return result

    def _riding(self, fn: Callable, *args):
        """`fn(*args)`, tried again while the store is unreachable, for up to
        `outage_limit` seconds of outage (then its LimitError is raised)."""
        while True:
            try:
                result = fn(*args)
            except LimitTimeout:
                raise
            except LimitError as exc:
                if not self.outage.wait_out(exc, self.outage_limit):
                    raise
                time.sleep(_OUTAGE_PAUSE)
                continue
            return result

    def _wait(self, attempt: Callable[[], bool], wake_key: str, deadline: _Deadline) -> bool:
        """Call `attempt` until it succeeds (True) or the deadline passes (False)."""
        delay = _POLL_MIN
        while not self._riding(attempt):
            remaining = deadline.remaining()
            if remaining is not None and remaining <= 0:
                return False
            pause = delay * random.uniform(0.5, 1.0)  # jitter: waiters don't poll in step
            if remaining is not None:
                pause = min(pause, remaining)
            self._wakeups.wait(wake_key, pause)
            delay = min(delay * 2, _POLL_MAX)
        return True

    @contextmanager
    def _slot(self, key: str, limit: int, deadline: _Deadline, what: str) -> Iterator[None]:
        if limit <= 0:
            yield
            return
        # At most `limit` threads of this process ask the store; the others wait here
        # without a round trip (a process never holds more than `limit` anyway).
        gate = self._gates.get(key, limit)
        remaining = deadline.remaining()
        entered, hold, orphans = gate.enter(None if remaining is None else max(0.0, remaining))
        for spare in orphans:
            self._give_back(spare)
        if not entered:
            raise LimitTimeout(f"{what}: all {limit} taken for {deadline.timeout:g}s")
        if self._sole_user:
            try:
                yield
            finally:
                gate.leave(None)
            return
        if hold is None:
            try:
                hold = self._take_store_slot(key, limit, deadline, what)
            except BaseException:
                gate.leave(None)
                raise
        try:
            yield
        finally:
            if not gate.leave(hold):
                self._give_back(hold)

    def _take_store_slot(self, key: str, limit: int, deadline: _Deadline,
                         what: str) -> _SlotHold:
        hold = _SlotHold(self, key, limit)
        try:
            acquired = self._wait(hold.try_acquire, key, deadline)
        except BaseException:
            hold.release()  # the script may have run before its reply was lost
            raise
        if not acquired:
            raise LimitTimeout(f"{what}: all {limit} taken for {deadline.timeout:g}s")
        hold.job = self._renewer.add(self.lease / 3, hold.renew)
        return hold

    def _give_back(self, hold: _SlotHold) -> None:
        if hold.job is not None:
            self._renewer.remove(hold.job)
        hold.release()

    def _pace(self, host: str, per_sec: float, deadline: _Deadline) -> None:
        interval_us = max(1, round(1_000_000 / per_sec))
        remaining = deadline.remaining()
        longest_us = -1 if remaining is None else max(0, int(remaining * 1_000_000))
        wait_us = self._riding(self._call, self._ops.rate_reserve,
                               self.keys.request_rate(host), interval_us, longest_us)
        if wait_us < 0:
            raise LimitTimeout(
                f"request rate for {host}: no start free within {deadline.timeout:g}s"
                f" at {per_sec:g}/s"
            )
        if wait_us:
            time.sleep(wait_us / 1_000_000)

    def _semaphore_acquire(self, key: str, token: str, limit: int) -> bool:
        return self._call(self._ops.semaphore_acquire, key, token, limit, _ms(self.lease))

    def _semaphore_release(self, key: str, token: str) -> None:
        try:
            self._call(self._ops.semaphore_release, key, token)
        except LimitError as exc:
            self.outage.note(exc)  # the slot frees itself within its lease
            log.debug("%s; the slot frees itself within %gs", exc, self.lease)
        self._wakeups.notify(key, one=True)

    def _lock_acquire(self, key: str, token: str, ttl_ms: int) -> int:
        """0: held by another; 1: ours; 2: ours, after a holder that finished its work."""
        return self._call(self._ops.lock_acquire, key, token, ttl_ms)

    def _lock_extend(self, key: str, token: str, ttl_ms: int) -> bool:
        return self._call(self._ops.lock_extend, key, token, ttl_ms)

    def _lock_release(self, key: str, token: str, done_ms: int = 0) -> None:
        self._call(self._ops.lock_release, key, token, done_ms)
        self._wakeups.notify(key)


class Lock:
    """A cluster-wide lock on one key, held by this object's owner token.

    Use one Lock object per holder. Acquiring a lock this object already holds just resets
    its ttl. `held` is this object's own view: acquired or extended, not released, and the
    lease it last set has not run out.
    """

    def __init__(self, limits: Limits, key: str, name: str, ttl: float) -> None:
        if ttl <= 0:
            raise ValueError("lock ttl must be positive")
        self.name = name
        self.ttl = ttl
        self._limits = limits
        self._key = key
        self._ttl_ms = _ms(ttl)
        self._token = uuid.uuid4().hex
        self._state = threading.Lock()
        self._held_until: float | None = None  # monotonic end of the lease we last set
        self._keep_alive_job: int | None = None
        # Taken from a holder that released it as done (release(done_for=...)) just now.
        self.after_done = False

    def __repr__(self) -> str:
        return f"Lock({self.name!r}, ttl={self.ttl:g}, held={self.held})"

    def __enter__(self) -> Lock:
        self.acquire(blocking=True)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    @property
    def held(self) -> bool:
        with self._state:
            return self._held_until is not None and time.monotonic() < self._held_until

    def acquire(self, blocking: bool = False, timeout: float | None = None) -> bool:
        """Take the lock; blocking waits until it is free, for at most `timeout` seconds
        (None: forever). Returns whether this object holds it now."""
        deadline = _Deadline(timeout if blocking else 0)
        return self._limits._wait(self._try_acquire, self._key, deadline)

    def extend(self) -> bool:
        """Reset the lease to `ttl` from now; False when the lock was lost meanwhile."""
        started = time.monotonic()
        ok = self._limits._lock_extend(self._key, self._token, self._ttl_ms)
        with self._state:
            self._held_until = started + self.ttl if ok else None
        return ok

    def release(self, done_for: float = 0) -> None:
        """Free the lock if this object still holds it; repeating it does nothing. With
        `done_for`, the next holder within that many seconds learns the work under it was
        done (`after_done`). A store failure is logged, not raised: the lease frees the
        lock within `ttl` anyway."""
        with self._state:
            job, self._keep_alive_job = self._keep_alive_job, None
            self._held_until = None
        if job is not None:
            self._limits._renewer.remove(job)
        try:
            self._limits._lock_release(self._key, self._token,
                                       _ms(done_for) if done_for > 0 else 0)
        except LimitError as exc:
            self._limits.outage.note(exc)  # the lock frees itself within its ttl
            log.debug("%s; lock %s frees itself within %gs", exc, self.name, self.ttl)

    def keep_alive(self) -> None:
        """After acquire: extend the lease every ttl/3 in a background thread until
        release(). If the lock is lost anyway (the store was unreachable for a whole ttl),
        renewal stops, `held` turns False and a warning is logged."""
        with self._state:
            if self._keep_alive_job is None:
                self._keep_alive_job = self._limits._renewer.add(self.ttl / 3, self._renew)

    def _try_acquire(self) -> bool:
        started = time.monotonic()  # the lease began no earlier than this
        got = self._limits._lock_acquire(self._key, self._token, self._ttl_ms)
        if not got:
            return False
        with self._state:
            self._held_until = started + self.ttl
            self.after_done = self.after_done or got == 2
        return True

    def _renew(self) -> bool:
        if self.extend():
            return True
        # The key is gone, not taken (the lease ran out during a store outage longer than
        # it, or the store restarted empty): the holder still works, so it takes the lock
        # back unless someone else has it by now.
        if self._try_acquire():
            log.warning("lock %s had lapsed in the store; taken again", self.name)
            return True
        with self._state:
            active, self._keep_alive_job = self._keep_alive_job is not None, None
        if active:
            log.warning("lock %s was lost before its lease could be renewed", self.name)
        return False


# --- helpers ---------------------------------------------------------------------------


class StoreOutage:
    """A process's view of its store being unreachable, shared by everything in it that
    uses the store (slots, locks, renewals, run streams, transfer events): the first
    failure of an outage is logged, and its end, once each, however many calls failed
    or waited meanwhile. Details of each failure go to the debug log."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.since: float | None = None  # monotonic start of the outage
        self._lock = threading.Lock()

    def note(self, exc: BaseException) -> float:
        """A call failed for the store; seconds the outage has lasted."""
        cause = " ".join(str(exc.__cause__ or exc).split()) or type(exc).__name__
        with self._lock:
            now = time.monotonic()
            if self.since is None:
                self.since = now
                log.warning("lost Redis at %s, waiting for it to come back: %s",
                            self.where, cause)
            else:
                log.debug("Redis at %s still unreachable: %s", self.where, cause)
            return now - self.since

    def wait_out(self, exc: BaseException, limit: float) -> bool:
        """Whether a call that failed should wait and try again (within `limit` s)."""
        return limit > 0 and self.note(exc) < limit

    def ok(self) -> None:
        """A call got through: the outage, if any, is over."""
        if self.since is None:  # the common case, without the lock
            return
        with self._lock:
            if self.since is not None:
                log.warning("Redis at %s is back after %.1fs", self.where,
                            time.monotonic() - self.since)
                self.since = None


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class _Deadline:
    """A point in monotonic time after `timeout` seconds (None: never)."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.at = None if timeout is None else time.monotonic() + max(0.0, timeout)

    def remaining(self) -> float | None:
        return None if self.at is None else self.at - time.monotonic()


class _LocalGates:
    """Per semaphore key and limit, the _Gate of this process's threads (made afresh in
    a forked child: a parent's thread may have been inside one at the fork)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._pid = os.getpid()
        self._gates: dict[tuple[str, int], _Gate] = {}

    def get(self, key: str, limit: int) -> _Gate:
        with self._guard:
            if self._pid != os.getpid():
                self._pid, self._gates = os.getpid(), {}
            gate = self._gates.get((key, limit))
            if gate is None:
                gate = self._gates[(key, limit)] = _Gate(limit)
            return gate


class _Gate:
    """This process's threads on one semaphore key: at most `limit` inside at once. A
    thread leaving while others of this process wait hands its store slot to the next
    one instead of giving it back (two store round trips saved per request: a mirror's
    requests to one registry come back to back), for HANDOFF_MAX seconds after the slot
    was taken from the store; then it goes back, and other nodes have their turn.

    A handed-over slot (a spare) only exists while a thread waits here: whoever enters
    next takes it, and when the last waiter gives up, the spares are returned as
    orphans for the caller to give back."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._cond = threading.Condition()
        self._inside = 0
        self._waiting = 0
        self._spares: list[_SlotHold] = []

    def enter(self, timeout: float | None) -> tuple[bool, _SlotHold | None, list[_SlotHold]]:
        """(entered, a spare slot to use if one was handed over, orphans to give back)."""
        with self._cond:
            entered = True
            if self._inside >= self._limit:
                self._waiting += 1
                try:
                    entered = self._cond.wait_for(lambda: self._inside < self._limit, timeout)
                finally:
                    self._waiting -= 1
            hold = None
            if entered:
                self._inside += 1
                hold = self._spares.pop() if self._spares else None
            orphans: list[_SlotHold] = []
            if self._spares and not self._waiting:
                orphans, self._spares = self._spares, []
            return entered, hold, orphans

    def leave(self, hold: _SlotHold | None) -> bool:
        """Leave; True when `hold` was handed over (kept in the store for the next)."""
        with self._cond:
            self._inside -= 1
            handed = hold is not None and self._waiting > 0 and hold.fresh()
            if handed:
                self._spares.append(hold)
            self._cond.notify()
            return handed


class _SlotHold:
    """One owner token's slot in a semaphore. Renewal and release are serialised so a
    renewal running late cannot put the token back after it was released."""

    def __init__(self, limits: Limits, key: str, limit: int) -> None:
        self._limits = limits
        self._key = key
        self._limit = limit
        self._token = uuid.uuid4().hex
        self._mutex = threading.Lock()
        self._released = False
        self._lost = False
        self.since = time.monotonic()  # when it was taken from the store
        self.job: int | None = None  # its renewal

    def try_acquire(self) -> bool:
        self.since = time.monotonic()
        return self._limits._semaphore_acquire(self._key, self._token, self._limit)

    def fresh(self) -> bool:
        """Whether another thread of this process may use it next (see _Gate)."""
        return not self._lost and time.monotonic() - self.since < HANDOFF_MAX

    def renew(self) -> bool:
        with self._mutex:
            if self._released:
                return False
            if self._limits._semaphore_acquire(self._key, self._token, self._limit):
                return True
            self._lost = True
        log.warning("lost a slot of %s: its lease ran out before renewal", self._key)
        return False

    def release(self) -> None:
        with self._mutex:
            self._released = True
            self._limits._semaphore_release(self._key, self._token)


class _Wakeups:
    """Lets a release made in this process wake this process's waiters on the same key
    at once; waiters in other processes find out by polling."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._waiters: dict[str, list[threading.Event]] = {}

    def wait(self, key: str, timeout: float) -> None:
        event = threading.Event()
        with self._guard:
            self._waiters.setdefault(key, []).append(event)
        try:
            event.wait(timeout)
        finally:
            with self._guard:
                events = self._waiters[key]
                events.remove(event)
                if not events:
                    del self._waiters[key]

    def notify(self, key: str, *, one: bool = False) -> None:
        """Wake the waiters on `key`; with `one`, only the longest waiting one not woken
        yet (a freed slot admits one: waking them all makes all but one retry for nothing)."""
        with self._guard:
            for event in self._waiters.get(key, ()):
                if one and event.is_set():
                    continue
                event.set()
                if one:
                    return


@dataclass
class _Job:
    due: float
    interval: float
    renew: Callable[[], bool]  # False: stop renewing


class _Renewer:
    """One daemon thread per Limits that renews every lease this process holds; it runs
    only while there is something to renew."""

    def __init__(self, outage: StoreOutage) -> None:
        self._outage = outage
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._jobs: dict[int, _Job] = {}
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        # When the thread will look again on its own: an added job due later than that
        # needs no wake-up (most leases are released long before their first renewal).
        self._wakes_at = 0.0

    def add(self, interval: float, renew: Callable[[], bool]) -> int:
        if self._pid != os.getpid():
            self._reset()  # forked: the parent's thread and leases stay with the parent
        with self._cond:
            job = next(self._ids)
            due = time.monotonic() + interval
            self._jobs[job] = _Job(due, interval, renew)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="regbot-lease-renewer", daemon=True
                )
                self._thread.start()
            elif due < self._wakes_at:
                self._cond.notify()
            return job

    def remove(self, job: int) -> None:
        with self._cond:
            self._jobs.pop(job, None)

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if not self._jobs:
                        # Linger a while: starting a thread per short request is costly.
                        self._wakes_at = time.monotonic() + RENEWER_IDLE_EXIT
                        if not self._cond.wait(RENEWER_IDLE_EXIT) and not self._jobs:
                            self._thread = None
                            return
                        continue
                    now = time.monotonic()
                    due = [(job_id, job) for job_id, job in self._jobs.items() if job.due <= now]
                    if due:
                        break
                    self._wakes_at = min(job.due for job in self._jobs.values())
                    self._cond.wait(self._wakes_at - now)
                for _, job in due:
                    job.due = now + job.interval
            for job_id, job in due:
                try:
                    keep = job.renew()
                except LimitError as exc:  # the store is away: try again next round
                    self._outage.note(exc)
                    keep = True
                except Exception as exc:
                    log.warning("renewing a lease failed, retrying in %.1fs: %s", job.interval, exc)
                    keep = True
                if not keep:
                    self.remove(job_id)
