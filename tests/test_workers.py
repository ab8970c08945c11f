"""The worker half of the cluster, in one process: settings, the app's configuration, the
script lock, the per-task guard, the CeleryExecutor (its dependency logic against a
scripted result backend, and end to end in Celery's eager mode against real registries),
the log/progress stream, the transfer retries, and `once` failing fast without a cluster.

Shared state lives on a fresh fakeredis server per test.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import fakeredis
import pytest

from regbot.config import parse_config
from regbot.copy import CopyOptions, LocalExecutor, copy_image
from regbot.copy.cancel import CancelToken
from regbot.copy.errors import CopyCancelled
from regbot.copy.executors import ExecContext
from regbot.copy.progress import (
    AggregatingListener,
    CompositeListener,
    ProgressEvent,
    ProgressListener,
)
from regbot.copy.units import BlobUnit, ManifestUnit, Unit, UnitResult
from regbot.engine import Engine
from regbot.errors import ConfigError, DigestMismatch, LimitTimeout, NotFound, TransportError
from regbot.limits import Limits
from regbot.logs import add_secrets, clear_secrets, configure_logging, get_logger
from regbot.runner import RunOptions, run_script, run_script_locked, script_lock_name
from regbot.types.ref import Reference
from tests.support import images as im
from tests.support.fronts import FaultFront
from tests.support.registry import free_port
from workers import context, jobs, liveness
from workers.app import app_config, create_app
from workers.executor import CeleryExecutor, UnitFailed, rebuild_error
from workers.launcher import NodeOptions, _Node, worker_commands, worker_env
from workers.liveness import Health, Heartbeat, HeartbeatWatch
from workers.logstream import RunFollower, RunStream, StreamProgress, relay_logs
from workers.settings import (
    QUEUE_SCRIPTS,
    QUEUE_TRANSFERS,
    SCRIPT_TASK,
    TRANSFER_TASK,
    ClusterSettings,
)
from workers.submit import ClusterUnavailable, check_cluster
from workers.tasks import register

# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def store():
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    yield client
    client.close()


@pytest.fixture
def limits(store):
    return Limits(store, lease=2.0)


@pytest.fixture
def eager_app():
    """A regbot app whose tasks run inside apply_async (Celery's eager mode)."""
    settings = ClusterSettings("memory://", "cache+memory://", "redis://127.0.0.1:1/0")
    app = create_app(settings)
    app.conf.task_always_eager = True
    register(app)
    yield app
    app.close()


@pytest.fixture
def logcap():
    stream = io.StringIO()
    configure_logging("debug", json_format=True, stream=stream)
    yield stream
    configure_logging("info")


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line]


def worker_config(tmp_path, registry, registry2, scripts: str = "", parallel: int = 1):
    path = tmp_path / "regbot.yml"
    path.write_text(
        "version: 1\n"
        "creds:\n"
        f"  - registry: src.test\n    hostname: {registry.host}\n    tls: disabled\n"
        f"  - registry: dst.test\n    hostname: {registry2.host}\n    tls: disabled\n"
        f"defaults:\n  parallel: {parallel}\n"
        + (f"scripts:\n{scripts}" if scripts else "scripts: []\n"))
    return path


def install_worker_ctx(tmp_path, registry, registry2, store, redis_url):
    path = worker_config(tmp_path, registry, registry2, scripts=(
        "  - name: copy\n"
        "    script: |\n"
        "      image.copy(\"src.test/${REPO}:v1\", \"dst.test/${REPO}-script:v1\")\n"))
    settings = ClusterSettings("memory://", "cache+memory://", redis_url)
    ctx = context.WorkerContext.with_store(settings, str(path), store, lease=2.0)
    context.set_current(ctx)
    return ctx


@pytest.fixture
def worker_ctx(tmp_path, store, registry, registry2):
    """This process as a worker: config file naming src.test and dst.test, fakeredis store."""
    yield install_worker_ctx(tmp_path, registry, registry2, store, "redis://127.0.0.1:1/0")
    context.set_current(None)


@pytest.fixture
def redis_worker_ctx(tmp_path, redis_server, registry, registry2):
    """The same on a database of the real redis-server: a script run builds its own client
    on the cluster's Redis URL, as on a worker."""
    url = redis_server.url_for(14)
    client = redis_server.client(14)
    client.flushdb()
    yield install_worker_ctx(tmp_path, registry, registry2, client, url)
    context.set_current(None)
    client.flushdb()
    client.close()


def set_script_repo(ctx: context.WorkerContext, repo: str) -> None:
    path = ctx.config_path
    with open(path) as fh:
        text = fh.read()
    with open(path, "w") as fh:
        fh.write(text.replace("${REPO}", repo))


# --- settings and app ----------------------------------------------------------------------


