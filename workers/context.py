"""What a worker process knows: its settings, its config file and its one Engine.

Every task reads the configuration and credentials here, from the node's own config file
(`REGBOT_CONFIG`) and environment, never from a task message. The file is loaded again
when it changes, so a new regbot.yml reaches the workers without a restart: the engine is
then rebuilt (a new client for the new hosts and credentials) on the same limits and
executor. Everything is built lazily, in the process that uses it (after the prefork pool
has forked).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import redis

from regbot.config import Config, load_config
from regbot.copy.executors import LocalExecutor
from regbot.engine import Engine
from regbot.errors import ConfigError
from regbot.limits import Limits, store_from_url
from regbot.logs import add_secrets
from workers.settings import (
    DEFAULT_BROKER,
    DEFAULT_LEASE,
    ENV_CONFIG,
    ENV_LEASE,
    NODE_OUTAGE_LIMIT,
    ClusterSettings,
    env_float,
)

if TYPE_CHECKING:
    from celery import Celery


@dataclass
class WorkerContext:
    """Per-process state of a worker. `lease` (seconds) is how long a dead holder keeps
    task guards, blob claims and slots, and how soon a lost transfer is sent again; None:
    DEFAULT_LEASE (the script lock keeps its own default then)."""

    settings: ClusterSettings
    config_path: str
    lease: float | None = None
    _guard: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _config: Config | None = field(default=None, repr=False)
    _config_stamp: tuple[int, int] | None = field(default=None, repr=False)
    _engine: Engine | None = field(default=None, repr=False)
    _local: LocalExecutor | None = field(default=None, repr=False)
    _limits: Limits | None = field(default=None, repr=False)
    _store: redis.Redis | None = field(default=None, repr=False)

    @classmethod
    def with_store(cls, settings: ClusterSettings, config_path: str, store: redis.Redis,
                   lease: float | None = None) -> WorkerContext:
        """A context on an existing Redis client (tests: a fakeredis one)."""
        ctx = cls(settings, config_path, lease)
        ctx._store = store
        return ctx

    def config(self) -> Config:
        """The config file, loaded again when its mtime or size changed."""
        try:
            st = os.stat(self.config_path)
        except OSError as exc:
            raise ConfigError(f"{self.config_path}: cannot read the worker's config: "
                              f"{exc.strerror or exc}") from None
        stamp = (st.st_mtime_ns, st.st_size)
        with self._guard:
            if self._config is None or stamp != self._config_stamp:
                config = load_config(self.config_path)
                add_secrets(config.secrets() + self.settings.secrets())
                self._config, self._config_stamp = config, stamp
            return self._config

    def store(self) -> redis.Redis:
        """The cluster's Redis (shared state, run streams, stop signals)."""
        with self._guard:
            if self._store is None:
                self._store = store_from_url(self.settings.redis_url)
            return self._store

    def limits(self) -> Limits:
        store = self.store()
        with self._guard:
            if self._limits is None:
                # Claims as short as the rest: a re-sent transfer of a dead node must not
                # wait minutes for the claim the dead node held (Limits' own default).
                # Slots and claims wait out an outage: a transfer pauses, it does not fail.
                lease = self.transfer_lease
                self._limits = Limits(store, lease=lease, claim_ttl=lease,
                                      outage_limit=NODE_OUTAGE_LIMIT)
            return self._limits

    @property
    def transfer_lease(self) -> float:
        return self.lease or DEFAULT_LEASE

    def engine(self, app: Celery | None = None) -> Engine:
        """The process's engine for the current config file. Its executor sends copy units
        as tasks of `app` (default: the worker's app), whichever app asks first."""
        config = self.config()
        limits = self.limits()
        with self._guard:
            if self._engine is None:
                from workers.executor import CeleryExecutor

                if app is None:
                    from workers.app import worker_app

                    app = worker_app()
                executor = CeleryExecutor(app, limits, lease=self.transfer_lease)
                self._engine = Engine(config, limits, executor)
            elif self._engine.config is not config:
                self._engine = self._engine.reconfigured(config)
            self._engine.executor.transfer_min = config.defaults.transfer_min
            self._engine.executor.spread_copies = config.defaults.spread_copies
            return self._engine

    def local_executor(self) -> LocalExecutor:
        """The threads this process runs a bundle of copy units on (kept from one to the
        next, as the engine's executor keeps its own)."""
        with self._guard:
            if self._local is None:
                self._local = LocalExecutor()
            return self._local


_current: WorkerContext | None = None
_current_guard = threading.Lock()


def current() -> WorkerContext:
    """This process's context, made from the environment on first use."""
    global _current
    with _current_guard:
        if _current is None:
            settings = ClusterSettings.resolve(default_broker=DEFAULT_BROKER)
            assert settings is not None
            _current = WorkerContext(settings, _env_config(), env_float(ENV_LEASE))
        return _current


def set_current(context: WorkerContext | None) -> None:
    """Install a context (tests, or an embedding program); None: back to the environment."""
    global _current
    with _current_guard:
        _current = context


def _env_config() -> str:
    path = os.environ.get(ENV_CONFIG, "")
    if not path:
        raise ConfigError(f"the worker has no config file: start it with -c FILE "
                          f"(or set {ENV_CONFIG})")
    return path
