"""Fixtures shared by every test module: real registries, unique repository names."""

from __future__ import annotations

import itertools
import os

import pytest

from tests.support.redis_server import BROKER_DB, REDIS_BINARY, flushed_db, start_redis
from tests.support.registry import start_registry

_counter = itertools.count()


@pytest.fixture(scope="session")
def registry():
    """A plain docker-registry shared by the session; use `repo` for unique names."""
    reg = start_registry()
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def registry2():
    """A second, independent docker-registry (for registry-to-registry copies)."""
    reg = start_registry()
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def auth_registry():
    """docker-registry with htpasswd basic auth (user `alice`, password in `.password`)."""
    reg = start_registry(user="alice", password="s3cret-Pa55")
    yield reg
    reg.stop()


@pytest.fixture
def fresh_registry():
    """A registry of its own, for tests that list the catalog or need an empty store."""
    reg = start_registry()
    yield reg
    reg.stop()


@pytest.fixture
def repo(request) -> str:
    """A repository name unique to this test."""
    base = request.node.name.lower()
    cleaned = "".join(c if c.isalnum() else "-" for c in base).strip("-")[:40].strip("-")
    return f"test/{cleaned or 'repo'}-{os.getpid()}-{next(_counter)}"


# --- fake fronts and the in-memory registry (tests/support/fronts.py, memregistry.py) ---


@pytest.fixture
def token_front_factory(registry):
    """Make TokenAuthFront(upstream=registry, **kw) fronts; all stopped after the test.

    Call as `token_front_factory(rate_limit=3)` or `token_front_factory(other, user=...)`."""
    from tests.support.fronts import TokenAuthFront

    fronts = []

    def make(upstream=None, **kw):
        front = TokenAuthFront(upstream if upstream is not None else registry, **kw)
        fronts.append(front)
        return front

    yield make
    for front in fronts:
        front.stop()


@pytest.fixture
def token_front(token_front_factory):
    """Docker Hub-like token auth (user `alice`, password `s3cret-Pa55`) before `registry`."""
    return token_front_factory()


@pytest.fixture
def fault_front(registry):
    """A FaultFront before `registry` (`.add(method, path_regex, kind, times, **kw)`)."""
    from tests.support.fronts import FaultFront

    front = FaultFront(registry)
    yield front
    front.stop()


@pytest.fixture
def mem_registry():
    """An in-memory OCI 1.1 registry (referrers API, pagination, tag delete) of its own."""
    from tests.support.memregistry import MemRegistry

    reg = MemRegistry()
    yield reg
    reg.stop()


# A real redis-server for the session, and a broker database on it.


@pytest.fixture(scope="session")
def redis_server():
    """A real redis-server for the session (skipped when the binary is missing)."""
    if REDIS_BINARY is None:
        pytest.skip("redis-server binary not found on PATH: tests against real Redis skipped")
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture
def broker(redis_server):
    """A broker URL on database BROKER_DB of the session redis-server (emptied per test)."""
    with flushed_db(redis_server, BROKER_DB) as url:
        yield url
