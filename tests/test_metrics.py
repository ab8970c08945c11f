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
