"""The README's quick start, run as written (in one shell session) against local
registries: a docker-registry on the quick start's "localhost:5000", and for Docker Hub
an upstream docker-registry behind the Docker-Hub-like token front.

Only what stands in for the outside world differs from what a user pastes: the block
starting a registry is skipped (the test started one), `localhost:5000` is that
registry's address, the Hub user and token are the front's, and docker.io is pointed at
the front (`regbot registry set docker.io --hostname ...` for the commands, a `hostname`
under the docker.io creds of quickstart.yml for the scripts), as DNS would.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.support import images, quickstart
from tests.support.fronts import TokenAuthFront
from tests.support.processes import REPO_ROOT
from tests.support.regbot_cli import isolated_env, run_regbot
from tests.support.registry import start_registry

SECTION = "## Quick start: the Go regbot's walkthrough, with `regbot` alone"


def walkthrough_blocks() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    return re.findall(r"```shell\n(.*?)```", text[start:end], re.S)


@pytest.fixture
def world(tmp_path):
    upstream, local = start_registry(), start_registry()
    front = TokenAuthFront(upstream, user=quickstart.HUB_USER, password=quickstart.HUB_PASSWORD,
                           rate_limit=1000)
    try:
        quickstart.fill_upstream(upstream.host)
        old = images.build_index(seed=77, labels={quickstart.CREATED: quickstart.OLD_DATE},
                                 created=quickstart.OLD_DATE, layer_size=256)
        images.push_image(upstream.host, "regclient/regctl", old, tag="v0.0.1")
        images.push_image(upstream.host, "library/debian", images.build_index(seed=78),
                          tag="latest")
        yield front, local
    finally:
        front.stop()
        upstream.stop()
        local.stop()


class Session:
    """One shell session: each block runs in bash with the variables the blocks before
    it exported, in a working directory holding a copy of the repository's regbot.yml."""

    def __init__(self, tmp_path, substitutions: dict[str, str]) -> None:
        self.work = tmp_path / "work"
        self.work.mkdir()
        (self.work / "regbot.yml").write_text((REPO_ROOT / "regbot.yml").read_text())
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        shim = bin_dir / "regbot"
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m regbot "$@"\n')
        shim.chmod(0o755)
        self.env = isolated_env(tmp_path, PATH=f"{bin_dir}:{os.environ['PATH']}")
        self.state = tmp_path / "exports.sh"
        self.state.write_text("")
        self.substitutions = substitutions

    def script(self, block: str, keep_exports: bool = True) -> str:
        for old, new in self.substitutions.items():
            block = block.replace(old, new)
        tail = f"\nexport -p > {self.state}\n" if keep_exports else ""
        return f"set -e\n. {self.state}\n{block}{tail}"

    def run(self, block: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", self.script(block)], cwd=self.work, env=self.env,
                              capture_output=True, text=True, timeout=300)

    def start(self, block: str, log_path) -> subprocess.Popen:
        with open(log_path, "w") as log:
            return subprocess.Popen(["bash", "-c", self.script(block, keep_exports=False)],
                                    cwd=self.work, env=self.env, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for(path, needle: str, count: int, proc: subprocess.Popen, limit: float = 120) -> str:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and proc.poll() is None:
        text = path.read_text()
        if text.count(needle) >= count:
            return text
        time.sleep(0.2)
    return path.read_text()


def test_readme_walkthrough_runs_as_written(world, tmp_path):
    front, local = world
    blocks = walkthrough_blocks()
    assert len(blocks) == 7, blocks
    session = Session(tmp_path, {"localhost:5000": local.host,
                                 "your_hub_username": quickstart.HUB_USER,
                                 "your_hub_token": quickstart.HUB_PASSWORD})
    # docker.io is the front here, as DNS would have it
    proc = run_regbot("registry", "set", "docker.io", "--hostname", front.host, "--tls",
                      "disabled", "--skip-check", env=session.env)
    assert proc.returncode == 0, proc.stderr
    outputs = []
    for block in blocks:
        if block.startswith("docker "):
            continue  # the registry this test started stands in
        if "regbot server" in block:
            log_path = tmp_path / "server.log"
            server = session.start(block, log_path)
            text = _wait_for(log_path, "Scheduled script", 3, server)
            os.killpg(server.pid, signal.SIGINT)
            assert server.wait(timeout=60) == 0, text
            assert text.count("Scheduled script") == 3, text
            outputs.append(log_path.read_text())
            continue
        proc = session.run(block)
        assert proc.returncode == 0, f"{block}\n{proc.stdout}\n{proc.stderr}"
        outputs.append(proc.stdout + proc.stderr)
        if "cat > quickstart.yml" in block:
            assert "quickstart.yml: ok (3 scripts)" in proc.stdout
            config = session.work / "quickstart.yml"
            config.write_text(config.read_text().replace(
                "  - registry: docker.io\n",
                f"  - registry: docker.io\n    hostname: {front.host}\n    tls: disabled\n"))
        if "regbot image copy" in block:
            assert proc.stdout.endswith("ci-001\nci-002\nci-003\nlatest\nstable\n"), proc.stdout
        if "--dry-run" in block:
            assert "dry-run=true" in proc.stderr
            assert sorted(images.list_tags(local.host, "regclient/example")) == [
                "ci-001", "ci-002", "ci-003", "latest", "stable"]

    expected = quickstart.expected_after_run()
    expected["library/debian"] = (expected["library/debian"] - set(quickstart.LOCAL_OLD_TESTING)) | {"latest"}
    expected["regclient/example"] = {"latest", "stable"}  # every ci build was old
    inspect = outputs[-1].splitlines()
    repos = sorted(expected)
    assert inspect[:3] == repos
    assert inspect[3:] == [tag for repo in repos for tag in sorted(expected[repo])]
    for repo, tags in expected.items():
        assert set(images.list_tags(local.host, repo)) == tags
    assert any(user == quickstart.HUB_USER for _scope, user in front.token_requests)
    assert not any(quickstart.HUB_PASSWORD in out for out in outputs)