def test_settings_resolution_and_sanitising():
    env = {"REGBOT_BROKER_URL": "amqp://user:brokerpw@mq:5672//",
           "REGBOT_REDIS_URL": "redis://:redispw@cache:6379/1"}
    s = ClusterSettings.resolve(environ=env)
    assert s.broker_url == env["REGBOT_BROKER_URL"]
    assert s.redis_url == s.result_backend == env["REGBOT_REDIS_URL"]  # backend: the Redis
    assert "brokerpw" not in repr(s) and "redispw" not in s.describe()
    assert sorted(s.secrets()) == ["brokerpw", "redispw"]
    # flags win over the environment; Redis found through the backend or the broker
    s = ClusterSettings.resolve("redis://b:6379/0", None, None, environ=env)
    assert s.broker_url == "redis://b:6379/0" and s.redis_url == env["REGBOT_REDIS_URL"]
    s = ClusterSettings.resolve("redis://b:6379/0", environ={})
    assert s.redis_url == s.result_backend == "redis://b:6379/0"
    s = ClusterSettings.resolve("amqp://mq//", "redis://r:6379/2", environ={})
    assert s.redis_url == "redis://r:6379/2"
    # no broker: embedded, unless the command has a default broker
    assert ClusterSettings.resolve(environ={}) is None
    assert ClusterSettings.resolve(environ={}, default_broker="redis://x:6379/0") is not None
    with pytest.raises(ConfigError, match="REGBOT_REDIS_URL") as err:
        ClusterSettings.resolve("amqp://u:pw123@mq//", environ={})
    assert "pw123" not in str(err.value)


def test_app_configuration_json_events_acks_on_start(eager_app):
    conf = app_config(ClusterSettings("redis://h:6379/0", "redis://h:6379/1", "redis://h:6379/2"),
                      visibility_timeout=120)
    assert conf["task_serializer"] == conf["result_serializer"] == "json"
    assert conf["accept_content"] == ["json"] and conf["result_accept_content"] == ["json"]
    assert conf["worker_send_task_events"] and conf["task_send_sent_event"]
    # acked on start: nothing for kombu to restore after a broker outage; a lost transfer
    # is sent again by its script (lease), not redelivered by the broker
    assert not conf["task_acks_late"]
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["broker_connection_retry_on_startup"]
    assert conf["broker_connection_max_retries"] is None
    assert conf["broker_transport_options"]["visibility_timeout"] == 120
    assert conf["task_routes"][SCRIPT_TASK]["queue"] == QUEUE_SCRIPTS
    assert conf["task_routes"][TRANSFER_TASK]["queue"] == QUEUE_TRANSFERS
    amqp = app_config(ClusterSettings("amqp://mq//", "redis://h:6379/1", "redis://h:6379/1"))
    assert "broker_transport_options" not in amqp
    script, transfer = eager_app.tasks[SCRIPT_TASK], eager_app.tasks[TRANSFER_TASK]
    assert not transfer.acks_late
    assert not script.acks_late  # a long run must not outlive RabbitMQ's consumer timeout


def test_node_runs_one_worker_per_queue(tmp_path):
    settings = ClusterSettings("redis://:pw@h:6379/0", "redis://:pw@h:6379/0",
                               "redis://:pw@h:6379/0")
    opts = NodeOptions(config_path="regbot.yml", settings=settings, parallel=1, transfers=3,
                       node_name="n1", lease=5, visibility_timeout=30)
    commands = dict(worker_commands(opts))
    assert set(commands) == {"scripts", "transfers"}
    scripts, transfers = commands["scripts"], commands["transfers"]
    assert scripts[scripts.index("-Q") + 1] == "scripts"
    assert scripts[scripts.index("-c") + 1] == "1"  # defaults.parallel
    assert transfers[transfers.index("-c") + 1] == "3"  # --transfers
    assert transfers[transfers.index("-n") + 1] == "transfers@n1"
    assert "-E" in scripts and scripts[scripts.index("--prefetch-multiplier") + 1] == "1"
    env = worker_env(opts, base={})
    assert env["REGBOT_CONFIG"].endswith("regbot.yml") and env["REGBOT_CONFIG"].startswith("/")
    assert env["REGBOT_LEASE"] == "5" and env["REGBOT_VISIBILITY_TIMEOUT"] == "30"
    only = NodeOptions(config_path="c", settings=settings, parallel=2, queues=["transfers"])
    assert [q for q, _ in worker_commands(only)] == ["transfers"]


def test_heartbeat_file_says_serving_then_stopping_and_goes_stale(tmp_path):
    path = tmp_path / "transfers"
    watch = HeartbeatWatch(path, stale_after=10)
    assert watch.health(0) is Health.STARTING  # nothing written yet
    beat = Heartbeat(path, every=3600)  # written once, at start
    beat.start()
    assert watch.health(100) is Health.SERVING
    assert watch.health(105) is Health.SERVING
    assert watch.health(111) is Health.HUNG  # unchanged for more than 10 s of our clock
    beat.stopping()
    assert watch.health(112) is Health.STOPPING


def test_launcher_ends_and_restarts_a_process_whose_heartbeat_stopped(tmp_path, monkeypatch):
    """A real child whose heartbeat is old (a hung main process): told to stop cold after
    the grace period (SIGQUIT ends this one), then started again after the backoff."""
    hung = ("import os, pathlib, time; p = pathlib.Path(os.environ['REGBOT_HEARTBEAT_FILE']); "
            "p.write_text('serving'); time.sleep(60)")
    monkeypatch.setattr(liveness, "STALE_AFTER", 0.5)
    settings = ClusterSettings("redis://h:6379/0", "redis://h:6379/0", "redis://h:6379/0")
    opts = NodeOptions(config_path="regbot.yml", settings=settings, parallel=1,
                       node_name="n1", grace=0.2)
    node = _Node(opts, {}, tmp_path)
    node.start("transfers", [sys.executable, "-c", hung])
    worker = node.workers["transfers"]
    first = worker.proc
    try:
        deadline = time.monotonic() + 20
        while worker.proc is first or worker.proc is None:
            assert time.monotonic() < deadline, "not restarted"
            node._watch(worker, time.monotonic())
            time.sleep(0.05)
        assert first.returncode == -signal.SIGQUIT
        assert worker.exits and worker.ending == ""  # a fresh process, nothing held against it
    finally:
        node.kill_all()


