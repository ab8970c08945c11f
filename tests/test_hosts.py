"""HostTable: regbot.yml entries merged with Docker's config.json, credential helpers,
certs.d, defaults; and logging in to a real registry with those credentials."""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
from pathlib import Path

import pytest

from regbot.credhelper import Credential, helper_get
from regbot.errors import Unauthorized
from regbot.hosts import TLS_DISABLED, TLS_ENABLED, Host, HostTable
from tests.reg_helpers import make_scheme, plain, ref

HELPER = """#!/bin/sh
# A docker-credential-test helper for the tests: counts calls, answers by server name.
read -r server
echo "$1 $server" >> "{log}"
case "$server" in
  helped.test|{registry}) printf '{{"ServerURL":"%s","Username":"alice","Secret":"{password}"}}' "$server" ;;
  tok.test) printf '{{"ServerURL":"tok.test","Username":"<token>","Secret":"identity-tok"}}' ;;
  https://index.docker.io/v1/) printf '{{"Username":"hubuser","Secret":"hubpass"}}' ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
"""


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def helper_bin(tmp_path, monkeypatch):
    """`docker-credential-test` on PATH; returns the file logging its calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "helper.log"
    log.write_text("")

    def install(registry: str = "none.test", password: str = "s3cret-Pa55") -> Path:
        script = bin_dir / "docker-credential-test"
        script.write_text(HELPER.format(log=log, registry=registry, password=password))
        script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return log

    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return install


def write_docker_config(directory: Path, data: dict) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(data))
    return str(directory)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --- defaults and config entries ---


def test_defaults_for_unknown_registries():
    table = HostTable([], skip_docker_config=True)
    hub = table.get("docker.io")
    assert hub.hostname == "registry-1.docker.io" and hub.tls == TLS_ENABLED
    assert table.get("index.docker.io") is hub  # aliases name the same host
    # regclient defaults every name to TLS, localhost and loopback included.
    for name in ("localhost:5000", "127.0.0.1:5000", "ghcr.io"):
        host = table.get(name)
        assert host.tls == TLS_ENABLED and host.hostname == name and host.base_url == f"https://{name}"
    assert table.get("ghcr.io") is table.get("ghcr.io")
    assert table.credentials("ghcr.io") == Credential()


def test_configured_entries_and_mirror_order():
    table = HostTable([
        Host("registry:5000", hostname="127.0.0.1:5000", tls=TLS_DISABLED, user="u", password="pw-Xyz",
             mirrors=["low", "high", "registry:5000"]),
        Host("low", priority=1), Host("high", priority=5),
    ], skip_docker_config=True)
    host = table.get("registry:5000")
    assert host.base_url == "http://127.0.0.1:5000"
    assert table.credentials("registry:5000") == Credential("u", "pw-Xyz")
    assert [m.name for m in table.mirrors("registry:5000")] == ["high", "low"]
    assert "pw-Xyz" not in repr(host) and "pw-Xyz" not in repr(table.credentials("registry:5000"))


# --- Docker's config.json ---


def test_docker_config_auths_helpers_and_precedence(tmp_path, monkeypatch, helper_bin):
    helper_bin()
    directory = write_docker_config(tmp_path / "dockercfg", {
        "auths": {
            "reg.test:5000": {"auth": b64("alice:pw:with:colons")},
            "https://index.docker.io/v1/": {"identitytoken": "id-token"},
            "http://plain.test": {"username": "u", "password": "p"},
            "nocreds.test": {},
            "override.test": {"auth": b64("docker-user:docker-pw")},
            "merge.test": {"auth": b64("merged:pw")},
        },
        "credHelpers": {"helped.test": "test"},
        "credsStore": "test",
    })
    monkeypatch.setenv("DOCKER_CONFIG", directory)
    table = HostTable([
        Host("override.test", user="config-user", password="config-pw"),
        Host("merge.test", hostname="127.0.0.1:1"),
    ])
    assert table.credentials("reg.test:5000") == Credential("alice", "pw:with:colons")
    assert table.credentials("docker.io") == Credential(token="id-token")
    assert table.get("plain.test").tls == TLS_DISABLED
    assert table.credentials("plain.test") == Credential("u", "p")
    assert table.credentials("override.test") == Credential("config-user", "config-pw")
    merged = table.get("merge.test")
    assert merged.hostname == "127.0.0.1:1" and table.credentials("merge.test") == Credential("merged", "pw")
    assert table.get("helped.test").cred_helper == "docker-credential-test"
    assert table.credentials("helped.test") == Credential("alice", "s3cret-Pa55")
    # credsStore is the helper of every other registry (here it knows tok.test).
    assert table.get("tok.test").cred_helper == "docker-credential-test"
    assert table.credentials("tok.test") == Credential(token="identity-tok")
    # skipDockerConfig: none of it.
    skipped = HostTable([], skip_docker_config=True)
    assert skipped.credentials("reg.test:5000") == Credential()
    assert skipped.get("docker.io").cred_helper == ""


def test_docker_config_dir_defaults_to_home(tmp_path, monkeypatch):
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    write_docker_config(tmp_path / ".docker", {"auths": {"h.test": {"auth": b64("a:b")}}})
    assert HostTable([]).credentials("h.test") == Credential("a", "b")


def test_broken_docker_config_is_ignored(tmp_path, caplog):
    directory = tmp_path / "broken"
    directory.mkdir()
    (directory / "config.json").write_text('{"auths": {"h.test": {"auth": "c2VjcmV0LXBhc3M=')
    with caplog.at_level(logging.WARNING):
        table = HostTable([], docker_config_dir=str(directory))
    assert table.credentials("h.test") == Credential()
    assert "c2VjcmV0" not in caplog.text


# --- credential helpers ---


def test_helper_protocol_and_cache(helper_bin, caplog):
    log = helper_bin()
    clock = Clock()
    table = HostTable([
        Host("helped.test", cred_helper="test", cred_expire=60),
        Host("alias.test", cred_helper="docker-credential-test", cred_host="helped.test"),
        Host("missing.test", cred_helper="test", user="static", password="fallback"),
        Host("docker.io", cred_helper="test"),
    ], skip_docker_config=True, clock=clock)
    assert table.credentials("helped.test") == Credential("alice", "s3cret-Pa55")
    assert table.credentials("helped.test") == Credential("alice", "s3cret-Pa55")
    assert log.read_text().splitlines() == ["get helped.test"]  # cached
    clock.now += 61
    table.credentials("helped.test")
    assert log.read_text().splitlines() == ["get helped.test"] * 2  # credExpire passed
    # credHost names the server asked for; Docker Hub is asked by its index URL.
    assert table.credentials("alias.test") == Credential("alice", "s3cret-Pa55")
    assert table.credentials("docker.io") == Credential("hubuser", "hubpass")
    assert log.read_text().splitlines()[-2:] == ["get helped.test", "get https://index.docker.io/v1/"]
    # A failing helper: the configured credentials, a warning without secrets, retried soon.
    with caplog.at_level(logging.WARNING):
        assert table.credentials("missing.test") == Credential("static", "fallback")
    assert "credentials not found" in caplog.text and "fallback" not in caplog.text
    calls = len(log.read_text().splitlines())
    table.credentials("missing.test")
    assert len(log.read_text().splitlines()) == calls
    clock.now += 6
    table.credentials("missing.test")
    assert len(log.read_text().splitlines()) == calls + 1


def test_helper_errors_are_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(Exception, match="docker-credential-nope not found"):
        helper_get("nope", "x.test")
    script = tmp_path / "docker-credential-garbage"
    script.write_text("#!/bin/sh\necho '{\"Secret\": \"leaky'\n")
    script.chmod(0o755)
    with pytest.raises(Exception, match="not JSON") as info:
        helper_get("garbage", "x.test")
    assert "leaky" not in str(info.value)


# --- certs.d ---


def test_certs_d_material(tmp_path):
    certs = tmp_path / "certs.d"
    (certs / "reg.test:5000").mkdir(parents=True)
    (certs / "reg.test:5000" / "ca.crt").write_text("CA-ONE\n")
    (certs / "reg.test:5000" / "other.crt").write_text("CA-TWO")
    (certs / "reg.test:5000" / "client.cert").write_text("CLIENT-CERT")
    (certs / "reg.test:5000" / "client.key").write_text("CLIENT-KEY")
    table = HostTable([Host("reg.test:5000", regcert="CA-CONFIG")], certs_dir=str(certs),
                      docker_config_dir=str(tmp_path / "none"))
    material = table.tls_material("reg.test:5000")
    assert material.ca_pem.split("\n") == ["CA-CONFIG", "CA-ONE", "CA-TWO"]
    assert (material.client_cert, material.client_key) == ("CLIENT-CERT", "CLIENT-KEY")
    assert "CLIENT-KEY" not in repr(material)
    # clientCert/clientKey from the config win; skipDockerConfig ignores certs.d.
    table = HostTable([Host("reg.test:5000", client_cert="C", client_key="K")], certs_dir=str(certs),
                      docker_config_dir=str(tmp_path / "none"))
    assert table.tls_material("reg.test:5000").client_cert == "C"
    skipped = HostTable([], skip_docker_config=True, certs_dir=str(certs))
    assert skipped.tls_material("reg.test:5000").ca_pem == ""


# --- against a real registry with basic auth ---


def test_docker_config_login_to_auth_registry(auth_registry, tmp_path, repo):
    directory = write_docker_config(tmp_path / "d", {
        "auths": {auth_registry.host: {"auth": b64(f"alice:{auth_registry.password}")}},
    })
    scheme = make_scheme([plain(auth_registry.host)], skip_docker_config=False, docker_config_dir=directory)
    scheme.ping(ref(auth_registry.host, repo))  # anonymous is refused: see the last test


def test_credential_helper_login_to_auth_registry(auth_registry, helper_bin, tmp_path, repo):
    log = helper_bin(registry=auth_registry.host, password=auth_registry.password)
    directory = write_docker_config(tmp_path / "d", {"credHelpers": {auth_registry.host: "test"}})
    scheme = make_scheme([plain(auth_registry.host)], skip_docker_config=False, docker_config_dir=directory)
    scheme.ping(ref(auth_registry.host, repo))
    scheme.ping(ref(auth_registry.host, repo))
    assert log.read_text().splitlines() == [f"get {auth_registry.host}"]  # asked once, cached


def test_wrong_password_is_unauthorized_without_leaking(auth_registry, repo):
    scheme = make_scheme([plain(auth_registry.host, user="alice", password="wrong-Secret-1")])
    with pytest.raises(Unauthorized) as info:
        scheme.ping(ref(auth_registry.host, repo))
    assert "wrong-Secret-1" not in str(info.value) and info.value.status == 401
    anonymous = make_scheme([plain(auth_registry.host)])
    with pytest.raises(Unauthorized):
        anonymous.ping(ref(auth_registry.host, repo))
