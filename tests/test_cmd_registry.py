"""`regbot registry set/login/logout/config` on the user config file, against real
docker-registry processes (the htpasswd one for login)."""

from __future__ import annotations

import json
import os
import stat

import pytest

from tests.support import images, regctl_cases
from tests.support.regbot_cli import isolated_env, run_on_pty, run_regbot

USER, PASSWORD = regctl_cases.AUTH_USER, regctl_cases.AUTH_PASSWORD


@pytest.fixture
def env(tmp_path):
    return isolated_env(tmp_path)


def _config_file(env) -> dict:
    with open(f"{env['REGBOT_CONFIG_DIR']}/config.json", encoding="utf-8") as fh:
        return json.load(fh)


def _run(env, *args, stdin=None):
    return run_regbot(*args, env=env, stdin=stdin)


def test_registry_steps_match_regctl(env, registry, auth_registry):
    """The steps regctl ran for the fixtures, run with regbot: the same file, the same
    `registry config` output."""
    for name, args in regctl_cases.REGISTRY_STEPS:
        proc = _run(env, *regctl_cases.registry_argv(args, registry.host, auth_registry.host),
                    stdin=PASSWORD + "\n")
        assert proc.returncode == 0, (args, proc.stderr)
        assert PASSWORD not in proc.stdout + proc.stderr
        if not name:
            continue
        out = regctl_cases.normalize_hosts(proc.stdout, registry.host, auth_registry.host)
        if name == "registry_config_all":  # map order follows the (random) ports
            assert json.loads(out) == json.loads(regctl_cases.expected(name))
            assert list(json.loads(proc.stdout)["hosts"]) == sorted(json.loads(proc.stdout)["hosts"])
        else:
            assert out == regctl_cases.expected(name), name
    stored = json.dumps(_config_file(env))
    stored = regctl_cases.normalize_hosts(stored, registry.host, auth_registry.host)
    assert json.loads(stored) == json.loads(regctl_cases.expected("registry_file"))


def test_config_file_is_private_and_written_whole(env, registry):
    proc = _run(env, "registry", "set", "--tls", "disabled", registry.host)
    assert proc.returncode == 0, proc.stderr
    directory = env["REGBOT_CONFIG_DIR"]
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(f"{directory}/config.json").st_mode) == 0o600
    assert os.listdir(directory) == ["config.json"]  # no temp file left behind
    assert _config_file(env) == {"hosts": {registry.host: {
        "tls": "disabled", "hostname": registry.host, "reqConcurrent": 3}}}


def test_settings_reach_the_client(env, registry):
    """A name set up with --hostname is reached there, as scripts' creds hostnames are."""
    images.push_image(registry.host, "team/app", images.build_image(seed=31), tag="v1")
    proc = _run(env, "registry", "set", "registry:5000", "--hostname", registry.host,
                "--tls", "disabled")
    assert proc.returncode == 0, proc.stderr
    proc = _run(env, "tag", "ls", "registry:5000/team/app")
    assert (proc.returncode, proc.stdout) == (0, "v1\n"), proc.stderr
    proc = _run(env, "registry", "set", "registry:5000", "--tls", "enabled", "--skip-check")
    assert proc.returncode == 0
    proc = _run(env, "tag", "ls", "registry:5000/team/app")  # https to an http registry
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1


def test_set_checks_the_registry_but_keeps_the_settings(env):
    from tests.support.processes import free_port

    host = f"127.0.0.1:{free_port()}"  # nothing listens there
    proc = _run(env, "registry", "set", "--tls", "disabled", host)
    assert proc.returncode == 1
    assert host in proc.stderr and "Traceback" not in proc.stderr
    assert _config_file(env)["hosts"][host]["tls"] == "disabled"


def test_login_checks_then_stores_and_never_prints_the_password(env, auth_registry):
    host = auth_registry.host
    assert _run(env, "registry", "set", "--tls", "disabled", host, "--skip-check").returncode == 0
    wrong = _run(env, "registry", "login", host, "-u", USER, "--pass-stdin", stdin="wrong-one\n")
    assert wrong.returncode == 1
    line, = wrong.stderr.strip().splitlines()
    assert host in line and "UNAUTHORIZED" in line
    assert "user" not in _config_file(env)["hosts"][host]  # refused: nothing stored

    proc = _run(env, "-v", "trace", "registry", "login", host, "-u", USER, "--pass-stdin",
                stdin=PASSWORD + "\n")
    assert proc.returncode == 0, proc.stderr
    assert PASSWORD not in proc.stdout + proc.stderr
    assert _config_file(env)["hosts"][host]["pass"] == PASSWORD

    shown = _run(env, "-v", "trace", "registry", "config", host)
    assert shown.returncode == 0 and PASSWORD not in shown.stdout + shown.stderr
    assert json.loads(shown.stdout)["user"] == USER and "pass" not in json.loads(shown.stdout)
    listed = _run(env, "tag", "ls", f"{host}/nothing/here")  # authenticated: a 404, not a 401
    assert "NAME_UNKNOWN" in listed.stderr

    out = _run(env, "registry", "logout", host)
    assert out.returncode == 0
    assert not {"user", "pass"} & set(_config_file(env)["hosts"][host])
    again = _run(env, "tag", "ls", f"{host}/nothing/here")
    assert again.returncode == 1 and "UNAUTHORIZED" in again.stderr


def test_login_prompts_without_echoing_the_password(env, auth_registry):
    host = auth_registry.host
    assert _run(env, "registry", "set", "--tls", "disabled", host, "--skip-check").returncode == 0
    status, screen = run_on_pty(["registry", "login", host], env,
                                [(b"Username", USER.encode() + b"\r"),
                                 (b"Password", PASSWORD.encode() + b"\r")])
    assert status == 0, screen
    assert "Enter Username" in screen and "Enter Password" in screen
    assert PASSWORD not in screen
    assert _config_file(env)["hosts"][host]["user"] == USER


def test_token_login_and_logout_of_an_entry_left_at_defaults(env, registry):
    proc = _run(env, "registry", "login", registry.host, "-u", "<token>", "--pass-stdin",
                "--skip-check", stdin="an-identity-token-123\n")
    assert proc.returncode == 0, proc.stderr
    entry = _config_file(env)["hosts"][registry.host]
    assert entry["token"] == "an-identity-token-123" and "user" not in entry
    assert _run(env, "registry", "logout", registry.host).returncode == 0
    assert _config_file(env) == {}  # only defaults were left: the entry went


@pytest.mark.parametrize("args", [
    ["registry", "login", "reg.example", "--pass-stdin"],  # no user to go with stdin
    ["registry", "set", "reg.example/path"],  # not a registry name
    ["registry", "set", "reg.example", "--tls", "sometimes"],
    ["registry", "config", "ftp://reg.example"],
])
def test_usage_mistakes_exit_2(env, args):
    proc = _run(env, *args, stdin="x\n")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_entries_are_warnings(env):
    for args in (["registry", "config", "nothere.example"], ["registry", "logout", "nothere.example"]):
        proc = _run(env, *args)
        assert proc.returncode == 0 and proc.stdout == ""
        assert "nothere.example" in proc.stderr and "level=warn" in proc.stderr


def test_a_broken_config_file_is_named(env):
    os.makedirs(env["REGBOT_CONFIG_DIR"])
    with open(f"{env['REGBOT_CONFIG_DIR']}/config.json", "w") as fh:
        fh.write('{"hosts": {"a": ')
    proc = _run(env, "tag", "ls", "a/b")
    assert proc.returncode == 2
    line, = proc.stderr.strip().splitlines()
    assert "config.json" in line and "invalid JSON" in line