# --- the script lock -------------------------------------------------------------------------


def _script(text: str = 'log("hello")', name: str = "s1"):
    return parse_config(f"version: 1\nscripts:\n  - name: {name}\n    script: |\n      {text}\n")


def test_script_lock_skips_an_overlapping_run(limits, logcap):
    config = _script()
    script = config.scripts[0]
    holder = limits.lock(script_lock_name("s1"), ttl=30)
    assert holder.acquire()
    try:
        result = run_script_locked(Engine(config, limits), script, RunOptions())
    finally:
        holder.release()
    assert result.status == "skipped" and result.ok and result.error == ""
    assert any(r["msg"] == "Skipping run, previous run still going" and r["script"] == "s1"
               for r in lines(logcap))
    # free again: the next run happens, and releases the lock when done
    assert run_script_locked(Engine(config, limits), script, RunOptions()).status == "ok"
    assert limits.lock(script_lock_name("s1"), ttl=1).acquire()


def test_script_lock_is_held_during_the_run_and_expires_with_a_dead_holder(limits):
    config = _script('local t = os.clock() while os.clock() - t < 1 do end')
    script = config.scripts[0]
    results = []
    thread = threading.Thread(target=lambda: results.append(
        run_script_locked(Engine(config, limits), script, RunOptions(), lease=0.6)))
    thread.start()
    time.sleep(0.3)
    # a second run while the first goes (past its own lease: keep_alive renews it)
    time.sleep(0.5)
    assert run_script_locked(Engine(config, limits), script, RunOptions()).status == "skipped"
    thread.join()
    assert results[0].status == "ok"
    # a holder that died (never renews): the lock frees itself after its lease
    dead = limits.lock(script_lock_name("s1"), ttl=0.4)
    assert dead.acquire()
    assert run_script_locked(Engine(config, limits), script, RunOptions()).status == "skipped"
    time.sleep(0.5)
    assert run_script_locked(Engine(config, limits), script, RunOptions()).status == "ok"


# --- the per-task guard ----------------------------------------------------------------------


def test_task_guard_runs_one_delivery_at_a_time_and_only_until_done(limits, store):
    ran = []
    with jobs.task_guard(limits, "t1", wait=False):
        # a duplicate delivery while the first runs: scripts give up at once
        with pytest.raises(jobs.Duplicate), jobs.task_guard(limits, "t1", wait=False):
            ran.append("dup")
        ran.append("first")
    # done: any later delivery does nothing
    with pytest.raises(jobs.Duplicate), jobs.task_guard(limits, "t1", wait=True):
        ran.append("late")
    assert ran == ["first"]
    # a failed delivery is not "done": the next one runs
    with pytest.raises(RuntimeError), jobs.task_guard(limits, "t2", wait=False):
        raise RuntimeError("boom")
    with jobs.task_guard(limits, "t2", wait=False):
        ran.append("retry")
    assert ran == ["first", "retry"]


def test_task_guard_waits_for_a_live_holder_and_takes_over_from_a_dead_one(limits, store):
    dead = limits.lock(jobs.task_guard_name("t3"), ttl=0.5)  # a holder that never renews
    assert dead.acquire()
    started = time.monotonic()
    with jobs.task_guard(limits, "t3", wait=True, lease=0.5):
        waited = time.monotonic() - started
    assert 0.3 < waited < 3


# --- the executor's dependency logic, against a scripted result backend --------------------


@dataclass
class FakeTask:
    id: str
    unit: dict[str, Any]
    polls: int = 0
    state: str = "PENDING"
    result: Any = None


