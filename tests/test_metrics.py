"""Prometheus metrics: scraped from a running `regbot server` after a scheduled run that
copied an image from a Docker-Hub-like upstream (rate-limit headers) into a registry."""

from __future__ import annotations

import re
import sys
import time

import requests

from tests.support import images
from tests.support.processes import free_port, regbot_env, spawn, stop_process, wait_for_port


def scrape(port: int) -> dict[str, float]:
    """`name{labels}` -> value of every sample."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    out = {}
    for line in text.splitlines():
        match = re.fullmatch(r"([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (\S+)", line)
        if match and not line.startswith("#"):
            out[match.group(1)] = float(match.group(2))
    return out


def wait_for(port: int, sample: str, timeout: float = 90) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        values = scrape(port)
        if values.get(sample, 0) >= 1 or time.monotonic() > deadline:
            return values
        time.sleep(0.5)


def test_server_serves_metrics_of_its_runs(tmp_path, token_front_factory, registry, registry2,
                                           repo):
    upstream = token_front_factory(rate_limit=100)
    image = images.build_image(layers=2, layer_size=2048, seed=901)
    images.push_image(registry.host, repo, image, tag="v1")
    config = tmp_path / "regbot.yml"
    config.write_text(
        "version: 1\ncreds:\n"
        f"  - registry: hub.test\n    hostname: {upstream.host}\n    tls: disabled\n"
        "    user: alice\n    pass: s3cret-Pa55\n"
        f"  - registry: local.test\n    hostname: {registry2.host}\n    tls: disabled\n"
        "scripts:\n  - name: mirror\n    interval: 1s\n    script: |\n"
        f'      image.copy("hub.test/{repo}:v1", "local.test/{repo}:v1")\n')
    port = free_port()
    proc = spawn([sys.executable, "-m", "regbot", "server", "-c", str(config),
                  "--metrics-port", f"127.0.0.1:{port}"], tmp_path / "server.log", env=regbot_env())
    try:
        wait_for_port(port, proc=proc)
        values = wait_for(port, 'regbot_script_runs_total{status="ok"}')
    finally:
        stop_process(proc)
    log = (tmp_path / "server.log").read_text()
    assert values.get('regbot_script_runs_total{status="ok"}', 0) >= 1, (values, log)
    # the first run copied: 3 blobs (config + 2 layers), their bytes, the manifest
    assert values['regbot_copies_total{status="copied"}'] == 1
    assert values['regbot_blobs_total{outcome="copied"}'] == 3
    assert values["regbot_bytes_total"] == sum(len(b) for b in image.blobs.values())
    assert values["regbot_manifests_total"] >= 1
    assert values['regbot_script_duration_seconds_count{status="ok"}'] >= 1
    # Docker-Hub style rate limits, as the upstream last reported them
    assert values['regbot_ratelimit_limit{registry="hub.test"}'] == 100
    assert 0 < values['regbot_ratelimit_remaining{registry="hub.test"}'] < 100


def test_a_worker_node_serves_the_metrics_of_all_its_processes(
        tmp_path, token_front_factory, registry, registry2, repo, broker):
    """One endpoint per node: the blobs were copied by the transfers pool (transferMin 0),
    the script ran in the scripts pool, two Celery workers' processes summed on one port."""
    from tests.support.celery_cluster import NodeSet

    upstream = token_front_factory(rate_limit=100)
    image = images.build_image(layers=2, layer_size=2048, seed=911)
    images.push_image(registry.host, repo, image, tag="v1")
    config = tmp_path / "regbot.yml"
    config.write_text(
        "version: 1\ncreds:\n"
        f"  - registry: hub.test\n    hostname: {upstream.host}\n    tls: disabled\n"
        "    user: alice\n    pass: s3cret-Pa55\n"
        f"  - registry: local.test\n    hostname: {registry2.host}\n    tls: disabled\n"
        "defaults:\n  transferMin: 0\n"
        "scripts:\n  - name: mirror\n    script: |\n"
        f'      image.copy("hub.test/{repo}:v1", "local.test/{repo}:v1")\n')
    node_tmp = tmp_path / "node-tmp"  # where the node makes its metrics directory
    node_tmp.mkdir()
    nodes = NodeSet(tmp_path / "cluster", config, broker, broker)
    port = free_port()
    try:
        node = nodes.start("metrics", transfers=2, metrics_port=port,
                           env={"TMPDIR": str(node_tmp)})
        nodes.wait_ready()
        before = scrape(port)
        proc = nodes.once(timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr + nodes.logs()
        values = scrape(port)
        assert any(node_tmp.iterdir()), "the node made no metrics directory"
    finally:
        nodes.stop_all()
    assert before.get('regbot_blobs_total{outcome="copied"}', 0) == 0
    assert node.transfers_done() == 3, nodes.logs()
    assert values['regbot_script_runs_total{status="ok"}'] == 1, values
    assert values['regbot_script_duration_seconds_count{status="ok"}'] == 1
    assert values['regbot_copies_total{status="copied"}'] == 1
    assert values['regbot_blobs_total{outcome="copied"}'] == 3
    assert values["regbot_bytes_total"] == sum(len(b) for b in image.blobs.values())
    assert values["regbot_manifests_total"] >= 1
    assert values['regbot_ratelimit_limit{registry="hub.test"}'] == 100
    assert 0 < values['regbot_ratelimit_remaining{registry="hub.test"}'] < 100
    # the node removed its directory when it stopped
    assert not any(node_tmp.iterdir()), list(node_tmp.iterdir())


def test_a_node_whose_metrics_port_is_taken_says_so_in_one_line(tmp_path, broker):
    import socket
    import subprocess

    config = tmp_path / "regbot.yml"
    config.write_text("version: 1\nscripts:\n  - name: noop\n    script: |\n      log('x')\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "regbot", "worker", "-c", str(config), "--broker", broker,
             "--metrics-port", f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=60, env=regbot_env(), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"regbot: error: cannot serve metrics on 127.0.0.1:{port}: Address already in use"]
