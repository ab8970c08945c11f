"""Real regbot worker nodes for tests: `python -m regbot.cli worker ...` subprocesses.

    nodes = NodeSet(tmp_path, config_path, broker_url, redis_url, env=world_env)
    a = nodes.start("node1", transfers=2)
    b = nodes.start("node2", transfers=2)
    nodes.wait_ready()
    proc = nodes.once()            # `regbot once -c config` against the same cluster
    a.transfers_done()             # transfers this node finished (from its Celery log)
    nodes.stop_all()               # SIGTERM, then SIGKILL after a grace period

Each node runs in its own session (process group), cwd a temp dir, PYTHONPATH the
repository root, its output in `<tmp>/<name>.log`. `kill()` SIGKILLs the whole group: the
node, both Celery workers and their pool processes, as when a machine dies.

`find_rabbitmq()` finds a RabbitMQ for the AMQP tests: 127.0.0.1:5672 if it answers, else
a private `rabbitmq-server` started on free ports when the binary is installed, else None;
`find_rabbitmq(private=True)` always starts a private one, which a fault test may stop
(`halt()`) and start again (`resume()`) on the same ports.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.support.processes import REPO_ROOT, free_port

READY_TIMEOUT = 60.0
_TRANSFER_DONE = re.compile(r"Task regbot\.transfer\[[0-9a-f-]+\] succeeded")
_SCRIPT_DONE = re.compile(r"Task regbot\.script\[[0-9a-f-]+\] succeeded")


@dataclass
class WorkerNode:
    name: str
    proc: subprocess.Popen
    log_path: Path
    queues: tuple[str, ...]

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def transfers_done(self) -> int:
        return len(_TRANSFER_DONE.findall(self.log_text()))

    def scripts_done(self) -> int:
        return len(_SCRIPT_DONE.findall(self.log_text()))

    def ready(self) -> bool:
        text = self.log_text()
        return all(f"{queue}@{self.name} ready." in text for queue in self.queues)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the node's whole process group (the node and every Celery process)."""
        _signal_group(self.proc, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self, grace: float = 20.0) -> int | None:
        if self.proc.poll() is None:
            _signal_group(self.proc, signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _signal_group(self.proc, signal.SIGKILL)
                self.proc.wait(timeout=10)
        # Pool processes of a node stopped by SIGKILL may linger: clear the group.
        _signal_group(self.proc, signal.SIGKILL)
        return self.proc.returncode


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)  # start_new_session: the group id is the node's pid