@dataclass
class FakeCluster:
    """Stands in for broker + workers + backend: each look at a task's state may move it
    on (PENDING -> STARTED -> PROGRESS -> SUCCESS/FAILURE) at random, so units finish in
    any order. `fail` names a unit id whose transfer fails."""

    seed: int = 0
    fail: str = ""
    tasks: dict[str, FakeTask] = field(default_factory=dict)
    sent: list[str] = field(default_factory=list)  # unit ids in send order
    finished: set[str] = field(default_factory=set)
    revoked: list[str] = field(default_factory=list)
    max_in_flight: int = 0
    violations: list[str] = field(default_factory=list)
    deps: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.ids = itertools.count()
        self.conf = SimpleNamespace(task_always_eager=False)
        self.control = SimpleNamespace(revoke=lambda ids: self.revoked.extend(ids))

    # the Celery app surface the executor uses
    def signature(self, name, args, kwargs, **options):
        assert name == TRANSFER_TASK and options["queue"] == QUEUE_TRANSFERS
        assert "raw" not in options["argsrepr"]  # readable in Flower, no manifest bodies
        return SimpleNamespace(apply_async=lambda: self._send(args[0], kwargs["run"]))

    def _send(self, unit: dict[str, Any], run: dict[str, Any]):
        missing = [d for d in unit["deps"] if d not in self.finished]
        if missing:
            self.violations.append(f"{unit['id']} sent before {missing}")
        task = FakeTask(f"task-{next(self.ids)}", unit)
        self.tasks[task.id] = task
        self.sent.append(unit["id"])
        running = sum(t.state not in ("SUCCESS", "FAILURE") for t in self.tasks.values())
        self.max_in_flight = max(self.max_in_flight, running)
        return SimpleNamespace(id=task.id, backend=self, forget=lambda: None)

    def get_task_meta(self, task_id: str) -> dict[str, Any]:
        task = self.tasks[task_id]
        task.polls += 1
        if self.rng.random() < 0.5 and task.state not in ("SUCCESS", "FAILURE"):
            task.state = {"PENDING": "STARTED", "STARTED": "PROGRESS"}.get(task.state, "DONE")
            if task.state == "PROGRESS":
                task.result = {"bytes_done": 1}
            elif task.state == "DONE":
                if task.unit["id"] == self.fail:
                    task.state = "FAILURE"
                    task.result = UnitFailed("NotFound", f"copy blob {task.unit['id']}: gone")
                else:
                    task.state = "SUCCESS"
                    self.finished.add(task.unit["id"])
                    task.result = UnitResult(task.unit["id"], task.unit["kind"],
                                             "copied" if task.unit["kind"] == "blob"
                                             else "pushed", "sha256:x", 10).to_dict()
        return {"status": task.state, "result": task.result}


def plan_units(width: int = 6) -> list:
    """An index of two images, each with `width` blobs: blobs, then images, then the index."""
    units = []
    for image in range(2):
        blob_ids = []
        for b in range(width):
            uid = f"blob-{image}-{b}"
            blob_ids.append(uid)
            units.append(BlobUnit(uid, "src.test/r@sha256:aa", "dst.test/r@sha256:aa",
                                  descriptor={"digest": f"sha256:{image}{b}", "size": 100 + b}))
        units.append(ManifestUnit(f"img-{image}", "src.test/r@sha256:bb", "dst.test/r@sha256:bb",
                                  deps=blob_ids, manifest_digest=f"sha256:m{image}",
                                  raw=b"{}" * 200))
    units.append(ManifestUnit("index", "src.test/r:v1", "dst.test/r:v1",
                              deps=["img-0", "img-1"], manifest_digest="sha256:idx"))
    return units


class Recorder(ProgressListener):
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def _add(self, name: str, event: ProgressEvent) -> None:
        with self.lock:
            self.events.append((name, event.unit_id))

    def started(self, event):
        self._add("started", event)

    def bytes_done(self, event):
        self._add("bytes_done", event)

    def finished(self, event):
        self._add("finished", event)

    def failed(self, event):
        self._add("failed", event)


@pytest.mark.parametrize("seed", range(5))
def test_executor_sends_units_only_when_their_deps_are_done(store, seed):
    cluster = FakeCluster(seed=seed)
    units = plan_units()
    recorder = Recorder()
    counter = AggregatingListener()
    executor = CeleryExecutor(cluster, Limits(store), max_in_flight=3, poll_fallback=0.01)
    results = executor.run(units, ExecContext(None, CompositeListener([counter, recorder])))
    assert cluster.violations == []
    assert [r.id for r in results] == [u.id for u in units]  # in the order of `units`
    assert cluster.max_in_flight <= 3
    # the largest blobs are sent first; the index last
    assert cluster.sent[0] == "blob-0-5" and cluster.sent[-1] == "index"
    # every unit replayed: started before its terminal event, bytes from PROGRESS states
    for unit in units:
        names = [n for n, uid in recorder.events if uid == unit.id]
        assert names[0] == "started" and names[-1] == "finished", (unit.id, names)
    result = counter.result()
    assert (result.blobs_copied, result.manifests, result.bytes_copied) == (12, 3, 120)
    assert cluster.revoked == []


def test_executor_first_failure_stops_the_copy_and_revokes_the_rest(store):
    cluster = FakeCluster(seed=3, fail="blob-0-5")  # the first unit sent
    recorder = Recorder()
    executor = CeleryExecutor(cluster, Limits(store), max_in_flight=4, poll_fallback=0.01)
    with pytest.raises(NotFound, match="copy blob blob-0-5: gone") as err:
        executor.run(plan_units(), ExecContext(None, recorder))
    assert err.value.copy_unit == "blob-0-5"
    # nothing that depends on the failed blob was sent; what was in flight is revoked
    assert "img-0" not in cluster.sent and "index" not in cluster.sent
    in_flight = [t.id for t in cluster.tasks.values()
                 if t.state not in ("SUCCESS", "FAILURE")]
    assert sorted(cluster.revoked) == sorted(in_flight)
    assert ("failed", "blob-0-5") in recorder.events
    # and running units are told to stop through Redis
    keys = [k.decode() for k in store.scan_iter("regbot:cancel:copy:*")]
    assert len(keys) == 1 and b"gone" in store.get(keys[0])


def test_executor_honours_the_cancel_token(store):
    cluster = FakeCluster(seed=1)
    token = CancelToken()
    polls = itertools.count()
    original = cluster.get_task_meta

    def meta(task_id):
        if next(polls) == 5:
            token.cancel("script timed out")
        return original(task_id)

    cluster.get_task_meta = meta
    executor = CeleryExecutor(cluster, Limits(store), cancel=token, max_in_flight=2,
                              poll_fallback=0.01)
    with pytest.raises(CopyCancelled, match="script timed out"):
        executor.run(plan_units(), ExecContext(None))
    assert cluster.revoked and "index" not in cluster.sent


