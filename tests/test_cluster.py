"""A real regbot cluster: worker nodes as processes (`python -m regbot.cli worker`, cwd a
temp dir), a real redis-server (and RabbitMQ), docker-registry instances, and
`regbot once` enqueuing scripts and streaming their lines back.

Every test starts its own nodes and stops them at teardown, and uses a Redis database of
its own on the session's redis-server. Nodes start before the registries are filled, so
their start-up overlaps the test's own setup.
"""

from __future__ import annotations

import base64
import itertools
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from regbot.limits import Limits
from tests.support import images, quickstart
from tests.support.celery_cluster import NodeSet, find_rabbitmq, purge_queues, transfer_in_progress
from tests.support.fronts import FaultFront, TokenAuthFront
from tests.support.processes import child_pids
from tests.support.redis_server import flushed_db
from tests.support.registry import start_registry

pytestmark = pytest.mark.timeout(240)

_dbs = itertools.count(1)
REPOS = ("library/alpine", "library/debian", "regclient/example")
# What the embedded run prints for the quick start's world (tests/test_quickstart.py runs
# it): 3 alpine + 3 debian minors and 3 debian testing images of two platforms each
# (config + 2 layers per platform); 2 old testing tags and ci-001..003 pruned.
EMBEDDED_SUMMARY = [
    'summary script="mirror minor versions" status=ok images=6 blobs-copied=36 skipped=0 '
    'mounted=0 bytes="22.2 KiB" tags-deleted=0',
    'summary script="debian date stamped mirror" status=ok images=3 blobs-copied=18 '
    'skipped=0 mounted=0 bytes="11.1 KiB" tags-deleted=2',
    'summary script="delete old builds" status=ok images=0 blobs-copied=0 skipped=0 '
    'mounted=0 bytes="0 B" tags-deleted=3',
]


# --- fixtures and helpers --------------------------------------------------------------------


@pytest.fixture
def redis_db(redis_server):
    """A Redis URL on a database of this test's own (emptied before and after)."""
    db = 1 + next(_dbs) % 13  # 14 and 15 are left to other tests
    with flushed_db(redis_server, db) as url:
        yield url


@pytest.fixture
def nodeset_factory(tmp_path):
    made: list[NodeSet] = []

    def make(config: Path, broker_url: str, redis_url: str, env=None) -> NodeSet:
        nodes = NodeSet(tmp_path / f"cluster{len(made)}", config, broker_url, redis_url,
                        **({"env": env} if env is not None else {}))
        made.append(nodes)
        return nodes

    yield make
    for nodes in made:
        nodes.stop_all()


@pytest.fixture
def qs_world(tmp_path):
    """The quick start's world (tests/support/quickstart.py), config written but registries
    not filled yet: docker.io is an upstream registry behind a Docker-Hub-like token and
    rate-limit front, registry:5000 another registry."""
    upstream = start_registry()
    local = start_registry()
    front = TokenAuthFront(upstream, user=quickstart.HUB_USER,
                           password=quickstart.HUB_PASSWORD, rate_limit=500)
    root = tmp_path / "world"
    root.mkdir()
    token_file = root / "hub_token"
    token_file.write_text(quickstart.HUB_PASSWORD + "\n")
    config = root / "regbot.yml"
    config.write_text(quickstart.config_text(front.host, local.host, token_file))
    world = quickstart.World(config, dict(os.environ, HUB_USER=quickstart.HUB_USER),
                             upstream.host, local.host)

    def fill() -> None:
        quickstart.fill_upstream(upstream.host)
        world.example_digests = quickstart.fill_local(local.host)

    try:
        yield world, front, fill
    finally:
        front.stop()
        upstream.stop()
        local.stop()