@dataclass
class NodeSet:
    """Nodes of one test cluster, all stopped by stop_all()."""

    root: Path
    config: Path
    broker_url: str
    redis_url: str
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    nodes: list[WorkerNode] = field(default_factory=list)

    def cluster_env(self) -> dict[str, str]:
        env = dict(self.env)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
        env["REGBOT_BROKER_URL"] = self.broker_url
        env["REGBOT_REDIS_URL"] = self.redis_url
        env.pop("REGBOT_RESULT_BACKEND", None)
        return env

    def start(self, name: str, *, transfers: int = 2, queues: str = "scripts,transfers",
              lease: float | None = None, visibility_timeout: float | None = None,
              verbosity: str = "info", metrics_port: int | None = None,
              env: dict[str, str] | None = None, named: bool = True,
              extra: tuple[str, ...] = ()) -> WorkerNode:
        """Start node `name` (its log and working directory; `-n name` unless `named`
        is False, when the node picks its default name); `extra` are more flags."""
        cwd = self.root / name
        cwd.mkdir(parents=True, exist_ok=True)
        log_path = self.root / f"{name}.log"
        argv = [sys.executable, "-m", "regbot.cli", "worker", "-c", str(self.config),
                *(["-n", name] if named else []), "--transfers", str(transfers),
                "--queues", queues, "-v", verbosity]
        if lease:
            argv += ["--lease", str(lease)]
        if visibility_timeout:
            argv += ["--visibility-timeout", str(visibility_timeout)]
        if metrics_port:
            argv += ["--metrics-port", f"127.0.0.1:{metrics_port}"]
        argv += list(extra)
        # TMPDIR: what the node makes in temp (heartbeat, metrics directories) stays in the
        # test's directory, even when a test kills the node before it can clean up.
        node_env = {**self.cluster_env(), "TMPDIR": str(cwd), **(env or {})}
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, cwd=cwd, env=node_env,
                                    stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        # the default name is HOST-PID of the launcher (workers/launcher.py NodeOptions)
        node_name = name if named else f"{socket.gethostname()}-{proc.pid}"
        node = WorkerNode(node_name, proc, log_path, tuple(q for q in queues.split(",") if q))
        self.nodes.append(node)
        return node

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            while not node.ready():
                if not node.alive():
                    raise RuntimeError(f"worker node {node.name} exited with "
                                       f"{node.proc.returncode}:\n{node.log_text()[-3000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"worker node {node.name} not ready after {timeout}s:\n"
                                       f"{node.log_text()[-3000:]}")
                time.sleep(0.1)

    def once(self, *args: str, timeout: float = 150.0,
             config: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "regbot.cli", "once", "-c", str(config or self.config),
             *args],
            cwd=self.root, env=self.cluster_env(), capture_output=True, text=True,
            timeout=timeout)

    def once_async(self, *args: str, config: Path | None = None) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "regbot.cli", "once", "-c", str(config or self.config),
             *args],
            cwd=self.root, env=self.cluster_env(), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)

    def logs(self) -> str:
        return "\n".join(f"--- {n.name} ---\n{n.log_text()[-4000:]}" for n in self.nodes)

    def stop_all(self) -> None:
        for node in self.nodes:
            if node.alive():
                _signal_group(node.proc, signal.SIGTERM)
        for node in self.nodes:
            node.stop()


# --- RabbitMQ -------------------------------------------------------------------------------

DEFAULT_AMQP = ("127.0.0.1", 5672)
# The server script itself, not Debian's wrapper (which would `su rabbitmq`).
RABBITMQ_BINARY = next((b for b in ("/usr/lib/rabbitmq/bin/rabbitmq-server",
                                    shutil.which("rabbitmq-server"))
                        if b and os.path.exists(b)), None)