def test_failed_units_come_back_with_their_own_error_type():
    unit = BlobUnit("b1", "src.test/r@sha256:aa", "dst.test/r@sha256:aa",
                    descriptor={"digest": "sha256:aa", "size": 1})
    err = rebuild_error(UnitFailed("DigestMismatch", "copy blob sha256:aa: digest mismatch"), unit)
    assert isinstance(err, DigestMismatch) and str(err) == "copy blob sha256:aa: digest mismatch"
    assert isinstance(rebuild_error(UnitFailed("CopyCancelled", "stopped"), unit), CopyCancelled)
    other = rebuild_error(ValueError("worker lost"), unit)
    assert "transfer task failed: ValueError: worker lost" in str(other)
    assert "copy blob sha256:aa" in str(other)


# --- the executor in eager mode: same results as the local executor ------------------------


@pytest.mark.parametrize("spread", [False, True], ids=["units-here", "sent-whole"])
def test_celery_and_local_executors_copy_alike(eager_app, worker_ctx, store, registry, repo,
                                               spread):
    index = im.build_index(("linux/amd64", "linux/arm64"), layers=3, seed=71)
    im.push_image(registry.host, repo, index, tag="v1")
    client = worker_ctx.engine(eager_app).client
    src = Reference.parse(f"src.test/{repo}:v1")
    local = copy_image(client, src, Reference.parse(f"dst.test/{repo}-local:v1"),
                       CopyOptions(), executor=LocalExecutor())
    recorder = Recorder()
    celery = copy_image(client, src, Reference.parse(f"dst.test/{repo}-celery:v1"),
                        CopyOptions(), progress=recorder,
                        executor=CeleryExecutor(eager_app, Limits(store), spread_copies=spread))
    assert celery.to_dict() == local.to_dict()
    assert celery.blobs_copied == 8 and celery.manifests == 3  # 2 x (config + 3 layers)
    host2 = worker_ctx.config().creds[1].hostname
    for name in (f"{repo}-local", f"{repo}-celery"):
        got = im.head_manifest(host2, name, "v1")
        assert got.headers["Docker-Content-Digest"] == index.digest
        for digest in index.all_blobs():
            assert im.blob_exists(host2, name, digest)
    assert sum(1 for name, _ in recorder.events if name == "started") == 11
    # a second copy finds everything there, through either executor
    again = copy_image(client, src, Reference.parse(f"dst.test/{repo}-celery:v1"),
                       CopyOptions(force_recursive=True),
                       executor=CeleryExecutor(eager_app, Limits(store)))
    assert again.blobs_copied == 0 and again.blobs_skipped == 8


def test_a_failing_transfer_fails_with_the_units_error(eager_app, worker_ctx, store, registry,
                                                      repo):
    img = im.build_image(seed=72, layers=2)
    im.push_image(registry.host, repo, img, tag="v1")
    front = FaultFront(registry)
    try:
        # the source registry loses a layer: 404 on its GET (HEAD answers, so it is planned)
        front.add("GET", f"/blobs/{img.layers[1]['digest']}", "status", times=-1, status=404,
                  body=json.dumps({"errors": [{"code": "BLOB_UNKNOWN",
                                               "message": "blob unknown"}]}).encode())
        path = Path(worker_ctx.config_path)
        path.write_text(path.read_text().replace(registry.host, front.host))
        client = worker_ctx.engine(eager_app).client
        src = Reference.parse(f"src.test/{repo}:v1")
        errors = []
        for name, executor in (
                ("local", LocalExecutor()),
                ("celery", CeleryExecutor(eager_app, Limits(store))),
                ("whole", CeleryExecutor(eager_app, Limits(store), spread_copies=True))):
            with pytest.raises(NotFound) as err:
                copy_image(client, src, Reference.parse(f"dst.test/{repo}-{name}:v1"),
                           executor=executor)
            errors.append(str(err.value).replace(f"{repo}-{name}", "TARGET"))
        assert errors[0] == errors[1] == errors[2]
        assert img.layers[1]["digest"] in errors[1]
    finally:
        front.stop()


