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

A worker node runs several processes (its two Celery workers and their pools): they
write to a directory shared through `PROMETHEUS_MULTIPROC_DIR` (prometheus_client's
multiprocess mode) and the node serves the sum on its port (`serve_directory`).
"""

from __future__ import annotations

import os
import threading
from typing import Any

ENV_DIR = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own name for it

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


def serve(port: int, host: str = "") -> None:
    """Collect this process's metrics and serve them on `port` (a daemon thread)."""
    from prometheus_client import start_http_server

    _install()
    start_http_server(port, addr=host or "0.0.0.0")


def serve_directory(port: int, directory: str, host: str = "") -> None:
    """Serve the sum of the metrics the processes write to `directory` (a worker node)."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)
    start_http_server(port, addr=host or "0.0.0.0", registry=registry)


def from_environment() -> None:
    """In a process of a node serving metrics (PROMETHEUS_MULTIPROC_DIR set): collect."""
    if os.environ.get(ENV_DIR):
        _install()


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