def write_config(path: Path, creds: list[dict], scripts: dict[str, str],
                 parallel: int = 1, **defaults: object) -> Path:
    lines = ["version: 1", "creds:"]
    for cred in creds:
        lines.append(f"  - registry: {cred['registry']}")
        lines += [f"    {k}: {v}" for k, v in cred.items() if k != "registry"]
    lines += ["defaults:", f"  parallel: {parallel}"]
    lines += [f"  {key}: {value}" for key, value in defaults.items()]
    lines += ["scripts:"]
    for name, body in scripts.items():
        lines += [f"  - name: {name}", "    script: |"]
        lines += [f"      {line}" for line in body.strip().splitlines()]
    path.write_text("\n".join(lines) + "\n")
    return path


def local_tags(world) -> dict[str, set[str]]:
    return {repo: quickstart.local_tags(world, repo) for repo in REPOS}


def summary_rows(stdout: str) -> list[str]:
    """The summary lines without their durations (which differ from run to run)."""
    return [re.sub(r" duration=\S+", "", line) for line in stdout.splitlines()
            if line.startswith("summary ")]


def redis_contents(client: redis.Redis) -> list[bytes]:
    """Every key and every value of the database, whatever the type."""
    out: list[bytes] = []
    for key in client.scan_iter(count=1000):
        out.append(key)
        kind = client.type(key)
        if kind == b"string":
            out.append(client.get(key) or b"")
        elif kind == b"hash":
            for k, v in client.hgetall(key).items():
                out += [k, v]
        elif kind == b"list":
            out += client.lrange(key, 0, -1)
        elif kind == b"set":
            out += list(client.smembers(key))
        elif kind == b"zset":
            out += [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == b"stream":
            for _id, fields in client.xrange(key):
                for k, v in fields.items():
                    out += [k, v]
    return out


def assert_no_secret(client: redis.Redis, secrets: list[str]) -> None:
    blobs = redis_contents(client)
    assert len(blobs) >= 6, "the cluster left almost nothing in Redis: wrong database?"
    for secret in secrets:
        needle = secret.encode()
        leaks = [b[:200] for b in blobs if needle in b]
        assert not leaks, f"a secret is stored in Redis: {leaks[:3]}"


def expect_copied(host: str, repo: str, tag: str, image: images.Image) -> None:
    resp = images.head_manifest(host, repo, tag)
    assert resp.status_code == 200, (repo, tag, resp.status_code)
    assert resp.headers["Docker-Content-Digest"] == image.digest
    for digest in image.all_blobs():
        assert images.blob_exists(host, repo, digest), digest


# --- the quick start on two nodes ------------------------------------------------------------


def run_quickstart(qs_world, nodeset_factory, broker_url: str, redis_url: str):
    world, front, fill = qs_world
    nodes = nodeset_factory(world.config, broker_url, redis_url, env=world.env)
    node1 = nodes.start("node1", transfers=2)
    node2 = nodes.start("node2", transfers=2)
    fill()
    nodes.wait_ready()
    assert local_tags(world) == quickstart.expected_before_run()

    proc = nodes.once()
    assert proc.returncode == 0, proc.stdout + proc.stderr + nodes.logs()
    assert local_tags(world) == quickstart.expected_after_run()
    # the same summary as the embedded run, from results the workers sent back
    assert summary_rows(proc.stdout) == EMBEDDED_SUMMARY
    # the scripts ran on the workers; their lines streamed back here with their fields
    assert node1.scripts_done() + node2.scripts_done() == 3
    assert 'msg="Copy image" script="mirror minor versions" source=docker.io/library/alpine' \
        in proc.stderr
    assert re.search(r'msg="Deleting ci-001 created on 2020-01-01T00:00:00Z" '
                     r'script="delete old builds"', proc.stderr)
    # small images: every unit ran in the scripts' own processes, none took a round trip
    # through the transfers queue (defaults.transferMin; spreadCopies is off by default)
    assert node1.transfers_done() == node2.transfers_done() == 0, nodes.logs()
    # mirrored digest for digest; latest and stable kept on the pruned tags' digest
    for repo, tag in (("library/alpine", "3.20"), ("library/debian", "testing-20260501")):
        up = images.head_manifest(world.upstream_host, repo, tag)
        down = images.head_manifest(world.local_host, repo, tag)
        assert up.headers["Docker-Content-Digest"] == down.headers["Docker-Content-Digest"]
    for tag in ("latest", "stable"):
        resp = images.head_manifest(world.local_host, "regclient/example", tag)
        assert resp.headers["Docker-Content-Digest"] == world.example_digests[tag]
    assert quickstart.HUB_PASSWORD not in proc.stdout + proc.stderr

    store = redis.Redis.from_url(redis_url)
    try:
        # Docker Hub style limits: the last RateLimit-Remaining a node saw is known to all
        rl = Limits(store).last_ratelimit("docker.io")
        assert rl is not None and rl.set and rl.limit == 500
        assert front.remaining <= rl.remain < 500
        # task messages, results and keys never hold a secret: password, Basic header, tokens
        basic = base64.b64encode(
            f"{quickstart.HUB_USER}:{quickstart.HUB_PASSWORD}".encode()).decode()
        assert front.issued_tokens()
        assert_no_secret(store, [quickstart.HUB_PASSWORD, basic, *front.issued_tokens()])
    finally:
        store.close()
    return proc


def test_quickstart_on_two_nodes_with_redis(qs_world, redis_db, nodeset_factory):
    run_quickstart(qs_world, nodeset_factory, redis_db, redis_db)


def test_quickstart_on_two_nodes_with_rabbitmq(qs_world, redis_db, nodeset_factory):
    rabbit, why = find_rabbitmq()
    if rabbit is None:
        pytest.skip(f"no RabbitMQ for the AMQP broker test: {why}")
    try:
        purge_queues(rabbit.url, redis_db)
        run_quickstart(qs_world, nodeset_factory, rabbit.url, redis_db)
    finally:
        purge_queues(rabbit.url, redis_db)
        rabbit.stop()


# --- scheduling and limits across nodes -----------------------------------------------------


def test_one_node_with_one_script_slot_finishes_a_copy_of_many_blobs(
        tmp_path, registry, registry2, repo, redis_db, nodeset_factory):
    config = write_config(tmp_path / "regbot.yml", [
        {"registry": "src.test", "hostname": registry.host, "tls": "disabled"},
        {"registry": "dst.test", "hostname": registry2.host, "tls": "disabled"},
    ], {"many blobs": f'image.copy("src.test/{repo}:v1", "dst.test/{repo}:v1")'}, parallel=1,
        transferMin=0)
    nodes = nodeset_factory(config, redis_db, redis_db)
    node = nodes.start("solo", transfers=1)
    image = images.build_image(layers=24, layer_size=256, seed=501)
    images.push_image(registry.host, repo, image, tag="v1")
    nodes.wait_ready()

    proc = nodes.once(timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr + nodes.logs()
    assert "status=ok" in proc.stdout and "blobs-copied=25" in proc.stdout
    expect_copied(registry2.host, repo, "v1", image)
    # the script waited in its own pool while the 25 blobs went through the transfers
    # pool (transferMin 0: every blob); the manifest was put by the script's process
    assert node.scripts_done() == 1 and node.transfers_done() == 25

    # A new regbot.yml reaches the running node, and a unit that fails for good fails its
    # script with the unit's own error, as in an embedded run of the same file.
    front = FaultFront(registry)
    try:
        broken = images.build_image(layers=2, layer_size=256, seed=502)
        images.push_image(registry.host, repo, broken, tag="v2")
        lost = broken.layers[1]["digest"]
        front.add("GET", f"/blobs/{lost}", "status", times=-1, status=404,
                  body=b'{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}')
        write_config(config, [
            {"registry": "src.test", "hostname": front.host, "tls": "disabled"},
            {"registry": "dst.test", "hostname": registry2.host, "tls": "disabled"},
        ], {"broken": f'image.copy("src.test/{repo}:v2", "dst.test/{repo}:v2")'}, parallel=1,
            transferMin=0)
        failed = nodes.once(timeout=120)
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGBOT_")}
        embedded = subprocess.run([sys.executable, "-m", "regbot.cli", "once", "-c", str(config)],
                                  capture_output=True, text=True, timeout=120, env=env,
                                  cwd=tmp_path)
    finally:
        front.stop()
    assert failed.returncode == embedded.returncode == 1, failed.stdout + failed.stderr
    assert summary_rows(failed.stdout) == summary_rows(embedded.stdout)
    assert 'script=broken status=failed' in failed.stdout and lost in failed.stdout
    assert "not found" in failed.stdout


def test_request_concurrency_holds_across_two_nodes(tmp_path, registry, registry2, repo,
                                                    redis_db, nodeset_factory):
    front = FaultFront(registry)
    try:
        config = write_config(tmp_path / "regbot.yml", [
            {"registry": "src.test", "hostname": front.host, "tls": "disabled",
             "reqConcurrent": 2},
            {"registry": "dst.test", "hostname": registry2.host, "tls": "disabled"},
        ], {
            "copy a": f'image.copy("src.test/{repo}/a:v1", "dst.test/{repo}/a:v1")',
            "copy b": f'image.copy("src.test/{repo}/b:v1", "dst.test/{repo}/b:v1")',
        }, parallel=2, transferMin=0)
        nodes = nodeset_factory(config, redis_db, redis_db)
        node1 = nodes.start("node1", transfers=3)
        node2 = nodes.start("node2", transfers=3)
        image_a = images.build_image(layers=8, layer_size=256, seed=601)
        image_b = images.build_image(layers=8, layer_size=256, seed=602)
        images.push_image(registry.host, f"{repo}/a", image_a, tag="v1")
        images.push_image(registry.host, f"{repo}/b", image_b, tag="v1")
        nodes.wait_ready()
        # slow blob reads pile up requests unless the limit holds across the nodes
        front.add("GET", r"/blobs/sha256:", "delay", times=-1, seconds=0.3)
        front.reset_gauge()

        proc = nodes.once(timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr + nodes.logs()
        expect_copied(registry2.host, f"{repo}/a", "v1", image_a)
        expect_copied(registry2.host, f"{repo}/b", "v1", image_b)
        assert node1.transfers_done() > 0 and node2.transfers_done() > 0, nodes.logs()
        assert front.hits("delay") == 18  # every blob was read through the front
        assert front.max_concurrent == 2  # six transfer processes, two requests at a time
    finally:
        front.stop()


def test_overlapping_runs_of_a_script_on_two_nodes_run_once(tmp_path, redis_db,
                                                            nodeset_factory):
    config = write_config(tmp_path / "regbot.yml", [], {
        "slow": 'log("working")\nlocal t = os.clock()\nwhile os.clock() - t < 6 do end',
    }, parallel=1)
    nodes = nodeset_factory(config, redis_db, redis_db)
    nodes.start("node1", transfers=1)
    nodes.start("node2", transfers=1)
    nodes.wait_ready()

    first = nodes.once_async()
    deadline = time.monotonic() + 30
    store = redis.Redis.from_url(redis_db)
    try:  # the second run is sent while the first holds the script's lock
        while not store.exists("regbot:lock:script:slow"):
            assert time.monotonic() < deadline, nodes.logs()
            time.sleep(0.05)
    finally:
        store.close()
    second = nodes.once()
    out1, err1 = first.communicate(timeout=60)
    assert first.returncode == 0 and second.returncode == 0, err1 + second.stderr
    assert "status=ok" in out1 and 'msg=working script=slow' in err1
    assert "status=skipped" in second.stdout, second.stdout + second.stderr
    assert 'msg="Skipping run, previous run still going" script=slow' in second.stderr
    assert sum(n.scripts_done() for n in nodes.nodes) == 2


def test_only_large_blobs_go_to_the_transfers_queue(tmp_path, registry, registry2, repo,
                                                   redis_db, nodeset_factory):
    config = write_config(tmp_path / "regbot.yml", [
        {"registry": "src.test", "hostname": registry.host, "tls": "disabled"},
        {"registry": "dst.test", "hostname": registry2.host, "tls": "disabled"},
    ], {"mixed": f'image.copy("src.test/{repo}:v1", "dst.test/{repo}:v1", '
                 '{forceRecursive = true})'}, transferMin=2000)
    nodes = nodeset_factory(config, redis_db, redis_db)
    node = nodes.start("solo", transfers=1)
    large = images.build_image(layers=2, layer_size=4096, seed=511)
    image = images.build_image(layers=2, layer_size=256, seed=512,
                               shared_layers=large.layers_with_data())
    images.push_image(registry.host, repo, image, tag="v1")
    nodes.wait_ready()

    proc = nodes.once(timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr + nodes.logs()
    expect_copied(registry2.host, repo, "v1", image)
    # the two 4 KiB layers went to a node; config, small layers and the manifest did not
    assert node.transfers_done() == 2, nodes.logs()
    # again, the target holding everything: checked here, nothing dispatched
    again = nodes.once(timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "blobs-copied=0 skipped=5" in again.stdout, again.stdout
    assert node.transfers_done() == 2, nodes.logs()


def test_with_spread_copies_a_mirror_of_small_images_spreads_over_the_nodes(
        tmp_path, registry, registry2, repo, redis_db, nodeset_factory):
    tags = [f"t{i}" for i in range(12)]
    script = (f'for _, t in ipairs(tag.ls("src.test/{repo}")) do\n'
              f'  image.copy("src.test/{repo}:" .. t, "dst.test/{repo}:" .. t)\nend')
    creds = [{"registry": "src.test", "hostname": registry.host, "tls": "disabled"},
             {"registry": "dst.test", "hostname": registry2.host, "tls": "disabled"}]
    config = write_config(tmp_path / "regbot.yml", creds, {"mirror": script},
                          spreadCopies="true")
    nodes = nodeset_factory(config, redis_db, redis_db)
    node1 = nodes.start("node1", transfers=1)
    node2 = nodes.start("node2", transfers=1)
    pushed = {}
    for i, tag in enumerate(tags):
        pushed[tag] = images.build_image(layers=2, layer_size=2048, seed=600 + i)
        images.push_image(registry.host, repo, pushed[tag], tag=tag)
    nodes.wait_ready()

    proc = nodes.once(timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr + nodes.logs()
    assert "images=12 blobs-copied=36 " in proc.stdout, proc.stdout
    for tag, image in pushed.items():
        expect_copied(registry2.host, repo, tag, image)
    # one task per copy, and both nodes took some: the script's own node did not do it all
    done = (node1.transfers_done(), node2.transfers_done())
    assert sum(done) == 12 and min(done) >= 1, (done, nodes.logs())

    # the no-op rerun checks each tag where the script runs and sends nothing
    again = nodes.once(timeout=120)
    assert again.returncode == 0 and "images=0 blobs-copied=0 " in again.stdout, again.stdout
    assert (node1.transfers_done(), node2.transfers_done()) == done

    # by default (spreadCopies: false) small copies run in the script's own process
    write_config(config, creds, {"mirror": script.replace(f"dst.test/{repo}:",
                                                          f"dst.test/{repo}-here:")})
    here = nodes.once(timeout=120)
    assert here.returncode == 0 and "images=12 blobs-copied=36 " in here.stdout, here.stdout
    assert (node1.transfers_done(), node2.transfers_done()) == done
    expect_copied(registry2.host, f"{repo}-here", "t0", pushed["t0"])


def test_once_on_a_terminal_shows_the_rate_limit_the_workers_saw(
        tmp_path, token_front_factory, registry, registry2, repo, redis_db, nodeset_factory):
    """The live display of `once` on a cluster: the copies are made by a worker, which
    records the upstream's RateLimit headers in Redis; the display reads them there."""
    from tests.support.regbot_cli import run_on_pty

    upstream = token_front_factory(rate_limit=100)
    config = write_config(tmp_path / "regbot.yml", [
        {"registry": "hub.test", "hostname": upstream.host, "tls": "disabled",
         "user": "alice", "pass": "s3cret-Pa55"},
        {"registry": "dst.test", "hostname": registry2.host, "tls": "disabled"},
    ], {"mirror": f'image.copy("hub.test/{repo}:v1", "dst.test/{repo}:v1")'})
    nodes = nodeset_factory(config, redis_db, redis_db)
    nodes.start("solo", transfers=1)
    image = images.build_image(layers=2, layer_size=256, seed=521)
    images.push_image(registry.host, repo, image, tag="v1")
    nodes.wait_ready()

    status, screen = run_on_pty(["once", "-c", str(config)],
                                env={**nodes.cluster_env(), "COLUMNS": "200"})
    assert status == 0, screen + nodes.logs()
    expect_copied(registry2.host, repo, "v1", image)
    seen = Limits(redis.Redis.from_url(redis_db)).last_ratelimit("hub.test")
    assert seen is not None and seen.limit == 100 and 0 < seen.remain < 100
    # the last frame, drawn when the run ended, shows what the worker recorded
    shown = re.findall(r"rate limit left: .*?hub\.test (\d+)/(\d+)", screen)
    assert shown and shown[-1] == (str(seen.remain), "100"), screen


# --- a node dies mid-transfer ----------------------------------------------------------------


def test_a_node_killed_mid_transfer_loses_nothing(tmp_path, registry, registry2, repo,
                                                  redis_db, nodeset_factory):
    # About 4 s per layer below; progress comes a 1 MiB chunk at a time.
    front = FaultFront(registry, bandwidth=1_000_000)
    try:
        config = write_config(tmp_path / "regbot.yml", [
            {"registry": "src.test", "hostname": front.host, "tls": "disabled"},
            {"registry": "dst.test", "hostname": registry2.host, "tls": "disabled"},
        ], {"big": f'image.copy("src.test/{repo}:v1", "dst.test/{repo}:v1")'})
        nodes = nodeset_factory(config, redis_db, redis_db)
        # the script waits on a node of its own; two transfer nodes share the units, with
        # a short lease so a dead node's work is sent again quickly (no visibility timeout
        # needed: tests/test_faults.py does the same with the defaults)
        nodes.start("boss", queues="scripts", lease=3)
        movers = {name: nodes.start(name, transfers=1, queues="transfers", lease=3)
                  for name in ("mover1", "mover2")}
        image = images.build_image(layers=2, layer_size=4 * 1024 * 1024, seed=701)
        images.push_image(registry.host, repo, image, tag="v1")
        nodes.wait_ready()

        run = nodes.once_async()
        # early in a layer, so the kill surely lands mid-transfer
        task_id, victim = transfer_in_progress(nodes, run, below=2_500_000)
        movers[victim].kill()
        survivor = movers["mover2" if victim == "mover1" else "mover1"]

        out, err = run.communicate(timeout=150)
        assert run.returncode == 0, out + err + nodes.logs()
        assert "status=ok" in out and "blobs-copied=3" in out
        expect_copied(registry2.host, repo, "v1", image)
        for digest, data in image.all_blobs().items():
            assert images.get_blob(registry2.host, repo, digest) == data
        # the unit the dead node was moving ran again on the other one
        assert f"regbot.transfer[{task_id}] succeeded" in survivor.log_text(), nodes.logs()
    finally:
        front.stop()




# --- the node process ------------------------------------------------------------------------


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_node_supervises_its_two_workers(tmp_path, redis_db, nodeset_factory):
    config = write_config(tmp_path / "regbot.yml", [], {"noop": 'log("x")'}, parallel=2)
    nodes = nodeset_factory(config, redis_db, redis_db)
    calm = nodes.start("calm", transfers=1)
    broken = nodes.start("broken", transfers=1)
    nodes.wait_ready()
    assert len(child_pids(calm.proc.pid)) == 2  # one Celery worker per queue

    # SIGTERM to the node alone: both workers shut down warm, the node exits 0
    os.kill(calm.proc.pid, signal.SIGTERM)
    assert calm.proc.wait(timeout=60) == 0, calm.log_text()[-3000:]
    deadline = time.monotonic() + 20
    while group_alive(calm.proc.pid):
        assert time.monotonic() < deadline, "a worker outlived its node"
        time.sleep(0.1)
    assert "scripts@calm" in calm.log_text() and "transfers@calm" in calm.log_text()

    # one worker dies: the node starts it again (tests/test_faults.py runs a copy on it)
    transfers = next(p for p in child_pids(broken.proc.pid)
                     if "transfers" in Path(f"/proc/{p}/cmdline").read_text())
    os.kill(transfers, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while broken.log_text().count("transfers@broken ready.") < 2:
        assert broken.alive() and time.monotonic() < deadline, broken.log_text()[-3000:]
        time.sleep(0.1)
    assert 'msg="Worker exited, restarting it" queue=transfers status=-9' in broken.log_text()


def test_a_script_using_the_lua_standard_library_runs_on_a_worker(
        tmp_path, registry, registry2, repo, redis_db, nodeset_factory):
    """The same Go-regbot script as tests/test_sandbox_stdlib.py, on a node: `require`
    finds the helper next to the node's config, `os.getenv` reads the node's environment,
    and `os.exit(0)` ends the script, not the worker (the next run works too)."""
    from tests.support.stdlib_script import write_stdlib_world

    world = write_stdlib_world(tmp_path / "world", registry.host, registry2.host, repo,
                               ["v1", "v2"])
    nodes = nodeset_factory(world.config, redis_db, redis_db, env=world.env)
    node = nodes.start("solo", transfers=1)
    pushed = {}
    for n, tag in enumerate(["v1", "v2"]):
        pushed[tag] = images.build_image(layers=1, layer_size=300, seed=9300 + n)
        images.push_image(registry.host, repo, pushed[tag], tag=tag)
    nodes.wait_ready()
    for _ in range(2):
        proc = nodes.once(timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr + nodes.logs()
        assert "summary script=stdlib status=ok" in proc.stdout, proc.stdout
        assert "hello from the environment" in proc.stderr
        assert world.report.read_text() == "1 v1\n2 v2\n"
        assert node.alive()
    for tag, image in pushed.items():
        expect_copied(registry2.host, repo, tag, image)


def test_two_nodes_of_one_host_without_names_are_four_workers(tmp_path, redis_db,
                                                             nodeset_factory):
    """Without -n a node is HOST-PID: celery inspect, Flower and revokes see each of its
    workers apart from the other node's."""
    config = write_config(tmp_path / "regbot.yml", [], {"noop": 'log("x")'})
    nodes = nodeset_factory(config, redis_db, redis_db)
    first = nodes.start("first", transfers=1, named=False)
    second = nodes.start("second", transfers=1, named=False)
    nodes.wait_ready()
    assert first.name != second.name
    proc = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "workers.app", "inspect", "ping", "-t", "5"],
        env=nodes.cluster_env(), capture_output=True, text=True, timeout=60)
    names = set(re.findall(r"->\s+(\S+@\S+?):", proc.stdout))
    assert names == {f"{queue}@{node.name}" for queue in ("scripts", "transfers")
                     for node in (first, second)}, proc.stdout + proc.stderr