def test_script_task_runs_under_the_lock_and_relays_to_once(eager_app, redis_worker_ctx,
                                                            registry, repo):
    worker_ctx = redis_worker_ctx
    img = im.build_image(seed=73, layers=3)
    im.push_image(registry.host, repo, img, tag="v1")
    set_script_repo(worker_ctx, repo)
    stream = RunStream(worker_ctx.limits(), "run1")
    result = eager_app.tasks[SCRIPT_TASK].apply_async(
        args=("copy",), kwargs={"run_id": "run1", "log_level": logging.DEBUG}).get()
    assert result["status"] == "ok", result
    assert (result["images_copied"], result["blobs_copied"]) == (1, 4)
    # the same counts as the embedded run of the same script (local executor)
    config = worker_ctx.config()
    script = config.script("copy")
    script.script = script.script.replace(f"{repo}-script", f"{repo}-embedded")
    embedded = run_script(Engine.embedded(config), script, RunOptions())
    assert {k: v for k, v in embedded.to_dict().items() if k != "duration"} == \
        {k: v for k, v in result.items() if k != "duration"}
    # what `once` reads back: the log lines (debug included) and the progress
    entries = [e for _, e in stream.read("0")]
    msgs = [e["msg"] for e in entries if e["t"] == "log"]
    assert "Starting script" in msgs and "Copy image" in msgs
    copy_line = next(e for e in entries if e.get("msg") == "Copy image")
    assert copy_line["fields"]["source"].endswith(f"{repo}:v1")
    progress = [(e["event"], e["data"]["kind"]) for e in entries if e["t"] == "progress"]
    assert progress.count(("finished", "blob")) == 4 and ("finished", "manifest") in progress
    # a `once` without a live display asks for the log lines alone
    quiet = RunStream(worker_ctx.limits(), "run2")
    eager_app.tasks[SCRIPT_TASK].apply_async(
        args=("copy",), kwargs={"run_id": "run2", "progress": False}).get()
    kinds = {e["t"] for _, e in quiet.read("0")}
    assert "log" in kinds and "progress" not in kinds
    # a second delivery of the same task id does nothing (Ignore)
    task_id = "fixed-id"
    first = eager_app.tasks[SCRIPT_TASK].apply_async(args=("copy",), task_id=task_id).get()
    assert first["status"] == "ok"
    again = eager_app.tasks[SCRIPT_TASK].apply_async(args=("copy",), task_id=task_id)
    assert again.state == "IGNORED"


def test_script_task_names_a_script_missing_from_the_workers_config(eager_app, worker_ctx):
    result = eager_app.tasks[SCRIPT_TASK].apply_async(args=("nope",)).get()
    assert result["status"] == "failed"
    assert "script 'nope' is not in the worker's config" in result["error"]


# --- transfer retries ----------------------------------------------------------------------


def test_transient_failures_are_retried_with_backoff(monkeypatch, worker_ctx):
    """The copy engine retries a unit (regbot/copy/execute.py); a transfer task gets the
    same retries as an embedded copy."""
    from regbot.copy import execute

    monkeypatch.setattr(execute, "RETRY_BASE", 0.01)
    unit = BlobUnit("b1", "src.test/r@sha256:aa", "dst.test/r@sha256:aa",
                    descriptor={"digest": "sha256:aa", "size": 1})
    calls = []

    def flaky(client, unit, *args):
        calls.append(1)
        if len(calls) < 3:
            raise TransportError("dst.test", "connection reset")
        return UnitResult(unit.id, "blob", "copied", "sha256:aa", 1)

    monkeypatch.setattr(execute, "_execute_once", flaky)
    out = jobs.transfer_job(unit.to_dict(), "s", {}, task_id="x1", hostname="transfers@n")
    assert out["status"] == "copied" and out["hostname"] == "transfers@n" and len(calls) == 3

    def always(client, unit, *args):
        calls.append(1)
        raise TransportError("dst.test", "connection refused")

    calls.clear()
    monkeypatch.setattr(execute, "_execute_once", always)
    with pytest.raises(UnitFailed, match="connection refused") as err:
        jobs.transfer_job(unit.to_dict(), "s", {}, task_id="x2")
    assert err.value.error_type == "TransportError" and len(calls) == execute.UNIT_ATTEMPTS

    def timeout(client, unit, *args):
        calls.append(1)
        raise LimitTimeout("blob claim: still held")

    calls.clear()
    monkeypatch.setattr(execute, "_execute_once", timeout)
    with pytest.raises(UnitFailed):
        jobs.transfer_job(unit.to_dict(), "s", {}, task_id="x3")
    assert len(calls) == 1  # waiting longer is not what a retry is for


def test_transfer_stops_when_its_copy_is_cancelled(worker_ctx, store, monkeypatch):
    unit = BlobUnit("b1", "src.test/r@sha256:aa", "dst.test/r@sha256:aa",
                    descriptor={"digest": "sha256:aa", "size": 1})
    store.set(Limits(store).keys.copy_cancel("c1"), "blob b2 failed")
    with pytest.raises(UnitFailed, match="copy stopped: blob b2 failed") as err:
        jobs.transfer_job(unit.to_dict(), "s", {"copy_id": "c1"}, task_id="y1")
    assert err.value.error_type == "CopyCancelled"


# --- the run stream --------------------------------------------------------------------------


def test_run_stream_sends_entries_in_batches_in_order(store, monkeypatch):
    """A burst of events costs one round trip, not one each; they arrive in order, by
    the process's flusher soon after or by flush() at the end of the task."""
    stream = RunStream(Limits(store), "batch")
    sent = []
    real = store.pipeline

    def counting_pipeline(*args, **kwargs):
        sent.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "pipeline", counting_pipeline)
    progress = StreamProgress(stream, "s1")
    for n in range(200):
        progress.finished(ProgressEvent("blob", f"b{n}", "a", "b", "d", n, n))
    stream.flush()
    entries = [e for _, e in stream.read("0", count=1000)]
    assert [e["data"]["unit_id"] for e in entries] == [f"b{n}" for n in range(200)]
    assert 1 <= len(sent) <= 3
    progress.finished(ProgressEvent("blob", "late", "a", "b", "d", 1, 1))
    deadline = time.monotonic() + 10
    while len(stream.read("0", count=1000)) < 201 and time.monotonic() < deadline:
        time.sleep(0.02)  # the flusher sends it without flush()
    assert stream.read("0", count=1000)[-1][1]["data"]["unit_id"] == "late"


