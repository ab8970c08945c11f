"""The quick start's regbot.yml, scripts unchanged, end to end through the CLI.

docker.io is an upstream docker-registry behind the Docker-Hub-like token and rate-limit
front; registry:5000 is another docker-registry. Both are reached through `creds`
hostname overrides, exactly as a user would point regbot at other hosts.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import quickstart
from tests.support.fronts import TokenAuthFront
from tests.support.registry import start_registry


@pytest.fixture
def world(tmp_path):
    upstream = start_registry()
    local = start_registry()
    front = TokenAuthFront(upstream, user=quickstart.HUB_USER, password=quickstart.HUB_PASSWORD,
                           rate_limit=500)
    try:
        yield quickstart.build_world(tmp_path, front.host, upstream.host, local.host), front
    finally:
        front.stop()
        upstream.stop()
        local.stop()


def run_regbot(world, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "regbot", "-c", str(world.config), *args],
        env=world.env, capture_output=True, text=True, timeout=240,
    )


def all_local_tags(world) -> dict[str, set[str]]:
    return {repo: quickstart.local_tags(world, repo)
            for repo in ("library/alpine", "library/debian", "regclient/example")}


def test_dry_run_changes_nothing(world):
    world, front = world
    before = all_local_tags(world)
    assert before == quickstart.expected_before_run()
    proc = run_regbot(world, "once", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert all_local_tags(world) == before
    assert "dry-run=true" in proc.stderr
    # the scripts did read upstream through the token front, as a real dry run does
    assert front.manifest_gets > 0 or front.token_requests


def test_quickstart_scripts_run_unchanged(world):
    world, front = world
    proc = run_regbot(world, "once", "-v", "trace")  # the most verbose logs still hide secrets
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert all_local_tags(world) == quickstart.expected_after_run()

    # latest and stable survive on the digest the pruned ci tags shared
    example = world.example_digests
    for tag in ("latest", "stable"):
        resp = quickstart.images.head_manifest(world.local_host, "regclient/example", tag)
        assert resp.headers["Docker-Content-Digest"] == example[tag]
    # mirrored images are the upstream's, digest for digest
    for repo, tag in (("library/alpine", "3.20"), ("library/debian", "testing-20260501")):
        up = quickstart.images.head_manifest(world.upstream_host, repo, tag)
        down = quickstart.images.head_manifest(world.local_host, repo, tag)
        assert up.headers["Docker-Content-Digest"] == down.headers["Docker-Content-Digest"]
    # credentials went to the token endpoint, and never into the output
    assert any(user == quickstart.HUB_USER for _scope, user in front.token_requests)
    output = proc.stdout + proc.stderr
    assert quickstart.HUB_PASSWORD not in output
    tokens = front.issued_tokens()
    assert tokens and not any(token in output for token in tokens)
    assert "level=debug" in output and "/v2/" in output  # request-level logs really were on
    # the summary names every script
    for name in ("mirror minor versions", "debian date stamped mirror", "delete old builds"):
        assert name in proc.stdout

    # a second run transfers nothing new
    again = run_regbot(world, "once")
    assert again.returncode == 0, again.stderr
    assert all_local_tags(world) == quickstart.expected_after_run()
    assert "blobs-copied=0" in again.stdout.splitlines()[0]
