"""Prometheus metrics of a regbot process, when asked for (`--metrics-port`).

Until `serve()` (or, in a worker node's Celery processes, `from_environment()`) turns them
on, every call here does nothing and prometheus_client is not even imported, so a plain
`regbot once` pays nothing for them.

Metrics (all names start with `regbot_`):
- `copies_total{status}`: image copies: `copied`, `up_to_date` (nothing to do), `failed`;
- `blobs_total{outcome}`: blobs `copied`, `skipped` (already there) or `mounted`;
- `bytes_total`: blob bytes transferred;
- `manifests_total`: manifests and tags pushed;
- `unit_failures_total{kind}`, `unit_retries_total{kind}`: copy units that failed for
  good, and tries made again after a transient failure;
- `script_runs_total{status}`, `script_duration_seconds{status}` (histogram);
- `ratelimit_remaining{registry}`, `ratelimit_limit{registry}`: the last
  `RateLimit-Remaining`/`RateLimit-Limit` a registry answered with.

A worker node runs several processes (its two Celery workers and their pools): the node
(workers/launcher.py) makes a private directory and hands it to them as
`PROMETHEUS_MULTIPROC_DIR` (prometheus_client's multiprocess mode: it must be in the
environment before prometheus_client is imported, hence before the processes start); each
pool process records there (`from_environment()`, from a Celery signal in workers/app.py)
and the node serves the sum on its port (`serve_directory`). Counters of pool processes
that exited keep counting in the sum, as a node's totals must.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from regbot.errors import RegbotError

ENV_DIR = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own name for it


class MetricsError(RegbotError):
    """The metrics endpoint cannot be served (port taken, bad address)."""


_guard = threading.Lock()
_metrics: _Metrics | None = None


class _Metrics:
    def __init__(self, registry: Any = None) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        kw = {"registry": registry} if registry is not None else {}
        self.copies = Counter("regbot_copies", "Image copies", ["status"], **kw)
        self.blobs = Counter("regbot_blobs", "Blobs by outcome", ["outcome"], **kw)
        self.bytes = Counter("regbot_bytes", "Blob bytes transferred", **kw)
        self.manifests = Counter("regbot_manifests", "Manifests and tags pushed", **kw)
        self.unit_failures = Counter("regbot_unit_failures", "Copy units failed", ["kind"], **kw)
        self.unit_retries = Counter("regbot_unit_retries", "Copy units tried again", ["kind"],
                                    **kw)
        self.script_runs = Counter("regbot_script_runs", "Script runs", ["status"], **kw)
        self.script_seconds = Histogram(
            "regbot_script_duration_seconds", "Script run durations", ["status"],
            buckets=(1, 5, 15, 60, 300, 900, 1800, 3600, 10800, float("inf")), **kw)
        mode = {"multiprocess_mode": "mostrecent"}
        self.rl_remaining = Gauge("regbot_ratelimit_remaining", "RateLimit-Remaining last seen",
                                  ["registry"], **mode, **kw)
        self.rl_limit = Gauge("regbot_ratelimit_limit", "RateLimit-Limit last seen",
                              ["registry"], **mode, **kw)


def _install(registry: Any = None) -> None:
    global _metrics
    with _guard:
        if _metrics is None:
            _metrics = _Metrics(registry)


def serve(port: int, host: str = "") -> Any:
    """Collect this process's metrics and serve them on `port` (a daemon thread); returns
    the HTTP server (its `shutdown()` stops it)."""
    _install()
    return _start_server(port, host, None)


def serve_directory(port: int, directory: str, host: str = "") -> Any:
    """Serve the sum of the metrics the processes write to `directory` (a worker node);
    returns the HTTP server. This process records nothing itself."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)
    return _start_server(port, host, registry)


def _start_server(port: int, host: str, registry: Any) -> Any:
    from prometheus_client import start_http_server

    kw = {"registry": registry} if registry is not None else {}
    try:
        server, _thread = start_http_server(port, addr=host or "0.0.0.0", **kw)
    except OSError as exc:  # port taken, address not local, ...
        raise MetricsError(f"cannot serve metrics on {host or '*'}:{port}: "
                           f"{exc.strerror or exc}") from None
    return server


def from_environment() -> None:
    """In a process of a node serving metrics (PROMETHEUS_MULTIPROC_DIR set): collect."""
    if os.environ.get(ENV_DIR):
        _install()


def process_dead(pid: int) -> None:
    """A process of this node is gone: drop what only a live process means (prometheus
    multiprocess bookkeeping; its counters stay, summed into the node's totals)."""
    directory = os.environ.get(ENV_DIR)
    if directory:
        from prometheus_client.multiprocess import mark_process_dead

        mark_process_dead(pid, directory)


def enabled() -> bool:
    return _metrics is not None


# --- what the rest of regbot reports -----------------------------------------------------


def copy_done(status: str) -> None:
    if _metrics is not None:
        _metrics.copies.labels(status).inc()


def unit_done(kind: str, status: str, nbytes: int) -> None:
    """A copy unit's outcome (regbot.copy.units STATUS_*)."""
    if _metrics is None:
        return
    if kind == "blob":
        _metrics.blobs.labels(status).inc()
        if nbytes:
            _metrics.bytes.inc(nbytes)
    else:
        _metrics.manifests.inc()


def unit_failed(kind: str) -> None:
    if _metrics is not None:
        _metrics.unit_failures.labels(kind).inc()


def unit_retried(kind: str) -> None:
    if _metrics is not None:
        _metrics.unit_retries.labels(kind).inc()


def script_done(status: str, seconds: float) -> None:
    if _metrics is not None:
        _metrics.script_runs.labels(status).inc()
        _metrics.script_seconds.labels(status).observe(seconds)


def rate_limit(registry: str, remain: int, limit: int) -> None:
    if _metrics is not None:
        _metrics.rl_remaining.labels(registry).set(remain)
        _metrics.rl_limit.labels(registry).set(limit)