def test_run_stream_relays_redacted_lines_and_progress(store):
    clear_secrets()
    add_secrets(["hunter2-secret"])
    try:
        stream = RunStream(Limits(store), "abc")
        log = get_logger("regbot.script")
        with relay_logs(stream, "s1", logging.DEBUG):
            log.debug("token is hunter2-secret", extra={"fields": {"script": "s1", "n": 3}})
        log.info("after the run: not relayed")
        StreamProgress(stream, "s1").finished(ProgressEvent("blob", "b1", "a", "b", "d", 5, 5))
        stream.flush()
        entries = [e for _, e in stream.read("0")]
        assert len(entries) == 2
        assert entries[0]["msg"] == "token is ***" and entries[0]["level"] == logging.DEBUG
        assert entries[0]["fields"] == {"script": "s1", "n": 3}
        assert "hunter2" not in json.dumps(entries)

        # `once` replays them: the line through its own logging, the event to its listener
        out = io.StringIO()
        configure_logging("debug", json_format=True, stream=out)
        recorder = Recorder()
        follower = RunFollower(stream, lambda script: recorder if script == "s1" else None)
        assert follower.poll(block=0.1) == 2
        follower.drain()
        line = json.loads(out.getvalue().splitlines()[0])
        assert line["msg"] == "token is ***" and line["script"] == "s1" and line["n"] == 3
        assert recorder.events == [("finished", "b1")]
        stream.cancel("interrupted")
        assert stream.cancelled() == "interrupted"
    finally:
        clear_secrets()
        configure_logging("info")


# --- `once` without a reachable cluster ---------------------------------------------------------


def test_once_fails_fast_when_redis_is_unreachable(tmp_path):
    port = free_port()
    settings = ClusterSettings.resolve(f"redis://127.0.0.1:{port}/0", environ={})
    started = time.monotonic()
    with pytest.raises(ClusterUnavailable, match=f"cannot reach Redis at redis://127.0.0.1:{port}/0"):
        check_cluster(settings)
    assert time.monotonic() - started < 15

    config = tmp_path / "regbot.yml"
    config.write_text('version: 1\nscripts:\n  - name: s\n    script: log("x")\n')
    proc = subprocess.run(
        [sys.executable, "-m", "regbot.cli", "once", "-c", str(config),
         "--broker", f"redis://:pa55word@127.0.0.1:{port}/0"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(context.__file__).rsplit("/workers/", 1)[0]})
    assert proc.returncode == 1
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("regbot: error: cannot reach Redis at"), proc.stderr
    assert "pa55word" not in proc.stderr


def test_once_fails_fast_when_the_broker_is_unreachable(redis_server):
    port = free_port()
    settings = ClusterSettings.resolve(f"amqp://guest:brokerpw@127.0.0.1:{port}//",
                                       redis_url=redis_server.url, environ={})
    started = time.monotonic()
    with pytest.raises(ClusterUnavailable) as err:
        check_cluster(settings)
    assert time.monotonic() - started < 20
    message = str(err.value)
    assert message.startswith(f"cannot reach the broker at amqp://guest:***@127.0.0.1:{port}")
    assert "brokerpw" not in message and "\n" not in message


def test_once_reports_a_script_whose_worker_died(store, monkeypatch):
    from workers import submit

    monkeypatch.setattr(submit, "LOST_GRACE", 0.3)
    limits = Limits(store)
    guard = limits.lock(jobs.task_guard_name("alive"), ttl=30)  # a live worker's guard
    assert guard.acquire()
    started = time.monotonic()

    def meta(task_id):
        if task_id == "alive" and time.monotonic() - started > 1.0:
            return {"status": "SUCCESS", "result": {"name": "s1", "status": "ok"}}
        return {"status": "STARTED", "result": {"hostname": "scripts@n", "pid": 1}}

    backend = SimpleNamespace(get_task_meta=meta)
    pending = {tid: (name, SimpleNamespace(id=tid, backend=backend, forget=lambda: None))
               for tid, name in (("alive", "s1"), ("dead", "s2"))}
    done = []
    results = submit._wait(pending, RunFollower(RunStream(limits, "r1")), limits, done.append)
    assert results["s1"].status == "ok"  # waited for: its guard was held all along
    assert results["s2"].status == "failed"
    assert results["s2"].error == ("script 's2': the worker running it (scripts@n) stopped "
                                   "before it finished")
    assert [r.name for r in done] == ["s2", "s1"]


