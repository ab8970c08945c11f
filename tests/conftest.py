"""Fixtures shared by every test module: real registries, unique repository names."""

from __future__ import annotations

import itertools
import os

import pytest

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
