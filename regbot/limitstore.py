"""Where the limits live: Redis for a cluster, process memory for an embedded run.

regbot/limits.py says what is limited (slots, rates, locks, claims, waiting, renewal);
this module keeps the few atomic operations those need, in two stores with one contract:

- `RedisStore`: each operation is one Lua script or one command, so every process of a
  cluster agrees; times come from the server (TIME), so skewed clocks do not matter.
- `MemoryStore`: the same operations on dicts under one lock, with the monotonic clock.
  An embedded run has one process, so nothing needs to travel: a request slot costs a few
  microseconds instead of a Lua evaluation.

tests/test_limits.py runs every Limits behaviour against real redis-server, fakeredis and
the memory store alike.
"""

from __future__ import annotations

import fnmatch
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import redis  # imported by RedisStore itself: an embedded run never loads it

SEMAPHORE_ACQUIRE = """
-- KEYS[1]: semaphore, a sorted set of owner tokens scored by lease expiry (ms, server clock)
-- ARGV[1]: owner token  ARGV[2]: slot limit  ARGV[3]: lease in ms
-- Drops expired leases, then takes a slot if fewer than ARGV[2] are held. A token that
-- already holds a slot just gets a fresh lease (this is also the renewal).
-- Returns 1 when the token holds a slot, 0 when all slots are taken.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1])
    and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
if redis.call('PTTL', KEYS[1]) < lease then
  redis.call('PEXPIRE', KEYS[1], lease)
end
return 1
"""

RATE_RESERVE = """
-- KEYS[1]: theoretical arrival time of the next request (GCRA, µs, server clock)
-- ARGV[1]: emission interval in µs (1e6 / requests per second)
-- ARGV[2]: longest acceptable wait in µs, -1 for any
-- Reserves the next start time, one interval after the previous one (no burst), and
-- returns the µs to wait before starting (0: now). Returns -1 and reserves nothing when
-- the wait would exceed ARGV[2].
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then
  tat = now
end
local wait = tat - now
local longest = tonumber(ARGV[2])
if longest >= 0 and wait > longest then
  return -1
end
local after = tat + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%d', after),
           'PX', math.floor((after - now) / 1000) + 1000)
return wait
"""

LOCK_ACQUIRE = """
-- KEYS[1]: lock key  ARGV[1]: owner token  ARGV[2]: ttl in ms
-- Takes a free lock; a lock the token already holds gets its ttl reset.
-- Returns 1 when the token holds the lock, 2 when it took it from a holder that left it
-- marked done (see LOCK_RELEASE), else 0.
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if holder and holder ~= 'done' then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if holder then
  return 2
end
return 1
"""

LOCK_EXTEND = """
-- KEYS[1]: lock key  ARGV[1]: owner token  ARGV[2]: ttl in ms
-- Extend-to: the lease ends ARGV[2] ms from now, only while the token still holds it.
-- Returns 1 when extended, 0 when the lock is gone or held by another token.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

LOCK_RELEASE = """
-- KEYS[1]: lock key  ARGV[1]: owner token  ARGV[2]: ms to leave it marked done (0: none)
-- Frees the lock only while the token holds it: deleted, or marked 'done' for ARGV[2] ms
-- (free to take, and the next holder learns that work under it just finished).
-- Returns 1 when freed, else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if tonumber(ARGV[2] or '0') > 0 then
    redis.call('SET', KEYS[1], 'done', 'PX', ARGV[2])
    return 1
  end
  return redis.call('DEL', KEYS[1])
