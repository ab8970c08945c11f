"""`regbot worker`: one node of the cluster, as two supervised Celery worker processes.

Each queue gets its own worker process and pool, so a script waiting for its transfers
can never take the slots the transfers need:
- `scripts@<node>` serves queue `scripts` with `defaults.parallel` processes;
- `transfers@<node>` serves queue `transfers` with `--transfers` processes (default 4).

The node passes SIGTERM/SIGINT on to both as a warm shutdown (running tasks finish); a
second one, or SIGQUIT, as a cold shutdown (transfers go back to the queue). It exits when
both have exited, with the first non-zero status. If one exits on its own, the other is
stopped too: a half node is not left running.

Pool sizes are fixed when the node starts; tasks re-read the config file when it changes
(workers/context.py), so only a new `defaults.parallel` needs a restart to resize the pool
(the cluster-wide heavy-slot limit follows the new value at once).

With `--metrics-port` the node serves one Prometheus endpoint for all its processes: they
record in a private directory the node makes (prometheus_client's multiprocess mode, see
regbot/metrics.py) and removes when it exits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from regbot import metrics
from regbot.logs import get_logger, log_fields
from workers.settings import (
    ENV_CONFIG,
    ENV_LEASE,
    ENV_LOG_JSON,
    ENV_LOG_LEVEL,
    ENV_VISIBILITY,
    QUEUE_SCRIPTS,
    QUEUES,
    ClusterSettings,
)

log = get_logger("regbot.worker")

DEFAULT_TRANSFERS = 4
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
# Celery's -l levels for regbot's
_CELERY_LEVELS = {"trace": "debug", "debug": "debug", "info": "info", "warn": "warning",
                  "warning": "warning", "error": "error"}


@dataclass
class NodeOptions:
    config_path: str
    settings: ClusterSettings
    parallel: int
    transfers: int = DEFAULT_TRANSFERS
    queues: Sequence[str] = QUEUES
    node_name: str = ""  # "" is HOST-PID: two nodes on one host never share a name
    log_level: str = "info"
    json_logs: bool = False
    lease: float | None = None
    visibility_timeout: float | None = None
    metrics: tuple[str, int] | None = None  # (host, port) of the node's metrics endpoint

    def __post_init__(self) -> None:
        if not self.node_name:
            # Celery expands %h to the host name; the launcher's pid keeps two nodes of one
            # host apart (in a container, the host name already is the container's).
            self.node_name = f"%h-{os.getpid()}"


def worker_commands(opts: NodeOptions) -> list[tuple[str, list[str]]]:
    """(queue, argv) of each Celery worker process of the node."""
    out = []
    for queue in QUEUES:
        if queue not in opts.queues:
            continue
        concurrency = opts.parallel if queue == QUEUE_SCRIPTS else opts.transfers
        out.append((queue, [
            sys.executable, "-m", "celery", "-A", "workers.app", "worker",
            "-Q", queue,
            "-c", str(max(1, concurrency)),
            "-n", f"{queue}@{opts.node_name}",
            "-P", "prefork",
            "-E",
            "--prefetch-multiplier", "1",
            "--without-gossip",
            "--without-mingle",
            "-l", _CELERY_LEVELS.get(opts.log_level.lower(), "info"),
        ]))
    return out


def worker_env(opts: NodeOptions, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the node's Celery processes: everything they need to resolve the
    same settings and read the same config file (which stays a path: no secret is copied)."""
    env = dict(os.environ if base is None else base)
    env.update(opts.settings.env())
    env[ENV_CONFIG] = str(Path(opts.config_path).resolve())
    env[ENV_LOG_LEVEL] = opts.log_level
    env[ENV_LOG_JSON] = "1" if opts.json_logs else ""
    if opts.lease:
        env[ENV_LEASE] = str(opts.lease)
    if opts.visibility_timeout:
        env[ENV_VISIBILITY] = str(opts.visibility_timeout)
    # `celery -A workers.app` must import this very checkout, wherever the node runs from.
    root = str(Path(__file__).resolve().parent.parent)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in paths:
        env["PYTHONPATH"] = os.pathsep.join([root, *paths])
    return env


def run_node(opts: NodeOptions) -> int:
    """Start the node's worker processes and supervise them; returns the exit status."""
    if not any(q in QUEUES for q in opts.queues):
        raise ValueError(f"no known queue in {list(opts.queues)}: use {', '.join(QUEUES)}")
    with _node_metrics(opts.metrics) as metrics_dir:
        env = worker_env(opts)
        if metrics_dir is not None:
            env[metrics.ENV_DIR] = metrics_dir
        else:
            # a directory inherited from whoever started the node is not this node's
            env.pop(metrics.ENV_DIR, None)
        return _run(opts, env)


@contextlib.contextmanager
def _node_metrics(address: tuple[str, int] | None) -> Iterator[str | None]:
    """With an address: a fresh private directory for the node's processes to record
    their metrics in, its sum served on the address while the node runs, removed after
    (prometheus multiprocess files of an earlier node would be summed in otherwise)."""
    if address is None:
        yield None
        return
    directory = tempfile.mkdtemp(prefix="regbot-metrics-")
    try:
        server = metrics.serve_directory(address[1], directory, address[0])
        log_fields(log, logging.INFO, "Metrics", address=f"{address[0] or '*'}:{address[1]}")
        try:
            yield directory
        finally:
            server.shutdown()
            server.server_close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _run(opts: NodeOptions, env: dict[str, str]) -> int:
    procs: dict[str, subprocess.Popen] = {}
    stopping: dict[str, int | None] = {"signal": None, "count": 0}

    def forward(signum: int, _frame: object) -> None:
        # The first SIGINT/SIGTERM asks for Celery's warm shutdown (SIGTERM: a Ctrl-C
        # reaches the workers from the terminal too, and two SIGINTs would be a cold one);
        # the next one, or SIGQUIT, for the cold shutdown.
        stopping["signal"] = signum
        stopping["count"] = (stopping["count"] or 0) + 1
        send = signal.SIGQUIT if signum == signal.SIGQUIT or stopping["count"] > 1 \
            else signal.SIGTERM
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(send)

    previous = {sig: signal.signal(sig, forward) for sig in _FORWARDED}
    try:
        for queue, argv in worker_commands(opts):
            log_fields(log, logging.INFO, "Starting worker", queue=queue,
                       hostname=f"{queue}@{opts.node_name}",
                       concurrency=opts.parallel if queue == QUEUE_SCRIPTS else opts.transfers,
                       cluster=opts.settings.describe())
            procs[queue] = subprocess.Popen(argv, env=env)
        return _supervise(procs, stopping)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _supervise(procs: dict[str, subprocess.Popen], stopping: dict) -> int:
    """Wait until every process has exited; when one exits, stop the others."""
    status = 0
    asked = False
    while True:
        running = [p for p in procs.values() if p.poll() is None]
        for queue, proc in procs.items():
            code = proc.poll()
            if code is not None and code != 0 and status == 0:
                status = code if code > 0 else 128 - code
                if stopping["signal"] is None:
                    log_fields(log, logging.ERROR, "Worker exited", queue=queue, status=code)
        if not running:
            return status
        if len(running) < len(procs) and not asked and stopping["signal"] is None:
            asked = True  # one is gone on its own: take the rest of the node down with it
            for proc in running:
                proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)

