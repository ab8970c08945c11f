"""A cluster that survives its own infrastructure: real worker nodes, a private
redis-server of each test's own (stopped and started again on the same port, with or
without its data) or reached through a relay that cuts the network (tests/support/relay.py),
a private rabbitmq-server for the broker test (skipped when rabbitmq-server is not
installed), real registries, a throttled source front so a transfer is surely in
flight when the test strikes. Default settings unless a test says otherwise: no
visibility timeout, no short lease.

Every test checks the target's completeness (each manifest, each blob, digest for digest),
not only exit codes.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.support import images
from tests.support.celery_cluster import (
    NodeSet,
    WorkerNode,
    find_rabbitmq,
    transfer_in_progress,
)
from tests.support.fronts import FaultFront
from tests.support.processes import REPO_ROOT, child_pids, regbot_env, spawn, stop_process
from tests.support.redis_server import REDIS_BINARY, start_redis
from tests.support.relay import TcpRelay

pytestmark = [pytest.mark.timeout(240),
              pytest.mark.skipif(REDIS_BINARY is None, reason="redis-server is not installed")]

MIB = 1024 * 1024


# --- fixtures and helpers --------------------------------------------------------------------


@pytest.fixture
def own_redis():
    """A redis-server of this test alone: the test may stop and restart it."""
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture
def own_rabbit():
    """A rabbitmq-server of this test alone (never the system's): the test may stop and
    restart it."""
    server, why = find_rabbitmq(private=True)
    if server is None:
        pytest.skip(f"no private RabbitMQ for the broker fault test: {why}")
    yield server
    server.stop()


@pytest.fixture
def front(registry):
    """The source registry behind a 1 MB/s front: a transfer is surely in flight when a
    test strikes (about 1 s per MiB)."""
    throttled = FaultFront(registry, bandwidth=1_000_000)
    yield throttled
    throttled.stop()


@pytest.fixture
def cluster(tmp_path, own_redis):
    """Make a NodeSet on `own_redis` (or on `redis`, e.g. a relay to it), the broker too
    unless `broker` names another."""
    made: list[NodeSet] = []

    def make(config: Path, broker: str | None = None, redis: str | None = None) -> NodeSet:
        redis = redis or own_redis.url
        nodes = NodeSet(tmp_path / f"cluster{len(made)}", config, broker or redis, redis)
        made.append(nodes)
        return nodes

    yield make
    for nodes in made:
        nodes.stop_all()


def write_config(path: Path, src: str, dst: str, repo: str, tags: list[str],
                 *, script_each: bool = False, **defaults: object) -> Path:
    """Script `mirror` copies every tag; with `script_each`, script `mirror-TAG` one tag
    each (with `parallel: 1` a node runs them one after the other)."""
    lines = ["version: 1", "creds:",
             "  - registry: src.test", f"    hostname: {src}", "    tls: disabled",
             "  - registry: dst.test", f"    hostname: {dst}", "    tls: disabled",
             "defaults:", "  parallel: 1"]
    lines += [f"  {key}: {value}" for key, value in defaults.items()]
    lines += ["scripts:"]
    for names in ([[tag] for tag in tags] if script_each else [tags]):
        lines += [f"  - name: mirror{'-' + names[0] if script_each else ''}", "    script: |"]
        lines += [f'      image.copy("src.test/{repo}:{tag}", "dst.test/{repo}:{tag}")'
                  for tag in names]
    path.write_text("\n".join(lines) + "\n")
    return path


def source_images(tmp_path: Path, registry, front, registry2, repo: str,
                  layers: list[tuple[int, int]], seed: int, *,
                  script_each: bool = False) -> tuple[list[images.Image], Path]:
    """Images `v1`, `v2`, ... of (layer count, layer size) each pushed to the source, and a
    config copying them through the throttled front into registry2, each layer a transfer
    of its own (transferMin 100 kB); `script_each` as in write_config."""
    pushed = []
    for i, (count, size) in enumerate(layers):
        pushed.append(images.build_image(layers=count, layer_size=size, seed=seed + i))
        images.push_image(registry.host, repo, pushed[-1], tag=f"v{i + 1}")
    config = write_config(tmp_path / "regbot.yml", front.host, registry2.host, repo,
                          [f"v{i + 1}" for i in range(len(layers))],
                          script_each=script_each, transferMin=100_000)
    return pushed, config


def expect_complete(host: str, repo: str, tag: str, image: images.Image) -> None:
    """The target holds the image: its manifest by digest and every blob, byte for byte."""
    resp = images.head_manifest(host, repo, tag)
    assert resp.status_code == 200, (repo, tag, resp.status_code)
    assert resp.headers["Docker-Content-Digest"] == image.digest
    for digest, data in image.all_blobs().items():
        assert images.sha256(images.get_blob(host, repo, digest)) == images.sha256(data), digest


def ridden_out(run, node: WorkerNode, nodes: NodeSet, target: str, repo: str,
               pushed: dict[str, images.Image], timeout: float) -> tuple[str, str, str]:
    """Wait for `once` (`run`): the node stayed up and the run succeeded, the target holds
    every image of `pushed` (tag -> image) blob for blob, no Celery process died. Returns
    once's stdout and stderr and the node's log."""
    out, err = run.communicate(timeout=timeout)
    assert node.alive(), nodes.logs()
    assert run.returncode == 0, out + err + nodes.logs()
    assert "status=ok" in out, out + err
    for tag, image in pushed.items():
        expect_complete(target, repo, tag, image)
    log = node.log_text()
    assert "Worker exited" not in log and "Unrecoverable error" not in log, nodes.logs()
    return out, err, log


def celery_pid(node: WorkerNode, queue: str) -> int:
    """The pid of the node's Celery worker process serving `queue`."""
    for pid in child_pids(node.proc.pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"-n" in argv and argv[argv.index(b"-n") + 1].startswith(f"{queue}@".encode()):
            return pid
    raise AssertionError(f"no {queue} worker under node {node.name}")


def wait_until(what: str, check, timeout: float, nodes: NodeSet | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}\n" + (
            nodes.logs() if nodes else "")
        time.sleep(0.1)


def ready_count(node: WorkerNode, queue: str) -> int:
    return node.log_text().count(f"{queue}@{node.name} ready.")


# --- the launcher ------------------------------------------------------------------------------


def test_a_killed_celery_process_is_restarted_and_the_node_serves_on(
        tmp_path, registry, registry2, repo, cluster, front):
    image = images.build_image(layers=2, layer_size=MIB, seed=801)
    images.push_image(registry.host, repo, image, tag="v1")
    config = write_config(tmp_path / "regbot.yml", registry.host, registry2.host, repo,
                          ["v1"], transferMin=100_000)
    nodes = cluster(config)
    node = nodes.start("solo", transfers=1, extra=("--grace", "2"))
    nodes.wait_ready()
    before = celery_pid(node, "transfers")
    scripts_before = celery_pid(node, "scripts")

    os.kill(before, signal.SIGKILL)
    wait_until("the transfers worker is back", lambda: ready_count(node, "transfers") == 2,
               60, nodes)
    assert node.alive()
    assert 'msg="Worker exited, restarting it" queue=transfers status=-9' \
        in node.log_text()
    assert celery_pid(node, "transfers") != before
    assert celery_pid(node, "scripts") == scripts_before  # the other one was left alone

    proc = nodes.once(timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr + nodes.logs()
    assert "status=ok" in proc.stdout
    expect_complete(registry2.host, repo, "v1", image)
    assert node.transfers_done() == 2, nodes.logs()  # the two layers, on the new process

    # a warm stop with a long transfer running ends cold after the grace period (2 s)
    slow = images.build_image(layers=1, layer_size=8 * MIB, seed=802)
    images.push_image(registry.host, repo, slow, tag="v2")
    write_config(config, front.host, registry2.host, repo, ["v2"], transferMin=100_000)
    run = nodes.once_async()
    try:
        transfer_in_progress(nodes, run)
        node.proc.send_signal(signal.SIGTERM)
        node.proc.wait(timeout=40)  # the transfer alone would take 8 s more
        assert "Warm shutdown overran its grace period, stopping cold" in node.log_text()
    finally:
        run.kill()
        run.communicate()


def test_a_celery_process_shutting_down_on_its_own_is_replaced(tmp_path, registry, registry2,
                                                               repo, cluster, front):
    """A Celery worker that begins a warm shutdown nobody asked for (here a SIGTERM sent to
    it, not to the node; seen after outages from Celery itself) would wait for its running
    transfer and then serve nothing: the launcher ends it cold after --grace and restarts
    it, and the transfer it dropped is sent again once its lease lapsed."""
    # the front: about 8 s for the layer
    (image,), config = source_images(tmp_path, registry, front, registry2, repo,
                                     [(1, 8 * MIB)], seed=861)
    nodes = cluster(config)
    node = nodes.start("solo", transfers=1, lease=10, extra=("--grace", "2"))
    nodes.wait_ready()
    scripts_pid = celery_pid(node, "scripts")

    run = nodes.once_async()
    try:
        transfer_in_progress(nodes, run)
        stray = celery_pid(node, "transfers")
        os.kill(stray, signal.SIGTERM)
        wait_until("a new transfers worker", lambda: ready_count(node, "transfers") == 2,
                   40, nodes)
        out, err = run.communicate(timeout=90)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 0, out + err + nodes.logs()
    assert "status=ok" in out, out
    expect_complete(registry2.host, repo, "v1", image)

    log = node.log_text()
    assert node.alive(), nodes.logs()
    assert log.count('msg="Worker no longer serves, ending it" queue=transfers '
                     'why="began a shutdown nobody asked for" cold-in=2s') == 1, log
    assert 'msg="Worker exited, restarting it" queue=transfers' in log, log
    assert celery_pid(node, "transfers") != stray
    assert celery_pid(node, "scripts") == scripts_pid  # the other one was left alone
    assert node.transfers_done() == 1, log  # the unit, redone by the new process

    # and the node serves a following run through its new transfers process
    more = images.build_image(layers=1, layer_size=MIB, seed=862)
    images.push_image(registry.host, repo, more, tag="v2")
    write_config(config, registry.host, registry2.host, repo, ["v2"], transferMin=100_000)
    again = nodes.once(timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr + nodes.logs()
    assert "status=ok" in again.stdout and "blobs-copied=2" in again.stdout, again.stdout
    expect_complete(registry2.host, repo, "v2", more)
    assert node.transfers_done() == 2, nodes.logs()
    assert node.log_text().count("Worker exited") == 1, nodes.logs()


# --- Redis goes away ---------------------------------------------------------------------------


@pytest.mark.parametrize("keep_data", [True, False], ids=["restart", "restart-empty"])
def test_redis_restarted_mid_transfer(tmp_path, registry, registry2, repo, cluster, own_redis,
                                      keep_data, front):
    # About 3 s per layer through the front: the outage surely lands mid-transfer.
    (image,), config = source_images(tmp_path, registry, front, registry2, repo,
                                     [(2, 3 * MIB)], seed=811)
    nodes = cluster(config)
    node = nodes.start("solo", transfers=2)
    nodes.wait_ready()

    run = nodes.once_async()
    transfer_in_progress(nodes, run)
    own_redis.halt(keep_data=keep_data)
    time.sleep(3)
    own_redis.resume()

    out, err = run.communicate(timeout=150)
    assert node.alive(), nodes.logs()
    assert run.returncode == 0, out + err + nodes.logs()
    assert "status=ok" in out
    expect_complete(registry2.host, repo, "v1", image)
    # `once` said it once when Redis went and once when it came back (the node's own
    # lines, relayed, name Redis without the scheme)
    assert len(re.findall(r'msg="lost Redis at redis://\S+, waiting up to 60s', err)) == 1, err
    assert len(re.findall(r'msg="Redis at redis://\S+ is back after', err)) == 1, err
    # the node rode it out: neither Celery process died, kombu did not crash
    log = node.log_text()
    assert "Worker exited" not in log and "Unrecoverable error" not in log, nodes.logs()

    # and goes on serving: a rerun, nothing restarted, finds everything in place
    again = nodes.once(timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr + nodes.logs()
    assert "status=ok" in again.stdout and "blobs-copied=0" in again.stdout, again.stdout
    assert "Worker exited" not in node.log_text() and node.alive()


def test_rabbitmq_restarted_mid_transfer(tmp_path, registry, registry2, repo, cluster,
                                         own_rabbit, front):
    """The broker is a private RabbitMQ (results, limits and streams on a private Redis),
    stopped and started again on the same port while the first script's transfers run;
    the second script, waiting on the broker meanwhile, runs and sends its transfers
    once it is back."""
    (first, second), config = source_images(
        tmp_path, registry, front, registry2, repo, [(2, 3 * MIB), (2, MIB)],
        seed=851, script_each=True)
    nodes = cluster(config, broker=own_rabbit.url)
    node = nodes.start("solo", transfers=2)
    nodes.wait_ready()

    run = nodes.once_async()
    transfer_in_progress(nodes, run)
    own_rabbit.halt()
    own_rabbit.resume()

    _, _, log = ridden_out(run, node, nodes, registry2.host, repo,
                           {"v1": first, "v2": second}, timeout=150)
    assert "Warm shutdown" not in log, nodes.logs()
    # each Celery process said it lost the broker once, and connected again
    assert log.count("consumer: Connection to broker lost") <= 2, nodes.logs()
    assert log.count("Connected to amqp://") >= 4, nodes.logs()

    # the node goes on serving: a rerun, nothing restarted, finds everything in place
    again = nodes.once(timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr + nodes.logs()
    assert "status=ok" in again.stdout and "blobs-copied=0" in again.stdout, again.stdout
    assert "Worker exited" not in node.log_text() and node.alive()


# REGBOT_FAULT_CUT_SECONDS=300 makes the network cut last five minutes (default 10 s:
# twice the clients' 5 s timeouts).
CUT_SECONDS = float(os.environ.get("REGBOT_FAULT_CUT_SECONDS") or 10)


@pytest.mark.timeout(240 + 3 * CUT_SECONDS)
def test_a_network_cut_between_the_cluster_and_redis(tmp_path, registry, registry2, repo,
                                                     cluster, own_redis, front):
    """Every connection of the node and of `once` to Redis (broker, result backend, shared
    state) goes through a relay that cuts the network mid-transfer for CUT_SECONDS: a
    blackhole, where only the clients' own timeouts tell them. They ride it out: a line
    when it is lost and one when it is back, the node serves on, the run completes.

    Longer cuts: `REGBOT_FAULT_CUT_SECONDS=150 pytest tests/test_faults.py -k network_cut`
    (`once` is given an outage limit of the cut plus a minute; the nodes need none)."""
    relay = TcpRelay(own_redis.port)
    try:
        (image,), config = source_images(tmp_path, registry, front, registry2, repo,
                                         [(2, 3 * MIB)], seed=871)
        nodes = cluster(config, redis=relay.url("redis", "/0"))
        nodes.env = dict(nodes.env, REGBOT_OUTAGE_LIMIT=str(max(60.0, CUT_SECONDS + 60)))
        node = nodes.start("solo", transfers=2)
        nodes.wait_ready()

        run = nodes.once_async()
        transfer_in_progress(nodes, run)
        relay.cut_for(CUT_SECONDS)

        out, err = run.communicate(timeout=120 + 2 * CUT_SECONDS)
        assert node.alive(), nodes.logs()
        assert run.returncode == 0, out + err + nodes.logs()
        assert "status=ok" in out, out + err
        expect_complete(registry2.host, repo, "v1", image)
        assert relay.held > 0  # the cut did hold connections
        # `once` says it at most once when Redis goes and once when it comes back (it also
        # relays the node's lines, which name Redis without the scheme). In about one CI
        # run of five it says nothing: none of its reads failed during the cut (not
        # understood yet). A cut of more than a minute (REGBOT_FAULT_CUT_SECONDS=70) must
        # show it, and did when tried.
        said = len(re.findall(r'msg="lost Redis at redis://\S+, waiting up to', err))
        assert said <= 1, err
        assert len(re.findall(r'msg="Redis at redis://\S+ is back after', err)) == said, err
        if CUT_SECONDS > 60:
            assert said == 1, err
        # and so did each pool process of the node that ran into it: one line each
        log = node.log_text()
        lost = re.findall(r'msg="lost Redis at \S+, waiting for it to come back', log)
        back = re.findall(r'msg="Redis at \S+ is back after', log)
        assert 1 <= len(lost) <= 3 and len(back) == len(lost), nodes.logs()  # 1 + 2 processes
        assert "Worker exited" not in log and "Unrecoverable error" not in log, nodes.logs()
        assert "Worker no longer serves" not in log, nodes.logs()

        again = nodes.once(timeout=120)
        assert again.returncode == 0, again.stdout + again.stderr + nodes.logs()
        assert "status=ok" in again.stdout and "blobs-copied=0" in again.stdout, again.stdout
        assert "Worker exited" not in node.log_text() and node.alive()
    finally:
        relay.stop()


@pytest.mark.timeout(240 + 3 * CUT_SECONDS)
def test_idle_nodes_ride_out_a_network_cut(tmp_path, registry, registry2, repo, cluster,
                                           own_redis):
    """Nodes waiting for work (their consumers in BRPOP on a connection that goes
    silent) through a cut of CUT_SECONDS: they reconnect once it is over, in a line each
    way per Celery process, and take the next run. (The consumer's lost line comes when
    the cut ends: Celery's worker heartbeat, sent from its event loop, retries its
    publish until the broker answers, so the loop waits there meanwhile.)"""
    relay = TcpRelay(own_redis.port)
    try:
        image = images.build_image(layers=2, layer_size=MIB, seed=881)
        images.push_image(registry.host, repo, image, tag="v1")
        config = write_config(tmp_path / "regbot.yml", registry.host, registry2.host, repo,
                              ["v1"], transferMin=100_000)
        nodes = cluster(config, redis=relay.url("redis", "/0"))
        node = nodes.start("solo", transfers=2)
        nodes.wait_ready()
        time.sleep(1)  # the consumers are in BRPOP now

        relay.cut_for(CUT_SECONDS)
        proc = nodes.once(timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr + nodes.logs()
        assert "status=ok" in proc.stdout and "blobs-copied=3" in proc.stdout, proc.stdout
        expect_complete(registry2.host, repo, "v1", image)
        assert node.transfers_done() == 2 and node.alive(), nodes.logs()
        log = node.log_text()
        assert "Worker exited" not in log and "Worker no longer serves" not in log, log
        assert log.count("consumer: Connection to broker lost") <= 2, log  # one per process
        assert log.count("Connected to redis://") >= 2 + log.count("Connection to broker lost")
    finally:
        relay.stop()


@pytest.mark.timeout(240 + 3 * CUT_SECONDS)
def test_a_network_cut_between_the_cluster_and_rabbitmq(tmp_path, registry, registry2, repo,
                                                        cluster, own_rabbit, front):
    """The broker (a private RabbitMQ) behind a relay that cuts the network for
    half CUT_SECONDS while the first script's transfers run; the second script starts during
    the cut. Results and shared state stay reachable (Redis, not cut). What the cut
    swallows (an ack, the second script's transfer messages: AMQP publishes without
    confirms) is made good: the run is delivered again and skipped by its guard, the
    transfers are sent again once no node started them within the lease (10 s here)."""
    relay = TcpRelay(own_rabbit.port)
    try:
        (first, second), config = source_images(
            tmp_path, registry, front, registry2, repo, [(2, 3 * MIB), (2, MIB)],
            seed=891, script_each=True)
        nodes = cluster(config, broker=relay.url("amqp", "//", "guest:guest"))
        node = nodes.start("solo", transfers=2, lease=10)
        nodes.wait_ready()

        run = nodes.once_async()
        transfer_in_progress(nodes, run)
        relay.cut_for(CUT_SECONDS / 2)

        _, _, log = ridden_out(run, node, nodes, registry2.host, repo,
                               {"v1": first, "v2": second}, timeout=120 + 2 * CUT_SECONDS)
        assert "Worker no longer serves" not in log, nodes.logs()
        assert log.count("consumer: Connection to broker lost") <= 2, log  # one per process
        assert log.count("succeeded") == 6, log  # 2 scripts, 4 transfers: each once

        again = nodes.once(timeout=120)
        assert again.returncode == 0, again.stdout + again.stderr + nodes.logs()
        assert "status=ok" in again.stdout and "blobs-copied=0" in again.stdout, again.stdout
    finally:
        relay.stop()


def test_once_gives_up_in_one_line_after_its_outage_limit(tmp_path, registry, registry2, repo,
                                                          cluster, own_redis, front):
    (image,), config = source_images(tmp_path, registry, front, registry2, repo,
                                     [(1, 3 * MIB)], seed=831)
    nodes = cluster(config)
    nodes.env = dict(nodes.env, REGBOT_OUTAGE_LIMIT="4")  # `once`'s bound (default 60 s)
    node = nodes.start("solo", transfers=1)
    nodes.wait_ready()

    run = nodes.once_async()
    transfer_in_progress(nodes, run)
    own_redis.halt(keep_data=True)
    try:
        out, err = run.communicate(timeout=60)
    finally:
        own_redis.resume()
    assert run.returncode == 1, out + err
    last = err.strip().splitlines()[-1]
    assert re.fullmatch(r"regbot: error: lost Redis at redis://127\.0\.0\.1:\d+/0 for more "
                        r"than 4s: .+", last), err

    # the script went on on its node, and the node still serves
    wait_until("the script finished on its node", lambda: node.scripts_done() == 1, 90,
               nodes)
    expect_complete(registry2.host, repo, "v1", image)
    again = nodes.once(timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr + nodes.logs()
    assert "status=ok" in again.stdout and "blobs-copied=0" in again.stdout, again.stdout
    assert node.alive() and "Worker exited" not in node.log_text()


# --- a node dies ---------------------------------------------------------------------------


def test_a_node_killed_mid_blob_is_redone_within_its_lease(tmp_path, registry, registry2, repo,
                                                           cluster, own_redis, front):
    # Default settings: no visibility timeout (3600 s on Redis), the default 30 s lease.
    # the front: about 4 s per layer
    (image,), config = source_images(tmp_path, registry, front, registry2, repo,
                                     [(2, 4 * MIB)], seed=821)
    nodes = cluster(config)
    nodes.start("boss", queues="scripts")
    movers = {name: nodes.start(name, transfers=1, queues="transfers")
              for name in ("mover1", "mover2")}
    nodes.wait_ready()

    started = time.monotonic()
    run = nodes.once_async()
    task_id, victim = transfer_in_progress(nodes, run)
    movers[victim].kill()
    survivor = movers["mover2" if victim == "mover1" else "mover1"]

    out, err = run.communicate(timeout=150)
    took = time.monotonic() - started
    assert run.returncode == 0, out + err + nodes.logs()
    assert "status=ok" in out
    expect_complete(registry2.host, repo, "v1", image)
    # the dead node's unit, sent again under its id, ran on the other node
    assert f"regbot.transfer[{task_id}] succeeded" in survivor.log_text(), nodes.logs()
    assert "its node stopped renewing its lease" in nodes.nodes[0].log_text()
    assert took < 90, f"took {took:.0f}s: lease 30 s + half a lease + the copy"


def test_a_script_whose_node_died_is_reported_and_the_next_run_goes_ahead(
        tmp_path, registry, registry2, repo, cluster, own_redis, front):
    (image,), config = source_images(tmp_path, registry, front, registry2, repo,
                                     [(1, 4 * MIB)], seed=841)
    nodes = cluster(config)
    # a short lease: the script's guard and lock lapse 10 s after its node died
    boss = nodes.start("boss", queues="scripts", lease=10)
    nodes.start("mover", transfers=1, queues="transfers")
    nodes.wait_ready()

    run = nodes.once_async()
    transfer_in_progress(nodes, run)
    boss.kill()
    out, err = run.communicate(timeout=90)
    assert run.returncode == 1, out + err
    assert "status=failed" in out, out
    assert "script 'mirror': the worker running it (scripts@boss) stopped before it " \
           "finished" in out + err, out + err

    # another node runs the script next time: the dead one's lock has lapsed
    nodes.start("boss2", queues="scripts", lease=10)
    nodes.wait_ready()
    again = nodes.once(timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr + nodes.logs()
    assert "status=ok" in again.stdout, again.stdout
    expect_complete(registry2.host, repo, "v1", image)


# --- beat and server -----------------------------------------------------------------------


def test_server_rides_out_redis_restarted_empty(tmp_path, own_redis):
    """`regbot server` (beat + worker node) on a Redis that restarts without its data: the
    beat goes on scheduling, each run at most once, and the worker goes on running them."""
    config = tmp_path / "regbot.yml"
    config.write_text('version: 1\nscripts:\n  - name: tick\n    schedule: "@every 1s"\n'
                      '    script: log("tick")\n')
    log_path = tmp_path / "server.log"
    proc = spawn(
        [sys.executable, "-m", "regbot", "server", "-c", str(config), "--broker",
         own_redis.url, "--transfers", "1", "-n", "faults-server"],
        log_path, env=regbot_env(), cwd=REPO_ROOT)

    def done() -> int:
        return len(re.findall(r"Task regbot\.script\[\S+\] succeeded",
                              log_path.read_text(errors="replace")))

    try:
        wait_until("two runs before the outage", lambda: done() >= 2, 60)
        own_redis.halt(keep_data=False)
        time.sleep(3)
        own_redis.resume()
        after = done()
        wait_until("three runs after the outage", lambda: done() >= after + 3, 60)
        assert proc.poll() is None, log_path.read_text()
    finally:
        status = stop_process(proc, grace=30)
    log = log_path.read_text(errors="replace")
    assert status == 0, log[-3000:]
    # each Celery process said it lost the broker once, not once per reconnect attempt
    assert log.count("Cannot connect to") <= 2, log[-3000:]
    assert "Worker exited" not in log and "Unrecoverable error" not in log, log[-3000:]
    sent = re.findall(r'msg="Sent scheduled run" script=tick due=(\S+)', log)
    twice = {due for due in sent if sent.count(due) > 1}
    assert not twice, f"runs sent more than once: {sorted(twice)}"


BEAT_CUT_SECONDS = 8.0


@pytest.mark.parametrize("outage", ["restart", "restart-empty", "cut"])
def test_a_beat_rides_out_a_redis_outage_without_sending_a_run_twice(tmp_path, own_redis,
                                                                     outage):
    """`regbot beat` alone (no worker: the runs wait in the queue) through a Redis restart
    (with or without its data) or a network cut of BEAT_CUT_SECONDS (a blackhole, see
    tests/support/relay.py): it stays up, logs the outage, and goes on sending each due
    run once."""
    relay = TcpRelay(own_redis.port) if outage == "cut" else None
    config = tmp_path / "regbot.yml"
    config.write_text('version: 1\nscripts:\n  - name: tick\n    schedule: "@every 1s"\n'
                      '    script: log("tick")\n')
    log_path = tmp_path / "beat.log"
    broker = relay.url("redis", "/0") if relay else own_redis.url
    proc = spawn([sys.executable, "-m", "regbot", "beat", "-c", str(config), "--broker",
                  broker], log_path, env=regbot_env(), cwd=REPO_ROOT)

    def sent() -> list[str]:
        return re.findall(r'msg="Sent scheduled run" script=tick due=(\S+)',
                          log_path.read_text(errors="replace"))

    try:
        wait_until("two runs sent before the outage", lambda: len(sent()) >= 2, 60)
        if relay is not None:
            relay.cut_for(BEAT_CUT_SECONDS)
        else:
            own_redis.halt(keep_data=outage == "restart")
            time.sleep(3)
            own_redis.resume()
        after = len(sent())
        wait_until("three runs sent after the outage", lambda: len(sent()) >= after + 3, 60)
        assert proc.poll() is None, log_path.read_text()
    finally:
        status = stop_process(proc, grace=30)
        if relay is not None:
            relay.stop()
    log = log_path.read_text(errors="replace")
    assert status == 0, log[-3000:]
    due = sent()
    assert len(due) == len(set(due)), f"runs sent more than once: {due}"
    if relay is not None:
        assert relay.held > 0  # the beat's connections did run into the cut
    # the outage in one line, its end in another, whatever the number of runs due meanwhile
    assert log.count('msg="Could not send a scheduled run"') <= 1, log[-3000:]
    if 'msg="Could not send a scheduled run"' in log:
        assert log.count('msg="Sending scheduled runs again"') == 1, log[-3000:]