class LossyCluster:
    """A transfers queue whose first delivery of each task dies after starting (its guard
    taken and never renewed); a delivery sent again under the same id finishes."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.sends: list[tuple[str, str | None]] = []  # (unit id, task_id option)
        self.state: dict[str, dict[str, Any]] = {}
        self.conf = SimpleNamespace(task_always_eager=False)
        self.control = SimpleNamespace(revoke=lambda ids: None)
        self.ids = itertools.count()

    def signature(self, name, args, kwargs, **options):
        return SimpleNamespace(apply_async=lambda: self._send(args[0], options.get("task_id")))

    def _send(self, unit: dict[str, Any], task_id: str | None):
        self.sends.append((unit["id"], task_id))
        if task_id is None:  # first delivery: starts, holds a guard for 0.2 s, dies
            task_id = f"t{next(self.ids)}"
            self.limits.lock(jobs.task_guard_name(task_id), ttl=0.2).acquire()
            self.state[task_id] = {"status": "STARTED", "result": {"hostname": "x@dead"}}
        else:  # sent again: this delivery does the work
            self.state[task_id] = {"status": "SUCCESS", "result": UnitResult(
                unit["id"], "blob", "copied", "sha256:x", 10).to_dict()}
        return SimpleNamespace(id=task_id, backend=self, forget=lambda: None)

    def get_task_meta(self, task_id: str) -> dict[str, Any]:
        return self.state.get(task_id, {"status": "PENDING", "result": None})


def test_executor_sends_a_dead_nodes_unit_again_under_its_id(store):
    limits = Limits(store)
    cluster = LossyCluster(limits)
    units = [BlobUnit(f"blob-{i}", "src.test/r@sha256:aa", "dst.test/r@sha256:aa",
                      descriptor={"digest": f"sha256:{i}", "size": 100}) for i in range(2)]
    executor = CeleryExecutor(cluster, limits, poll_fallback=0.01, lease=0.4)
    results = executor.run(units, ExecContext(None, ProgressListener()))
    assert [r.status for r in results] == ["copied", "copied"]
    first = {uid: tid for uid, tid in cluster.sends if tid is None}
    assert len(first) == 2 and len(cluster.sends) == 4
    # each unit sent again exactly once, under the id of its first send
    again = [(uid, tid) for uid, tid in cluster.sends if tid is not None]
    assert sorted(again) == sorted(zip(["blob-0", "blob-1"], ["t0", "t1"], strict=True))


def test_task_guard_keeps_what_the_successful_delivery_recorded(limits):
    with jobs.task_guard(limits, "t9", wait=False) as done:
        done.value = '{"id": "blob-1", "status": "copied"}'
    with pytest.raises(jobs.Duplicate) as dup, jobs.task_guard(limits, "t9", wait=False):
        pass
    assert dup.value.done == b'{"id": "blob-1", "status": "copied"}'
    assert jobs._recorded(dup.value.done) == {"id": "blob-1", "status": "copied"}
    assert jobs._recorded(b"1") is None  # a script's record is no transfer result


def small_copy_units(size: int = 100, src: str = "src.test/r", tgt: str = "dst.test/r") -> list:
    blob_digest, image_digest = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    blob = BlobUnit("blob-1", f"{src}@{blob_digest}", f"{tgt}@{blob_digest}",
                    descriptor={"digest": blob_digest, "size": size})
    image = ManifestUnit("img", f"{src}@{image_digest}", f"{tgt}:v1", deps=["blob-1"],
                         manifest_digest=image_digest, raw=b"{}")
    return [blob, image]


def test_a_small_copy_between_registries_goes_to_a_node_as_one_bundle(store):
    executor = CeleryExecutor(FakeCluster(), Limits(store), transfer_min=1000,
                              spread_copies=True)
    ctx = ExecContext(SimpleNamespace())  # a client here: units could run here
    bundle = executor.bundle(small_copy_units(), ctx)
    assert bundle is not None and executor.sends(bundle, ctx)
    assert (bundle.src, bundle.tgt, bundle.size) == ("src.test/r", "dst.test/r", 100)
    assert [u.id for u in bundle.units] == ["blob-1", "img"]
    # it travels as plain data and comes back the same
    again = Unit.from_dict(json.loads(json.dumps(bundle.to_dict())))
    assert again == bundle
    # a large blob goes on its own (the small units run here); so does everything with
    # spreadCopies off (the default); a copy of manifests only, or into an OCI layout,
    # stays here
    assert executor.bundle(small_copy_units(size=5000), ctx) is None
    assert executor.bundle(small_copy_units()[1:], ctx) is None
    layout = small_copy_units(size=5000, tgt="ocidir://out")
    assert executor.bundle(layout, ctx) is None and not executor.sends(layout[0], ctx)
    executor.spread_copies = False
    assert executor.bundle(small_copy_units(), ctx) is None


def test_a_bundles_result_reports_each_of_its_units(store):
    """The waiting side replays each unit of a bundle as if it had run here."""
    units = small_copy_units()

    class BundleCluster(FakeCluster):
        def get_task_meta(self, task_id):
            task = self.tasks[task_id]
            parts = [UnitResult("blob-1", "blob", "copied", "sha256:aa", 100),
                     UnitResult("img", "manifest", "pushed", "sha256:bb")]
            bundle = Unit.from_dict(task.unit)
            return {"status": "SUCCESS",
                    "result": UnitResult.of_bundle(bundle, parts).to_dict()}

    recorder, counter = Recorder(), AggregatingListener()
    executor = CeleryExecutor(BundleCluster(), Limits(store), poll_fallback=0.01,
                              spread_copies=True)
    ctx = ExecContext(SimpleNamespace(), CompositeListener([counter, recorder]))
    results = executor.run(units, ctx)
    assert [(r.id, r.status) for r in results] == [("blob-1", "copied"), ("img", "pushed")]
    assert executor.app.sent == ["bundle"]
    assert recorder.events == [("started", "blob-1"), ("finished", "blob-1"),
                               ("started", "img"), ("finished", "img")]
    result = counter.result()
    assert (result.blobs_copied, result.bytes_copied, result.manifests) == (1, 100, 1)
