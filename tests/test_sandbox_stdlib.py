"""The Lua standard library as the Go regbot opens it (the default), and the restricted
sandbox an operator can choose instead: scripts run by `regbot once` against real
registries (tests/test_cluster.py runs the same script on a worker node)."""

from __future__ import annotations

import os

import pytest

from tests.support import images
from tests.support.regbot_cli import run_regbot
from tests.support.stdlib_script import write_stdlib_world

TAGS = ["v1", "v2"]
ENV = {k: v for k, v in os.environ.items() if not k.startswith("REGBOT_")}  # embedded


def push_tags(host: str, repo: str, seed: int) -> dict[str, images.Image]:
    pushed = {}
    for n, tag in enumerate(TAGS):
        image = images.build_image(layers=1, layer_size=300, seed=seed + n)
        images.push_image(host, repo, image, tag=tag)
        pushed[tag] = image
    return pushed


def write_script(tmp_path, body: str, *, defaults: str = "", extra: str = ""):
    lines = ["version: 1"]
    if defaults:
        lines += ["defaults:", *[f"  {d}" for d in defaults.splitlines()]]
    lines += ["scripts:", "  - name: s", "    timeout: 30s", *([extra] if extra else []),
              "    script: |", *[f"      {line}" for line in body.strip().splitlines()]]
    config = tmp_path / "regbot.yml"
    config.write_text("\n".join(lines) + "\n")
    return config


def test_a_go_regbot_script_using_the_standard_library_runs(tmp_path, registry, registry2,
                                                            repo):
    pushed = push_tags(registry.host, repo, seed=9100)
    world = write_stdlib_world(tmp_path, registry.host, registry2.host, repo, TAGS)
    proc = run_regbot("once", "-c", str(world.config), env=world.env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "hello from the environment" in proc.stderr
    assert "went on after os.exit" not in proc.stdout + proc.stderr
    assert 'summary script=stdlib status=ok' in proc.stdout, proc.stdout
    for tag, image in pushed.items():
        resp = images.head_manifest(registry2.host, repo, tag)
        assert resp.headers.get("Docker-Content-Digest") == image.digest
    assert world.report.read_text() == "1 v1\n2 v2\n"


def test_os_exit_with_a_failure_status_fails_the_script_not_the_process(tmp_path):
    config = write_script(tmp_path, """
        log("before")
        pcall(os.exit, 3)
        log("never logged")
    """)
    proc = run_regbot("once", "-c", str(config), env=ENV, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "os.exit(3): the script ended with status 3" in proc.stdout
    assert "never logged" not in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_timeout_ends_a_loop_inside_a_coroutine(tmp_path):
    config = write_script(tmp_path, """
        local c = coroutine.wrap(function() while true do end end)
        c()
    """, extra="    timeout: 1s")
    proc = run_regbot("once", "-c", str(config), env=ENV, cwd=tmp_path)
    assert proc.returncode == 1
    assert "status=timeout" in proc.stdout and "timed out after 1s" in proc.stdout


def test_dry_run_still_writes_local_files(tmp_path, registry, registry2, repo):
    """The Go regbot's dry run covers registry writes only."""
    push_tags(registry.host, repo, seed=9200)
    world = write_stdlib_world(tmp_path, registry.host, registry2.host, repo, TAGS)
    proc = run_regbot("once", "--dry-run", "-c", str(world.config), env=world.env,
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert world.report.read_text() == "1 v1\n2 v2\n"
    assert images.head_manifest(registry2.host, repo, "v1").status_code == 404


@pytest.mark.parametrize("where", ["defaults", "script"])
def test_the_restricted_sandbox_refuses_files_modules_and_exit(tmp_path, where):
    (tmp_path / "helper.lua").write_text("return {}\n")
    checks = {
        "io": 'io.open("x", "w")',
        "require": 'require("helper")',
        "os.exit": "os.exit(0)",
        "os.getenv": 'os.getenv("HOME")',
    }
    body = "\n".join(
        f'if pcall(function() {call} end) then error("{name} is open") end'
        for name, call in checks.items()) + '\nlog("all refused")'
    config = write_script(
        tmp_path, body,
        defaults="sandbox: restricted" if where == "defaults" else "",
        extra="    sandbox: restricted" if where == "script" else "")
    proc = run_regbot("once", "-c", str(config), "-v", "info", env=ENV, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all refused" in proc.stderr


def test_a_script_can_keep_the_full_library_when_the_default_restricts(tmp_path):
    config = write_script(tmp_path, 'log(type(io.open))', defaults="sandbox: restricted",
                          extra="    sandbox: full")
    proc = run_regbot("once", "-c", str(config), env=ENV, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "function" in proc.stderr


def test_an_unknown_sandbox_mode_is_a_config_error(tmp_path):
    config = write_script(tmp_path, 'log("x")', defaults="sandbox: open")
    proc = run_regbot("once", "-c", str(config), env=ENV, cwd=tmp_path)
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert "regbot.yml:3" in line and "defaults.sandbox" in line and '"open"' in line, line
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("text", ["", "version: 1\nscripts: []\n", "version: 1\ndefaults:\n  parallel: 2\n"])
@pytest.mark.parametrize("command", ["once", "server"])
def test_a_config_without_scripts_is_refused_by_once_and_server(tmp_path, text, command):
    config = tmp_path / "empty.yml"
    config.write_text(text)
    proc = run_regbot(command, "-c", str(config), env=ENV, cwd=tmp_path, timeout=30)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip() == f"regbot: error: {config}: defines no scripts (add entries under `scripts:`)"
