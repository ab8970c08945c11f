"""regbot/limits.py on fakeredis (fresh server per test) and on a real redis-server."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import signal
import threading
import time
import uuid

import fakeredis
import pytest
import redis

from regbot.config import parse_config
from regbot.engine import Engine
from regbot.errors import LimitError, LimitTimeout, RegbotError
from regbot.limits import CLAIM_DONE_TTL, Limits, store_from_url
from regbot.limitstore import MemoryStore, RedisStore
from regbot.types.ratelimit import RateLimit
from tests.support.registry import free_port
from tests.support.relay import TcpRelay

DIGEST = "sha256:" + "ab" * 32
HOST = "registry.example.com:5000"


# --- fixtures --------------------------------------------------------------------------


@pytest.fixture(params=["memory", "fakeredis", "redis-server"])
def store(request):
    """What Limits is built on: the embedded memory store, a fresh fakeredis server, or
    the session's real redis-server. Every behaviour below holds on all three."""
    if request.param == "memory":
        yield MemoryStore()
        return
    if request.param == "fakeredis":
        client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    else:
        client = store_from_url(request.getfixturevalue("redis_server").url)
    yield client
    client.close()


@pytest.fixture
def ops(store):
    """The store's atomic operations, the same interface for all three stores."""
    return store if isinstance(store, MemoryStore) else RedisStore(store)


@pytest.fixture
def prefix(ops):
    """A prefix of this test's own; its keys are deleted afterwards (the real server is shared)."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    yield name
    for key in ops.keys(f"{name}:*"):
        ops.delete(key)


@pytest.fixture
def limits(store, prefix):
    return Limits(store, prefix, lease=2.0)


def run_threads(target, count: int, *args) -> None:
    """Run `target(i, *args)` in `count` threads; re-raise the first failure."""
    errors: list[BaseException] = []

    def wrapped(i):
        try:
            target(i, *args)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "threads hung"
    if errors:
        raise errors[0]


class Occupancy:
    """Counts holders inside a section and remembers the most seen at once."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self.inside = 0
        self.most = 0
        self.entries = 0

    def __enter__(self):
        with self._guard:
            self.inside += 1
            self.entries += 1
            self.most = max(self.most, self.inside)

    def __exit__(self, *exc):
        with self._guard:
            self.inside -= 1


# --- stores ----------------------------------------------------------------------------


def test_in_memory_limits_belong_to_one_engine():
    first, second = Limits.in_memory(), Limits.in_memory()
    assert repr(first).startswith("Limits(store='embedded'") and not first.shared
    assert first.once_per("k", 5) and not first.once_per("k", 5)
    assert second.once_per("k", 5)  # nothing leaks from one in-memory store to another
    with pytest.raises(LimitError, match="in memory"):
        _ = first.store  # no cluster records without Redis
    config = parse_config("version: 1\nscripts: []\n")
    assert Engine.embedded(config).limits.shared is False


def test_in_memory_slots_hold_their_limit_within_the_process():
    """An embedded engine's slots are the process's own gate (no store round trip): the
    same limit, time-out, release on error and per-host count as the shared ones."""
    limits = Limits.in_memory()
    seen = Occupancy()

    def worker(i):
        with limits.request_slot(HOST, 2, 0, timeout=5), seen:
            time.sleep(0.05)

    run_threads(worker, 8)
    assert seen.most == 2 and seen.entries == 8
    with limits.request_slot(HOST, 1, 0):
        with pytest.raises(LimitTimeout, match=r"request slot for .*0\.2s"), \
                limits.request_slot(HOST, 1, 0, timeout=0.2):
            pytest.fail("entered a full slot")
        with limits.request_slot("other.example", 1, 0, timeout=0.2):
            pass  # counted per host
    with pytest.raises(RuntimeError), limits.heavy_slot(1):
        raise RuntimeError("copy failed")
    with limits.heavy_slot(1, timeout=0.2):
        pass  # given back when the body raised


class CountingStore(MemoryStore):
    """A shared memory store that counts the slot round trips its Limits make."""

    def __init__(self) -> None:
        super().__init__()
        self.acquires = 0

    def semaphore_acquire(self, key, token, limit, lease_ms):
        self.acquires += 1
        return super().semaphore_acquire(key, token, limit, lease_ms)