@dataclass
class RabbitMQ:
    """A RabbitMQ to test against: the system's (`proc` None, never stopped here) or a
    private one of this test's own, which `halt()` stops and `resume()` starts again on
    the same ports with the same data directory (durable queues and messages survive)."""

    url: str
    proc: subprocess.Popen | None = None
    root: Path | None = None
    env: dict[str, str] = field(default_factory=dict, repr=False)
    port: int = DEFAULT_AMQP[1]

    @property
    def private(self) -> bool:
        return self.root is not None

    def halt(self, timeout: float = 60.0) -> None:
        """Stop the private server (SIGTERM: RabbitMQ's own orderly shutdown)."""
        assert self.private, "only a private RabbitMQ may be stopped"
        if self.proc is None:
            return
        if self.proc.poll() is None:
            _signal_group(self.proc, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.proc, signal.SIGKILL)
                self.proc.wait(timeout=10)
        _signal_group(self.proc, signal.SIGKILL)  # any Erlang helper left in its group

    def resume(self, timeout: float = 90.0) -> None:
        """Start the private server again after `halt`, on the same ports."""
        assert self.private and self.root is not None
        with open(self.root / "server.out", "ab") as log:
            self.proc = subprocess.Popen([RABBITMQ_BINARY], env=self.env, cwd=self.root,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while not _answers("127.0.0.1", self.port):
            if self.proc.poll() is not None:
                out = (self.root / "server.out").read_text(errors="replace")[-500:]
                raise RuntimeError(f"rabbitmq-server exited with {self.proc.returncode}: {out}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"rabbitmq-server did not listen on 127.0.0.1:{self.port} "
                                   f"within {timeout}s")
            time.sleep(0.25)

    def stop(self) -> None:
        if not self.private:
            return  # the system's: not ours to stop
        self.halt()
        assert self.root is not None
        shutil.rmtree(self.root, ignore_errors=True)


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def start_rabbitmq(start_timeout: float = 90.0) -> RabbitMQ:
    """A private rabbitmq-server on free loopback ports, its data in a temp directory;
    raises RuntimeError when it cannot be had (RABBITMQ_BINARY None: not installed)."""
    if RABBITMQ_BINARY is None:
        raise RuntimeError("rabbitmq-server is not installed (apt-get install rabbitmq-server)")
    root = Path(tempfile.mkdtemp(prefix="regbot-rabbit-"))
    port, dist = free_port(), free_port()
    name = f"regbot{port}"
    env = dict(os.environ,
               RABBITMQ_NODENAME=f"{name}@localhost",
               RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
               RABBITMQ_NODE_PORT=str(port),
               RABBITMQ_DIST_PORT=str(dist),
               RABBITMQ_BASE=str(root),
               RABBITMQ_MNESIA_BASE=str(root / "mnesia"),
               RABBITMQ_LOG_BASE=str(root / "log"),
               RABBITMQ_CONFIG_FILE=str(root / "rabbitmq"),
               RABBITMQ_ENABLED_PLUGINS_FILE=str(root / "enabled_plugins"),
               RABBITMQ_PID_FILE=str(root / "rabbit.pid"),
               RABBITMQ_FEATURE_FLAGS_FILE=str(root / "feature_flags"),
               ERL_CRASH_DUMP=str(root / "erl_crash.dump"),
               HOME=str(root))
    (root / "rabbitmq.conf").write_text(
        f"listeners.tcp.default = 127.0.0.1:{port}\nloopback_users = none\n")
    (root / "enabled_plugins").write_text("[].\n")
    server = RabbitMQ(f"amqp://guest:guest@127.0.0.1:{port}//", root=root, env=env, port=port)
    try:
        server.resume(start_timeout)
    except Exception:
        server.stop()
        raise
    return server


def find_rabbitmq(start_timeout: float = 90.0, *, private: bool = False
                  ) -> tuple[RabbitMQ | None, str]:
    """(RabbitMQ, "") when one is usable, else (None, why not): the system's on
    127.0.0.1:5672 when it answers, unless `private`, else one started for the caller."""
    if not private and _answers(*DEFAULT_AMQP):
        return RabbitMQ("amqp://guest:guest@127.0.0.1:5672//"), ""
    if RABBITMQ_BINARY is None:
        where = "" if private else "no RabbitMQ answers on 127.0.0.1:5672 and "
        return None, f"{where}rabbitmq-server is not installed (apt-get install rabbitmq-server)"
    try:
        return start_rabbitmq(start_timeout), ""
    except (OSError, RuntimeError) as exc:
        return None, f"cannot start rabbitmq-server: {exc}"


def purge_queues(broker_url: str, redis_url: str) -> None:
    """Empty the regbot queues (a shared RabbitMQ may hold leftovers of another run)."""
    from workers.app import create_app
    from workers.settings import ClusterSettings

    settings = ClusterSettings.resolve(broker_url, None, redis_url, environ={})
    app = create_app(settings)
    try:
        app.control.purge()  # declares the task queues first, then empties them
    finally:
        app.close()


def transfer_in_progress(nodes: NodeSet, run, below: int = 2 * 1024 * 1024, timeout: float = 60
                         ) -> tuple[str, str]:
    """(task id, node name) of a transfer that has sent some bytes, fewer than `below`,
    as the cluster's result backend shows it."""
    store = redis.Redis.from_url(nodes.redis_url)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert run.poll() is None, run.communicate()
            for key in store.scan_iter("celery-task-meta-*"):
                raw = store.get(key)
                meta = json.loads(raw) if raw else {}
                result = meta.get("result") or {}
                if meta.get("status") == "PROGRESS" and 0 < result.get("bytes_done", 0) < below:
                    node = result["hostname"].split("@", 1)[1]
                    return key.decode().removeprefix("celery-task-meta-"), node
            time.sleep(0.05)
    finally:
        store.close()
    raise AssertionError("no transfer was seen in progress")
