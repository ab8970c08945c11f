"""Where a regbot cluster lives: broker, result backend, Redis for shared state.

Resolution, flags first, then the environment:

- broker: `--broker` or `REGBOT_BROKER_URL`. Redis (`redis://host:6379/0`) is the documented
  default; RabbitMQ (`amqp://user:pass@host:5672//`) works as well. `regbot worker` falls
  back to `redis://localhost:6379/0`; `once` and `server` run embedded when none is set.
- Redis for shared state (regbot/limits.py: locks, slots, rate limits, blob claims; and the
  log/progress streams of `once`): `--redis-url` or `REGBOT_REDIS_URL`, else the result
  backend when it is Redis, else the broker when it is Redis. Shared state cannot live in
  RabbitMQ, so an AMQP broker needs one of the other two to name a Redis.
- result backend: `--result-backend` or `REGBOT_RESULT_BACKEND`, else that same Redis.

A worker node's own knobs travel to its Celery processes in the environment too:
`REGBOT_CONFIG` (the config file, read by every task), `REGBOT_LOG_LEVEL`/`REGBOT_LOG_JSON`,
`REGBOT_LEASE` (seconds a dead node's locks, claims and slots outlive it, default 30; a
script lock keeps its own 60 s default) and `REGBOT_VISIBILITY_TIMEOUT` (Redis broker:
seconds before a message a dead node took but never started is delivered again; rarely
matters, as every task is acknowledged when it starts and a lost transfer is sent again by
its script once its lease lapses).

URLs may carry passwords: `describe()` and `repr()` print them sanitised.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from regbot.errors import ConfigError

ENV_BROKER = "REGBOT_BROKER_URL"
ENV_BACKEND = "REGBOT_RESULT_BACKEND"
ENV_REDIS = "REGBOT_REDIS_URL"
ENV_CONFIG = "REGBOT_CONFIG"
ENV_LOG_LEVEL = "REGBOT_LOG_LEVEL"
ENV_LOG_JSON = "REGBOT_LOG_JSON"
ENV_LEASE = "REGBOT_LEASE"
ENV_VISIBILITY = "REGBOT_VISIBILITY_TIMEOUT"
ENV_OUTAGE_LIMIT = "REGBOT_OUTAGE_LIMIT"  # `once`: seconds it waits out a Redis outage (60)
ENV_HEARTBEAT = "REGBOT_HEARTBEAT_FILE"  # set by the launcher per Celery process (liveness.py)

DEFAULT_BROKER = "redis://localhost:6379/0"
DEFAULT_VISIBILITY_TIMEOUT = 3600.0  # kombu's own default (transfers are acked on start)
# Seconds a dead node's task guards, blob claims and request slots outlive it, and so how
# soon a script sends a dead node's transfer again (workers/executor.py); `--lease` sets it.
DEFAULT_LEASE = 30.0
# Seconds a node's work waits out Redis or the broker being unreachable (a restart, a
# network cut) before it fails: a script's copy (workers/executor.py), a transfer taking
# its request slots and claims (regbot/limits.py outage_limit).
NODE_OUTAGE_LIMIT = 300.0

QUEUE_SCRIPTS = "scripts"
QUEUE_TRANSFERS = "transfers"
QUEUES = (QUEUE_SCRIPTS, QUEUE_TRANSFERS)
SCRIPT_TASK = "regbot.script"
TRANSFER_TASK = "regbot.transfer"

_REDIS_SCHEMES = ("redis", "rediss")


def is_redis(url: str | None) -> bool:
    return bool(url) and urlsplit(url).scheme.lower() in _REDIS_SCHEMES


def sanitize(url: str | None) -> str:
    """A URL fit for logs and messages: any password replaced."""
    if not url:
        return ""
    from kombu.utils.url import maybe_sanitize_url  # only a cluster has URLs to print

    return maybe_sanitize_url(url, mask="***")


@dataclass(frozen=True)
class ClusterSettings:
    """The three URLs of a cluster, resolved (see the module docstring)."""

    broker_url: str = field(repr=False)
    result_backend: str = field(repr=False)
    redis_url: str = field(repr=False)

    def __repr__(self) -> str:
        return f"ClusterSettings({self.describe()})"

    def describe(self) -> str:
        return (f"broker={sanitize(self.broker_url)} backend={sanitize(self.result_backend)}"
                f" redis={sanitize(self.redis_url)}")

    def secrets(self) -> list[str]:
        """Passwords inside the URLs, for the log redaction filter."""
        out = []
        for url in (self.broker_url, self.result_backend, self.redis_url):
            try:
                password = urlsplit(url).password
            except ValueError:
                password = None
            if password and password not in out:
                out.append(password)
        return out

    def env(self) -> dict[str, str]:
        """The environment that makes a child process resolve these same settings."""
        return {ENV_BROKER: self.broker_url, ENV_BACKEND: self.result_backend,
                ENV_REDIS: self.redis_url}

    @classmethod
    def resolve(
        cls,
        broker: str | None = None,
        backend: str | None = None,
        redis_url: str | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        default_broker: str | None = None,
    ) -> ClusterSettings | None:
        """Settings from flags (given values win) and the environment; None when no broker
        is configured and there is no `default_broker` (the caller then runs embedded).
        Raises ConfigError when no Redis can be found for the shared state."""
        env = os.environ if environ is None else environ
        broker = broker or env.get(ENV_BROKER) or default_broker
        if not broker:
            return None
        backend = backend or env.get(ENV_BACKEND) or None
        redis_url = redis_url or env.get(ENV_REDIS) or None
        if not redis_url:
            redis_url = backend if is_redis(backend) else broker if is_redis(broker) else None
        if not redis_url:
            raise ConfigError(
                f"a cluster keeps its shared state in Redis, and neither the broker "
                f"({sanitize(broker)}) nor the result backend is Redis: set {ENV_REDIS} "
                "(or --redis-url)")
        return cls(broker_url=broker, result_backend=backend or redis_url, redis_url=redis_url)


def env_float(name: str, environ: Mapping[str, str] | None = None) -> float | None:
    """A positive number of seconds from the environment, None when unset."""
    raw = (os.environ if environ is None else environ).get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: not a number of seconds") from None
    if value <= 0:
        raise ConfigError(f"{name}={raw!r}: must be positive")
    return value