end
return 0
"""


_DONE = b"done"  # what a lock released as done holds (LOCK_RELEASE)


class StoreError(Exception):
    """The store could not be reached or refused an operation (one line, no password)."""


class LimitStore(Protocol):
    """The atomic operations Limits is built on. Times are milliseconds of lease or ttl;
    `rate_reserve` works in microseconds. Store failures raise StoreError."""

    where: str  # for messages: never a password

    def semaphore_acquire(self, key: str, token: str, limit: int, lease_ms: int) -> bool: ...

    def semaphore_release(self, key: str, token: str) -> None: ...

    def rate_reserve(self, key: str, interval_us: int, longest_us: int) -> int: ...

    def lock_acquire(self, key: str, token: str, ttl_ms: int) -> int:
        """1: the token holds the lock; 2: it does, taken from a holder that left it
        marked done; 0: someone else holds it."""

    def lock_extend(self, key: str, token: str, ttl_ms: int) -> bool: ...

    def lock_release(self, key: str, token: str, done_ms: int = 0) -> None:
        """Free the token's lock; with `done_ms`, leave it marked done that long."""

    def set(self, key: str, value: str, ttl_s: int) -> None: ...

    def get(self, key: str) -> bytes | None: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...

    def ttl(self, key: str) -> float | None:
        """Seconds before `key` expires; None when it does not exist."""

    def keys(self, pattern: str) -> list[str]: ...


