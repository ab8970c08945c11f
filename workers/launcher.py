"""`regbot worker`: one node of the cluster, as two supervised Celery worker processes.

Each queue gets its own worker process and pool, so a script waiting for its transfers
can never take the slots the transfers need:
- `scripts@<node>` serves queue `scripts` with `defaults.parallel` processes;
- `transfers@<node>` serves queue `transfers` with `--transfers` processes (default 4).

The node passes SIGTERM/SIGINT on to both as a warm shutdown (running tasks finish); a
second one, or SIGQUIT, as a cold shutdown. A warm shutdown still going after the grace
period (`--grace`, default 60 s) is made cold, and one still going 10 s later is killed:
the node always ends. It exits when both have exited, with the first non-zero status.
Nothing is lost by a cold stop: the scripts waiting for its transfers send them again once
their leases lapse (workers/executor.py).

A node never stays up without serving: if one of its Celery processes exits on its own
(a crash, a kill, an unrecoverable error inside Celery or kombu), the launcher logs why and
starts it again after a backoff (1 s, doubling to 30 s; back to 1 s once a process has
served a minute). A process that keeps failing (RESTART_LIMIT exits within
RESTART_WINDOW seconds) takes the node down, non-zero, for its own supervisor to handle.
A process still running but no longer serving is ended the same way: each keeps a
heartbeat file (workers/liveness.py), and one that begins a shutdown the launcher did not
ask for (a stray SIGTERM, Celery giving up after an outage) or whose heartbeat stops for
a minute is told to stop cold after the grace period, killed 10 s later, and restarted.

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
from dataclasses import dataclass, field
from pathlib import Path

from regbot import metrics
from regbot.logs import get_logger, log_fields
from workers.liveness import Health, HeartbeatWatch
from workers.settings import (
    ENV_CONFIG,
    ENV_HEARTBEAT,
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
DEFAULT_GRACE = 60.0  # seconds a warm shutdown may take before it is made cold
KILL_AFTER = 10.0  # seconds a cold shutdown may take before the processes are killed
RESTART_BACKOFF = (1.0, 30.0)  # first and longest pause before a crashed process restarts
HEALTHY_AFTER = 60.0  # seconds of serving after which a process's backoff starts over
RESTART_LIMIT = 5  # exits within RESTART_WINDOW seconds that take the node down
RESTART_WINDOW = 300.0
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
    grace: float = DEFAULT_GRACE

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
    heartbeats = Path(tempfile.mkdtemp(prefix="regbot-node-"))
    node = _Node(opts, env, heartbeats)

    previous = {sig: signal.signal(sig, node.on_signal) for sig in _FORWARDED}
    try:
        for queue, argv in worker_commands(opts):
            node.start(queue, argv)
        return node.supervise()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        node.kill_all()
        shutil.rmtree(heartbeats, ignore_errors=True)


@dataclass
class _Worker:
    queue: str
    argv: list[str]
    proc: subprocess.Popen | None = None
    started: float = 0.0
    restart_at: float | None = None  # monotonic time of the next start, after a crash
    backoff: float = RESTART_BACKOFF[0]
    exits: list[float] = field(default_factory=list)  # monotonic times of recent crashes
    heartbeat: HeartbeatWatch | None = None  # its liveness file (workers/liveness.py)
    ending_since: float | None = None  # monotonic: seen no longer serving, unasked
    ending: str = ""  # why
    escalated: int = 0  # of its own ending: 1 told to stop cold, 2 killed


class _Node:
    """The node's Celery processes and what the launcher does about them."""

    def __init__(self, opts: NodeOptions, env: dict[str, str],
                 heartbeats: Path | None = None) -> None:
        self.opts = opts
        self.env = env
        self.heartbeats = heartbeats  # the directory of their liveness files
        self.workers: dict[str, _Worker] = {}
        self.stop_signal: int | None = None
        self.stop_count = 0
        self.stop_since: float | None = None  # monotonic start of the shutdown
        self.escalated = 0  # 0 as asked, 1 made cold after the grace period, 2 killed
        self.status = 0

    def start(self, queue: str, argv: list[str]) -> None:
        worker = self.workers.setdefault(queue, _Worker(queue, argv))
        concurrency = self.opts.parallel if queue == QUEUE_SCRIPTS else self.opts.transfers
        log_fields(log, logging.INFO, "Starting worker", queue=queue,
                   hostname=f"{queue}@{self.opts.node_name}", concurrency=concurrency,
                   cluster=self.opts.settings.describe())
        env = self.env
        if self.heartbeats is not None:
            path = self.heartbeats / queue
            path.unlink(missing_ok=True)  # the last process's word is not this one's
            worker.heartbeat = HeartbeatWatch(path)
            env = {**env, ENV_HEARTBEAT: str(path)}
        worker.proc = subprocess.Popen(argv, env=env)
        worker.started = time.monotonic()
        worker.restart_at = None
        worker.ending_since, worker.ending, worker.escalated = None, "", 0

    def running(self) -> list[subprocess.Popen]:
        return [w.proc for w in self.workers.values()
                if w.proc is not None and w.proc.poll() is None]

    def on_signal(self, signum: int, _frame: object) -> None:
        # The first SIGINT/SIGTERM asks for Celery's warm shutdown (SIGTERM: a Ctrl-C
        # reaches the workers from the terminal too, and two SIGINTs would be a cold one);
        # the next one, or SIGQUIT, for the cold shutdown.
        self.stop_signal = signum
        self.stop_count += 1
        if self.stop_since is None:
            self.stop_since = time.monotonic()
        cold = signum == signal.SIGQUIT or self.stop_count > 1
        self._send(signal.SIGQUIT if cold else signal.SIGTERM)

    def _send(self, sig: int) -> None:
        for proc in self.running():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)

    def supervise(self) -> int:
        """Until every process has exited after a stop: restart the ones that die on their
        own, end a shutdown that overruns its grace period."""
        while True:
            now = time.monotonic()
            for worker in self.workers.values():
                self._watch(worker, now)
            if self.stop_signal is not None:
                if not self.running():
                    return self.status
                self._escalate(now)
            time.sleep(0.2)

    def _watch(self, worker: _Worker, now: float) -> None:
        if worker.proc is None:
            if worker.restart_at is not None and now >= worker.restart_at \
                    and self.stop_signal is None:
                self.start(worker.queue, worker.argv)
            return
        code = worker.proc.poll()
        if code is None:
            if self.stop_signal is None:
                self._check_serving(worker, now)
            if now - worker.started > HEALTHY_AFTER and worker.ending_since is None:
                worker.backoff = RESTART_BACKOFF[0]
            return
        worker.proc = None
        if self.stop_signal is not None:
            # asked to stop: it did (a crash that was recovered from does not count)
            if code != 0 and self.status == 0:
                self.status = code if code > 0 else 128 - code
            return
        worker.exits = [t for t in worker.exits if now - t < RESTART_WINDOW] + [now]
        if len(worker.exits) >= RESTART_LIMIT:
            log_fields(log, logging.ERROR, "Worker keeps exiting, stopping the node",
                       queue=worker.queue, status=code, exits=len(worker.exits),
                       within=f"{RESTART_WINDOW:g}s")
            self.status = code if code > 0 else 128 - code if code < 0 else 1
            self.stop_signal = signal.SIGTERM
            self.stop_since = now
            self._send(signal.SIGTERM)
            return
        log_fields(log, logging.ERROR, "Worker exited, restarting it", queue=worker.queue,
                   status=code, restart_in=f"{worker.backoff:g}s",
                   **({"why": worker.ending} if worker.ending else {}))
        worker.restart_at = now + worker.backoff
        worker.backoff = min(worker.backoff * 2, RESTART_BACKOFF[1])

    def _check_serving(self, worker: _Worker, now: float) -> None:
        """A running process that stopped serving though nobody asked it to: stop it cold
        once the grace period is over (its tasks may still end meanwhile), kill it
        KILL_AFTER later; it is restarted when it has exited."""
        assert worker.proc is not None
        if worker.ending_since is None:
            health = worker.heartbeat.health(now) if worker.heartbeat else Health.STARTING
            if health not in (Health.STOPPING, Health.HUNG):
                return
            worker.ending_since = now
            worker.ending = ("began a shutdown nobody asked for" if health is Health.STOPPING
                             else "its heartbeat stopped")
            log_fields(log, logging.ERROR, "Worker no longer serves, ending it",
                       queue=worker.queue, why=worker.ending, cold_in=f"{self.opts.grace:g}s")
            return
        elapsed = now - worker.ending_since
        if worker.escalated == 0 and elapsed > self.opts.grace:
            worker.escalated = 1
            with contextlib.suppress(ProcessLookupError):
                worker.proc.send_signal(signal.SIGQUIT)
        elif worker.escalated == 1 and elapsed > self.opts.grace + KILL_AFTER:
            worker.escalated = 2
            with contextlib.suppress(ProcessLookupError):
                worker.proc.kill()

    def _escalate(self, now: float) -> None:
        """A warm shutdown past the grace period goes cold; a cold one that hangs, killed."""
        assert self.stop_since is not None
        elapsed = now - self.stop_since
        if self.escalated == 0 and elapsed > self.opts.grace:
            self.escalated = 1
            log_fields(log, logging.WARNING, "Warm shutdown overran its grace period, "
                       "stopping cold", grace=f"{self.opts.grace:g}s")
            self._send(signal.SIGQUIT)
        elif self.escalated == 1 and elapsed > self.opts.grace + KILL_AFTER:
            self.escalated = 2
            log_fields(log, logging.WARNING, "Cold shutdown hangs, killing the workers")
            self._send(signal.SIGKILL)

    def kill_all(self) -> None:
        for worker in self.workers.values():
            if worker.proc is not None and worker.proc.poll() is None:
                worker.proc.kill()
                worker.proc.wait()