def test_a_process_hands_its_slots_on_between_its_threads():
    """Back-to-back requests of many threads of one node: a slot goes from one thread to
    the next without a store round trip (for HANDOFF_MAX), never more than the limit in
    use, and every slot is back in the store once they are done."""
    store = CountingStore()
    node, other_node = Limits(store, "t"), Limits(store, "t")
    seen = Occupancy()

    def worker(i):
        for _ in range(20):
            with node.request_slot(HOST, 3, 0, timeout=10), seen:
                time.sleep(0.001)

    run_threads(worker, 8)
    assert seen.most == 3 and seen.entries == 160
    assert store.acquires < 80  # 160 without handing on
    # nothing kept: another node takes all three at once
    with other_node.request_slot(HOST, 3, 0, timeout=0.2), \
            other_node.request_slot(HOST, 3, 0, timeout=0.2), \
            other_node.request_slot(HOST, 3, 0, timeout=0.2):
        pass


def test_a_slot_handed_on_goes_back_to_the_store_after_handoff_max():
    """Endless back-to-back demand on one node: each slot still goes back to the store
    (a chance for other nodes) about every HANDOFF_MAX, and never more than the limit
    is in use."""
    from regbot.limits import HANDOFF_MAX

    store = CountingStore()
    busy = Limits(store, "t")
    seen = Occupancy()
    stop = threading.Event()

    def hog(i):
        while not stop.is_set():
            with busy.request_slot(HOST, 2, 0, timeout=10), seen:
                time.sleep(0.002)

    threads = [threading.Thread(target=hog, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(5)
    assert seen.most <= 2
    # 2 slots for 1 s: taken from the store at least every HANDOFF_MAX (+ a request)
    assert 2 * (1.0 / (HANDOFF_MAX + 0.05)) <= store.acquires < seen.entries / 4


def test_a_slot_handed_to_a_waiter_that_gave_up_goes_back_to_the_store():
    store = MemoryStore()
    node, other = Limits(store, "t"), Limits(store, "t")
    holding, waiter_gave_up = threading.Event(), threading.Event()

    def holder():
        with node.request_slot(HOST, 1, 0):
            holding.set()
            waiter_gave_up.wait(5)  # leaves while... the waiter is already gone

    def waiter():
        assert holding.wait(5)
        with pytest.raises(LimitTimeout), node.request_slot(HOST, 1, 0, timeout=0.2):
            pytest.fail("entered a full slot")
        waiter_gave_up.set()

    run_threads(lambda i: (holder if i == 0 else waiter)(), 2)
    with other.request_slot(HOST, 1, 0, timeout=0.5):
        pass  # the store has it back


def test_store_from_url_settings(redis_server):
    client = store_from_url(redis_server.url, retries=4)
    try:
        kwargs = client.connection_pool.connection_kwargs
        # a silent connection is noticed within seconds (regbot/limits.py SOCKET_TIMEOUT)
        assert kwargs["socket_timeout"] == 5
        assert kwargs["socket_connect_timeout"] == 5
        assert kwargs["socket_keepalive"] is True
        assert kwargs["health_check_interval"] == 10
        assert client.get_retry().get_retries() == 4
        assert client.ping()
    finally:
        client.close()


def test_unreachable_store_is_one_line_limit_error_without_password():
    port = free_port()  # nothing listens there
    client = store_from_url(f"redis://bob:hunter2@127.0.0.1:{port}/3", retries=1)
    limits = Limits(client, "t")
    for action in (
        lambda: limits.once_per("x", 1),
        lambda: limits.lock("script", 5).acquire(),
        lambda: limits.request_slot("h", 1, 0).__enter__(),
        lambda: limits.last_ratelimit("h"),
    ):
        with pytest.raises(LimitError) as info:
            action()
        message = str(info.value)
        assert isinstance(info.value, RegbotError)
        assert f"127.0.0.1:{port}/3" in message
        assert "hunter2" not in message and "bob" not in message
        assert "\n" not in message
    assert "hunter2" not in repr(limits)


def test_a_silent_connection_times_out_and_the_next_call_reconnects(redis_server):
    """Through a relay that cuts the network (no RST, no FIN): a call fails with a
    timeout instead of hanging, and once the cut is over a new connection is made."""
    relay = TcpRelay(redis_server.port)
    client = store_from_url(relay.url("redis", "/0"), retries=1)
    try:
        assert client.ping()
        relay.cut()
        with pytest.raises(redis.TimeoutError):
            client.ping()
        relay.restore()
        assert client.ping()
    finally:
        client.close()
        relay.stop()


def test_slots_and_locks_wait_out_a_store_outage_in_one_line_each_way(redis_server, caplog):
    relay = TcpRelay(redis_server.port)
    client = store_from_url(relay.url("redis", "/0"), retries=1)
    limits = Limits(client, f"t-{uuid.uuid4().hex[:8]}", outage_limit=60)
    got: list[str] = []

    def take() -> None:
        with limits.request_slot("h", 2, 0):
            got.append("slot")
        lock = limits.lock("script", 5)
        if lock.acquire():
            got.append("lock")
            lock.release()

    try:
        relay.cut()
        threads = [threading.Thread(target=take) for _ in range(2)]
        with caplog.at_level("WARNING", logger="regbot.limits"):
            for thread in threads:
                thread.start()
            while limits.outage.since is None:  # both are waiting for the store now
                time.sleep(0.05)
            assert not got
            relay.restore()
            for thread in threads:
                thread.join(timeout=60)
        # both slots taken; the lock by one thread at least (the other may find it held)
        assert got.count("slot") == 2 and got.count("lock") >= 1, got
        lines = [r.getMessage() for r in caplog.records]
        assert len([m for m in lines if m.startswith("lost Redis at")]) == 1, lines
        assert len([m for m in lines if " is back after " in m]) == 1, lines
        assert limits.stored_keys() == []  # nothing held is left behind
    finally:
        client.close()
        relay.stop()


def test_without_an_outage_limit_a_store_outage_fails_at_once(redis_server):
    relay = TcpRelay(redis_server.port)
    client = store_from_url(relay.url("redis", "/0"), retries=1)
    limits = Limits(client, f"t-{uuid.uuid4().hex[:8]}")
    try:
        relay.cut()
        with pytest.raises(LimitError, match="Timeout"):
            limits.lock("script", 5).acquire()
    finally:
        relay.restore()
        client.close()
        relay.stop()


# --- request and heavy slots -----------------------------------------------------------


@pytest.mark.parametrize("kind", ["request", "heavy"])
def test_semaphore_never_exceeds_limit_under_threads(limits, kind):
    occupancy = Occupancy()

    def slot():
        if kind == "request":
            return limits.request_slot(HOST, 3, 0)
        return limits.heavy_slot(3)

    def worker(i):
        for _ in range(5):
            with slot(), occupancy:
                time.sleep(0.01)

    run_threads(worker, 16)
    assert occupancy.entries == 80
    assert occupancy.most == 3  # never more, and the limit is actually used


def test_slots_are_counted_per_host(limits):
    with (
        limits.request_slot("a.example", 1, 0),
        limits.request_slot("b.example", 1, 0, timeout=0.5),
        pytest.raises(LimitTimeout),
        limits.request_slot("a.example", 1, 0, timeout=0.1),
    ):
        pytest.fail("entered a full semaphore")


def test_zero_concurrency_means_no_limit(limits):
    all_inside = threading.Barrier(6)

    def worker(i):
        with limits.request_slot(HOST, 0, 0):
            all_inside.wait(5)  # breaks (and fails the test) unless all six get in at once

    run_threads(worker, 6)


def test_slot_wait_times_out_with_clear_error(limits):
    with limits.request_slot(HOST, 1, 0):
        started = time.monotonic()
        with pytest.raises(LimitTimeout) as info, limits.request_slot(HOST, 1, 0, timeout=0.3):
            pytest.fail("entered a full semaphore")
        assert 0.25 <= time.monotonic() - started < 2
        assert HOST in str(info.value) and "0.3s" in str(info.value)
    with limits.request_slot(HOST, 1, 0, timeout=0.5):
        pass  # freed on exit


def test_waiter_enters_when_holder_leaves(limits):
    entered = threading.Event()
    release = threading.Event()

    def holder():
        with limits.heavy_slot(1):
            entered.set()
            release.wait(5)

    t = threading.Thread(target=holder)
    t.start()
    assert entered.wait(5)
    threading.Timer(0.3, release.set).start()
    started = time.monotonic()
    with limits.heavy_slot(1, timeout=5):
        waited = time.monotonic() - started
    t.join()
    assert 0.25 <= waited < 2


def test_dead_holders_lease_expires(store, prefix):
    limits = Limits(store, prefix, lease=0.3)
    # A holder that died: it took the only slot and will never renew or release it.
    assert limits._semaphore_acquire(limits.keys.request_slots(HOST), "dead-holder", 1)
    with pytest.raises(LimitTimeout), limits.request_slot(HOST, 1, 0, timeout=0.1):
        pass
    started = time.monotonic()
    with limits.request_slot(HOST, 1, 0, timeout=3):
        assert time.monotonic() - started < 1.5


def test_long_hold_is_renewed(store, prefix):
    limits = Limits(store, prefix, lease=0.3)
    inside = threading.Event()

    def long_request():
        with limits.request_slot(HOST, 1, 0):
            inside.set()
            time.sleep(0.9)  # three leases: only renewal keeps the slot

    t = threading.Thread(target=long_request)
    t.start()
    assert inside.wait(5)
    other = Limits(store, prefix, lease=0.3)  # no in-process wake-ups: it polls
    with pytest.raises(LimitTimeout), other.request_slot(HOST, 1, 0, timeout=0.6):
        pass
    t.join()
    with other.request_slot(HOST, 1, 0, timeout=1):
        pass


def test_slot_released_when_body_raises(limits):
    with pytest.raises(KeyError), limits.request_slot(HOST, 1, 0):
        raise KeyError("boom")
    with limits.request_slot(HOST, 1, 0, timeout=0.2):
        pass


# --- request rate ----------------------------------------------------------------------


def test_rate_spaces_requests_across_threads(limits):
    starts: list[float] = []
    guard = threading.Lock()

    def worker(i):
        for _ in range(3):
            with limits.request_slot(HOST, 0, 40), guard:
                starts.append(time.monotonic())

    began = time.monotonic()
    run_threads(worker, 6)
    starts.sort()
    assert len(starts) == 18
    # 18 starts at 40/s take about 17 * 0.025 s; allow slack both ways.
    assert starts[-1] - starts[0] >= 17 / 40 * 0.8
    assert time.monotonic() - began < 5
    # smooth, not bursty: any 0.25 s holds about 10 starts
    for i, first in enumerate(starts):
        in_window = sum(1 for s in starts[i:] if s - first < 0.25)
        assert in_window <= 13


def test_rate_and_slots_together(limits):
    occupancy = Occupancy()
    starts: list[float] = []

    def worker(i):
        for _ in range(3):
            with limits.request_slot(HOST, 2, 40), occupancy:
                starts.append(time.monotonic())
                time.sleep(0.02)

    run_threads(worker, 5)
    starts.sort()
    assert occupancy.most <= 2
    assert starts[-1] - starts[0] >= 14 / 40 * 0.8


def test_zero_rate_means_unlimited(limits):
    started = time.monotonic()
    for _ in range(100):
        with limits.request_slot(HOST, 1, 0):
            pass
    assert time.monotonic() - started < 2


def test_rate_timeout_reserves_nothing(limits):
    with limits.request_slot(HOST, 5, 2.5):  # one start each 0.4 s
        pass
    first = time.monotonic()
    with pytest.raises(LimitTimeout) as info, limits.request_slot(HOST, 5, 2.5, timeout=0.1):
        pass
    assert time.monotonic() - first < 0.2  # gave up at once: the wait exceeded the deadline
    assert HOST in str(info.value)
    with limits.request_slot(HOST, 5, 2.5, timeout=2):
        third = time.monotonic()
    # the timed-out call took no turn: the next one came a single interval after the first
    assert 0.25 <= third - first < 0.75


# --- locks -----------------------------------------------------------------------------


def test_lock_is_exclusive(limits):
    a, b = limits.lock("sync-images", 5), limits.lock("sync-images", 5)
    assert a.acquire()
    assert a.held
    assert not b.acquire()
    assert not b.held
    assert limits.lock("other-script", 5).acquire()
    a.release()
    assert not a.held
    assert b.acquire()
    b.release()


def test_lock_exclusive_under_threads(limits):
    occupancy = Occupancy()

    def worker(i):
        for _ in range(3):
            with limits.lock("shared", 5), occupancy:
                time.sleep(0.005)

    run_threads(worker, 8)
    assert occupancy.entries == 24
    assert occupancy.most == 1


def test_lock_ttl_expires(limits):
    a, b = limits.lock("job", 0.3), limits.lock("job", 0.3)
    assert a.acquire()
    assert not b.acquire()
    time.sleep(0.45)
    assert not a.held  # its own view follows the lease
    assert b.acquire()


def test_release_is_owner_only_and_idempotent(limits):
    a, b = limits.lock("job", 0.2), limits.lock("job", 5)
    assert a.acquire()
    time.sleep(0.3)  # a's lease ran out
    assert b.acquire()
    a.release()  # must not free b's lock
    a.release()
    assert b.held
    assert not limits.lock("job", 5).acquire()
    b.release()
    b.release()
    assert limits.lock("job", 5).acquire()


def test_extend(limits):
    a, b = limits.lock("job", 0.4), limits.lock("job", 0.4)
    assert a.acquire()
    time.sleep(0.25)
    assert a.extend()
    time.sleep(0.25)  # past the first lease, within the extended one
    assert a.held
    assert not b.acquire()
    time.sleep(0.3)
    assert not a.held
    assert b.acquire()
    assert not a.extend()  # lost: extending someone else's lock fails
    assert not a.held
    assert b.extend()


def test_blocking_acquire(limits):
    a, b = limits.lock("job", 5), limits.lock("job", 5)
    assert a.acquire()
    started = time.monotonic()
    assert not b.acquire(blocking=True, timeout=0.3)
    assert 0.25 <= time.monotonic() - started < 2
    threading.Timer(0.2, a.release).start()
    assert b.acquire(blocking=True, timeout=5)
    b.release()


def test_keep_alive(limits, monkeypatch):
    monkeypatch.setattr("regbot.limits.RENEWER_IDLE_EXIT", 0.2)
    a, b = limits.lock("beat", 0.2), limits.lock("beat", 0.2)
    assert a.acquire()
    a.keep_alive()
    a.keep_alive()  # once is enough; twice is harmless
    time.sleep(0.7)  # three ttls
    assert a.held
    assert not b.acquire()
    a.release()
    assert b.acquire()
    # renewal stopped with the release: b keeps the lock it now has
    time.sleep(0.1)
    assert not a.held
    deadline = time.monotonic() + 2
    while limits._renewer._thread is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert limits._renewer._thread is None  # the idle renewer thread exits after a while


def test_keep_alive_stops_when_lock_lost(limits, ops):
    a = limits.lock("beat", 0.3)
    assert a.acquire()
    a.keep_alive()
    ops.delete(limits.keys.lock("beat"))  # e.g. an operator cleared it
    assert limits.lock("beat", 5).acquire()
    time.sleep(0.3)
    assert not a.held


def test_lock_repr_and_context_manager(limits):
    lock = limits.lock("nightly", 5)
    with lock:
        assert lock.held
        assert "nightly" in repr(lock) and lock._token not in repr(lock)
    assert not lock.held


# --- blob claims -----------------------------------------------------------------------


def test_blob_claim_second_waits_for_first(limits):
    events: list[tuple[str, float]] = []
    claims = {}
    first_in = threading.Event()

    def first():
        with limits.blob_claim("host/repo", DIGEST) as claim:
            claims["first"] = claim
            first_in.set()
            time.sleep(0.3)
            events.append(("first-out", time.monotonic()))

    def second():
        assert first_in.wait(5)
        with limits.blob_claim("host/repo", DIGEST) as claim:
            claims["second"] = claim
            events.append(("second-in", time.monotonic()))

    run_threads(lambda i: (first if i == 0 else second)(), 2)
    assert not claims["first"].waited
    assert claims["second"].waited
    assert claims["second"].digest == DIGEST and claims["second"].repo_key == "host/repo"
    assert [name for name, _ in sorted(events, key=lambda e: e[1])] == ["first-out", "second-in"]
    assert not claims["first"].done and claims["second"].done  # the first ended well
    # a later claim finds it free again, and is told a claim under it just ended well
    # (the blob is there: no need to look at the target)
    with limits.blob_claim("host/repo", DIGEST, timeout=0.2) as claim:
        assert claim.done and not claim.waited


def test_only_a_claim_that_ended_well_is_marked_done(limits, ops):
    key = limits.keys.blob("host/repo", DIGEST)
    with pytest.raises(RuntimeError), limits.blob_claim("host/repo", DIGEST):
        raise RuntimeError("transfer failed")
    assert ops.get(key) is None  # the next claimant must look at the target
    with limits.blob_claim("host/repo", DIGEST) as claim:
        assert not claim.waited and not claim.done
    assert ops.get(key) == b"done" and 0 < ops.ttl(key) <= CLAIM_DONE_TTL


def test_blob_claims_are_per_repo_and_digest(limits):
    with limits.blob_claim("host/a", DIGEST):
        with limits.blob_claim("host/b", DIGEST, timeout=0.1) as other_repo:
            assert not other_repo.waited
        other = "sha256:" + "cd" * 32
        with limits.blob_claim("host/a", other, timeout=0.1) as other_digest:
            assert not other_digest.waited


def test_blob_claim_of_dead_holder_expires(store, prefix):
    limits = Limits(store, prefix)
    # A holder that died mid-transfer: it took the claim and will never renew it.
    assert limits._lock_acquire(limits.keys.blob("host/repo", DIGEST), "dead-holder", 300)
    started = time.monotonic()
    with limits.blob_claim("host/repo", DIGEST, timeout=3) as claim:
        assert claim.waited
        assert 0.2 <= time.monotonic() - started < 2


def test_blob_claim_renewed_while_held_and_times_out(limits):
    inside = threading.Event()

    def holder():
        with limits.blob_claim("host/repo", DIGEST, ttl=0.2):
            inside.set()
            time.sleep(0.7)

    t = threading.Thread(target=holder)
    t.start()
    assert inside.wait(5)
    with (
        pytest.raises(LimitTimeout) as info,
        limits.blob_claim("host/repo", DIGEST, ttl=0.2, timeout=0.45),
    ):
        pytest.fail("entered a claim still held (and renewed) by another")
    assert DIGEST in str(info.value)
    t.join()


# --- once_per, rate-limit records --------------------------------------------------------


def test_once_per(limits):
    results: list[bool] = []
    key = "beat:sync-images:2024-05-01T00:00:00Z"
    run_threads(lambda i: results.append(limits.once_per(key, 30)), 20)
    assert results.count(True) == 1
    assert not limits.once_per(key, 30)
    later = "beat:sync-images:2024-05-01T01:00:00Z"
    assert limits.once_per(later, 0.25)
    assert not limits.once_per(later, 0.25)
    time.sleep(0.35)
    assert limits.once_per(later, 0.25)  # the record expired


def test_ratelimit_record_and_read(limits, ops):
    assert limits.last_ratelimit("registry-1.docker.io") is None
    rl = RateLimit.from_headers(
        {"RateLimit-Limit": "100;w=21600", "RateLimit-Remaining": "76;w=21600"}
    )
    limits.record_ratelimit("registry-1.docker.io", rl)
    got = limits.last_ratelimit("registry-1.docker.io")
    assert got == rl and got.set and got.remain == 76 and got.policies == ["100;w=21600"]
    key = limits.keys.ratelimit("registry-1.docker.io")
    assert 6 * 3600 - 10 < ops.ttl(key) <= 6 * 3600

    reset = RateLimit(set=True, limit=10, remain=0, reset=120)
    limits.record_ratelimit("ghcr.io", reset)
    assert limits.last_ratelimit("ghcr.io") == reset
    assert 110 < ops.ttl(limits.keys.ratelimit("ghcr.io")) <= 120

    ops.set(key, "not json", 60)
    assert limits.last_ratelimit("registry-1.docker.io") is None


# --- what is stored --------------------------------------------------------------------


def test_keys_under_prefix_and_no_secrets(store, ops, prefix):
    limits = Limits(store, prefix)
    password = "s3cret-Pa55"  # exists in the test only: nothing takes credentials
    lock = limits.lock("sync-images", 30)
    with limits.request_slot(HOST, 2, 50), limits.heavy_slot(2), lock:
        lock.keep_alive()
        with limits.blob_claim(f"{HOST}/library/alpine", DIGEST):
            limits.once_per("beat:sync-images:1714521600", 30)
            limits.record_ratelimit(HOST, RateLimit(set=True, limit=100, remain=5, policies=["100;w=21600"]))
            held = limits.stored_keys()
            assert held == ops.keys(f"{prefix}:*")
            for key in held:
                assert 0 < ops.ttl(key) < float("inf"), f"{key!r} never expires"
                assert password not in key
            if not isinstance(store, MemoryStore):  # what Redis holds under each key
                values = {}
                for key in held:
                    kind = store.type(key)
                    if kind == b"zset":
                        values[key] = store.zrange(key, 0, -1)
                    else:
                        assert kind == b"string"
                        values[key] = [store.get(key)]
                for items in values.values():
                    for item in items:
                        assert password.encode() not in item
                        assert (
                            re.fullmatch(rb"[0-9a-f]{32}", item)  # owner token
                            or re.fullmatch(rb"\d+", item)  # next start time (µs)
                            or json.loads(item).keys() == RateLimit().to_dict().keys()
                        ), item
    assert all(key.startswith(prefix + ":") for key in held)
    assert {k.split(":")[1] for k in held} == {
        "slots", "rate", "lock", "blob", "once", "ratelimit"
    }
    # released: slots and locks are gone, the claim is a short "done" mark; only records
    # that expire by design remain
    left = {k.split(":")[1] for k in limits.stored_keys()}
    assert left == {"rate", "once", "ratelimit", "blob"}
    claim = limits.keys.blob(f"{HOST}/library/alpine", DIGEST)
    assert ops.get(claim) == b"done" and ops.ttl(claim) <= CLAIM_DONE_TTL


# --- several processes on a real redis-server ---------------------------------------------


def _process_worker(url, prefix, barrier, results_key):
    """Runs in a child process: 6 threads through one cluster-wide semaphore, then a paced phase."""
    limits = Limits(store_from_url(url), prefix, lease=2.0)
    client = redis.Redis.from_url(url)
    active = f"{prefix}:test:active"
    barrier.wait(30)

    def slot_worker(i):
        for _ in range(4):
            with limits.request_slot(HOST, 3, 0):
                client.rpush(results_key, client.incr(active))
                time.sleep(0.01)
                client.decr(active)

    threads = [threading.Thread(target=slot_worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    barrier.wait(30)
    for _ in range(5):
        with limits.request_slot("paced.example", 0, 10):
            client.rpush(f"{results_key}:starts", repr(time.time()))


def test_two_processes_share_slots_and_rate(redis_server):
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    results_key = f"{prefix}:test:seen"
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [
        ctx.Process(target=_process_worker, args=(redis_server.url, prefix, barrier, results_key))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    client = redis_server.client()
    try:
        assert [p.exitcode for p in procs] == [0, 0]
        seen = [int(v) for v in client.lrange(results_key, 0, -1)]
        assert len(seen) == 48
        assert max(seen) <= 3
        assert max(seen) >= 2  # both processes were really inside at once at some point
        starts = sorted(float(v) for v in client.lrange(f"{results_key}:starts", 0, -1))
        assert len(starts) == 10
        assert starts[-1] - starts[0] >= 9 / 10 * 0.8  # one pace for both processes
    finally:
        for key in client.scan_iter(match=f"{prefix}:*"):
            client.delete(key)
        client.close()


def _holder_that_dies(url, prefix, ready):
    limits = Limits(store_from_url(url), prefix, lease=1.0)
    lock = limits.lock("script", 1.0)
    with limits.request_slot(HOST, 1, 0), lock:
        lock.keep_alive()
        ready.set()
        time.sleep(60)  # killed long before this ends


def test_killed_process_frees_its_slot_and_lock(redis_server):
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    child = ctx.Process(target=_holder_that_dies, args=(redis_server.url, prefix, ready))
    child.start()
    try:
        assert ready.wait(30)
        limits = Limits(store_from_url(redis_server.url), prefix, lease=1.0)
        with pytest.raises(LimitTimeout), limits.request_slot(HOST, 1, 0, timeout=0.2):
            pass
        assert not limits.lock("script", 1.0).acquire()
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
    started = time.monotonic()
    with limits.request_slot(HOST, 1, 0, timeout=5):
        pass
    assert limits.lock("script", 5).acquire(blocking=True, timeout=5)
    assert time.monotonic() - started < 3
    client = redis_server.client()
    for key in client.scan_iter(match=f"{prefix}:*"):
        client.delete(key)
    client.close()