class RedisStore:
    """The operations as Lua scripts and commands of one Redis (or fakeredis) client."""

    def __init__(self, client: redis.Redis) -> None:
        import redis

        self.client = client
        self.where = describe_client(client)
        self._errors = redis.RedisError
        self._semaphore = client.register_script(SEMAPHORE_ACQUIRE)
        self._rate = client.register_script(RATE_RESERVE)
        self._acquire = client.register_script(LOCK_ACQUIRE)
        self._extend = client.register_script(LOCK_EXTEND)
        self._release = client.register_script(LOCK_RELEASE)

    def _do(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except self._errors as exc:
            raise StoreError(" ".join(str(exc).split()) or type(exc).__name__) from exc

    def semaphore_acquire(self, key: str, token: str, limit: int, lease_ms: int) -> bool:
        return self._do(self._semaphore, keys=[key], args=[token, limit, lease_ms]) == 1

    def semaphore_release(self, key: str, token: str) -> None:
        self._do(self.client.zrem, key, token)

    def rate_reserve(self, key: str, interval_us: int, longest_us: int) -> int:
        return int(self._do(self._rate, keys=[key], args=[interval_us, longest_us]))

    def lock_acquire(self, key: str, token: str, ttl_ms: int) -> int:
        return int(self._do(self._acquire, keys=[key], args=[token, ttl_ms]))

    def lock_extend(self, key: str, token: str, ttl_ms: int) -> bool:
        return self._do(self._extend, keys=[key], args=[token, ttl_ms]) == 1

    def lock_release(self, key: str, token: str, done_ms: int = 0) -> None:
        self._do(self._release, keys=[key], args=[token, done_ms])

    def set(self, key: str, value: str, ttl_s: int) -> None:
        self._do(self.client.set, key, value, ex=ttl_s)

    def get(self, key: str) -> bytes | None:
        return self._do(self.client.get, key)

    def exists(self, key: str) -> bool:
        return bool(self._do(self.client.exists, key))

    def delete(self, key: str) -> None:
        self._do(self.client.delete, key)

    def ttl(self, key: str) -> float | None:
        left = self._do(self.client.pttl, key)
        if left == -2:
            return None
        return float("inf") if left == -1 else left / 1000

    def keys(self, pattern: str) -> list[str]:
        found = self._do(lambda: list(self.client.scan_iter(match=pattern)))
        return sorted(k.decode() if isinstance(k, bytes) else k for k in found)


def is_limit_store(value: object) -> bool:
    """A LimitStore (else a Redis client to wrap in a RedisStore)."""
    return hasattr(value, "semaphore_acquire")


class MemoryStore:
    """The operations on dicts of this process, under one lock; expired entries are
    dropped when next looked at (and swept now and then, so memory stays flat)."""

    where = "embedded"
    _SWEEP_EVERY = 1024  # writes between two sweeps of expired entries

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._guard = threading.Lock()
        self._semaphores: dict[str, dict[str, float]] = {}  # key -> token -> expiry (s)
        self._values: dict[str, tuple[bytes, float]] = {}  # key -> (value, expiry)
        self._writes = 0

    def semaphore_acquire(self, key: str, token: str, limit: int, lease_ms: int) -> bool:
        now = self._clock()
        with self._guard:
            holders = self._semaphores.setdefault(key, {})
            for held, expiry in list(holders.items()):
                if expiry <= now:
                    del holders[held]
            if token not in holders and len(holders) >= limit:
                return False
            holders[token] = now + lease_ms / 1000
            return True

    def semaphore_release(self, key: str, token: str) -> None:
        with self._guard:
            holders = self._semaphores.get(key)
            if holders is not None:
                holders.pop(token, None)
                if not holders:
                    del self._semaphores[key]

    def rate_reserve(self, key: str, interval_us: int, longest_us: int) -> int:
        now_us = int(self._clock() * 1_000_000)
        with self._guard:
            raw = self._live(key, now_us / 1_000_000)
            tat = max(int(raw) if raw is not None else now_us, now_us)
            wait = tat - now_us
            if longest_us >= 0 and wait > longest_us:
                return -1
            after = tat + interval_us
            self._put(key, str(after).encode(), (after - now_us) / 1_000_000 + 1.0)
            return wait

    def lock_acquire(self, key: str, token: str, ttl_ms: int) -> int:
        now = self._clock()
        value = token.encode()
        with self._guard:
            holder = self._live(key, now)
            if holder is not None and holder not in (value, _DONE):
                return 0
            self._put(key, value, ttl_ms / 1000)
            return 2 if holder == _DONE else 1

    def lock_extend(self, key: str, token: str, ttl_ms: int) -> bool:
        now = self._clock()
        with self._guard:
            if self._live(key, now) != token.encode():
                return False
            self._put(key, token.encode(), ttl_ms / 1000)
            return True

    def lock_release(self, key: str, token: str, done_ms: int = 0) -> None:
        now = self._clock()
        with self._guard:
            if self._live(key, now) == token.encode():
                if done_ms > 0:
                    self._put(key, _DONE, done_ms / 1000)
                else:
                    del self._values[key]

    def set(self, key: str, value: str, ttl_s: int) -> None:
        with self._guard:
            self._put(key, value.encode(), float(ttl_s))

    def get(self, key: str) -> bytes | None:
        now = self._clock()
        with self._guard:
            return self._live(key, now)

    def exists(self, key: str) -> bool:
        return self.get(key) is not None or bool(self._semaphores.get(key))

    def delete(self, key: str) -> None:
        with self._guard:
            self._values.pop(key, None)
            self._semaphores.pop(key, None)

    def ttl(self, key: str) -> float | None:
        now = self._clock()
        with self._guard:
            if self._live(key, now) is not None:
                return self._values[key][1] - now
            holders = {t: e for t, e in self._semaphores.get(key, {}).items() if e > now}
            return max(holders.values()) - now if holders else None

    def keys(self, pattern: str) -> list[str]:
        now = self._clock()
        with self._guard:
            self._sweep(now)
            names = [k for k, holders in self._semaphores.items() if holders]
            names += list(self._values)
        return sorted(k for k in names if fnmatch.fnmatchcase(k, pattern))

    # --- inside the guard ---

    def _live(self, key: str, now: float) -> bytes | None:
        entry = self._values.get(key)
        if entry is None:
            return None
        if entry[1] <= now:
            del self._values[key]
            return None
        return entry[0]

    def _put(self, key: str, value: bytes, ttl: float) -> None:
        now = self._clock()
        self._values[key] = (value, now + ttl)
        self._writes += 1
        if self._writes % self._SWEEP_EVERY == 0:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        for key in [k for k, (_, expiry) in self._values.items() if expiry <= now]:
            del self._values[key]
        for key, holders in list(self._semaphores.items()):
            for token in [t for t, expiry in holders.items() if expiry <= now]:
                del holders[token]
            if not holders:
                del self._semaphores[key]


def describe_client(client: redis.Redis) -> str:
    """Where a Redis client points: host, port and db only (never user or password)."""
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", {}) or {}
    if "server" in kwargs:
        return "embedded"
    if kwargs.get("path"):
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
