"""Host options regclient acts on, checked against real docker-registry processes behind
recording fronts: apiOpts disableHead (the others have their behaviour tests in
test_reg_fronts.py, test_reg_registry.py, test_reg_tls.py and test_hosts.py; see the
audit in regbot/hosts.py)."""

from __future__ import annotations

import logging
import os

import pytest

from regbot.client import RegClient
from regbot.config import parse_config
from regbot.hosts import TLS_DISABLED, Host
from regbot.types.ref import Reference
from tests.support import images as im
from tests.support.fronts import FaultFront

R = Reference.parse


@pytest.fixture
def front(registry):
    f = FaultFront(registry)
    yield f
    f.stop()


@pytest.fixture
def front2(registry2):
    f = FaultFront(registry2)
    yield f
    f.stop()


def methods(front, kind: str) -> list[str]:
    return [m for m, path in front.requests if f"/{kind}/" in path]


def test_disable_head_reads_by_get(registry, front, repo):
    img = im.build_image(seed=701)
    im.push_image(registry.host, repo, img, tag="v1")
    client = RegClient([Host(name=front.host, tls=TLS_DISABLED,
                             api_opts={"disableHead": "true"})])
    head = client.manifest_head(R(f"{front.host}/{repo}:v1"))
    assert (head.digest, head.media_type, head.size) == (img.digest, img.media_type, img.size)
    layer = img.layers[0]
    assert client.blob_head(R(f"{front.host}/{repo}"), layer["digest"]).size == layer["size"]
    assert "HEAD" not in [m for m, _ in front.requests]
    assert methods(front, "manifests") == ["GET"] and methods(front, "blobs") == ["GET"]


def test_without_disable_head_heads_are_sent(registry, front, repo):
    img = im.build_image(seed=702)
    im.push_image(registry.host, repo, img, tag="v1")
    client = RegClient([Host(name=front.host, tls=TLS_DISABLED, api_opts={"disableHead": "false"})])
    assert client.manifest_head(R(f"{front.host}/{repo}:v1")).digest == img.digest
    assert methods(front, "manifests") == ["HEAD"]


def test_mirror_with_disable_head_is_skipped_for_heads_only(registry, registry2, front, front2,
                                                           repo):
    """The upstream is `front` (registry), its mirror `front2` (registry2) with HEAD
    disabled: HEADs go to the upstream, GETs to the mirror first."""
    img = im.build_image(seed=703)
    for reg in (registry, registry2):
        im.push_image(reg.host, repo, img, tag="v1")
    client = RegClient([
        Host(name=front.host, tls=TLS_DISABLED, mirrors=[front2.host]),
        Host(name=front2.host, tls=TLS_DISABLED, api_opts={"disableHead": "1"}),
    ])
    ref = R(f"{front.host}/{repo}:v1")
    assert client.manifest_head(ref).digest == img.digest
    assert methods(front, "manifests") == ["HEAD"] and methods(front2, "manifests") == []
    assert client.manifest_get(ref).raw == img.manifest
    assert methods(front2, "manifests") == ["GET"] and methods(front, "manifests") == ["HEAD"]


def test_disable_head_from_the_config_file():
    config = parse_config("creds:\n  - registry: r\n    apiOpts:\n      disableHead: \"true\"\n"
                          "  - registry: s\n    apiOpts:\n      disableHead: \"false\"\n")
    by_name = {h.name: h for h in config.creds}
    assert by_name["r"].disable_head and not by_name["s"].disable_head


def test_ignored_option_warns_once_naming_host_and_option(caplog):
    with caplog.at_level(logging.WARNING, logger="regbot.config"):
        parse_config("creds:\n  - registry: reg.example:5000\n    api: docker\n")
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(lines) == 1
    assert "reg.example:5000" in lines[0] and "api" in lines[0] and "ignored" in lines[0]


def test_cred_helper_and_cred_host_log_in_to_a_real_registry(auth_registry, repo, tmp_path,
                                                             monkeypatch):
    """credHelper answers for credHost (not the registry's own name): the pull works; a
    helper asked for the wrong name leaves the client unauthorised."""
    from regbot.errors import Unauthorized

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "helper.log"
    script = bin_dir / "docker-credential-regtest"
    script.write_text(
        "#!/bin/sh\nread -r server\n"
        f'echo "$1 $server" >> "{log}"\n'
        'if [ "$server" = "creds.example" ]; then\n'
        f"  printf '{{\"Username\":\"alice\",\"Secret\":\"{auth_registry.password}\"}}'\n"
        "else echo 'credentials not found in native keychain'; exit 1; fi\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    img = im.build_image(seed=704)
    im.push_image(auth_registry.host, repo, img, tag="v1", auth=("alice", auth_registry.password))
    ref = R(f"{auth_registry.host}/{repo}:v1")

    good = RegClient([Host(name=auth_registry.host, tls=TLS_DISABLED, cred_helper="regtest",
                           cred_host="creds.example")], skip_docker_config=True)
    assert good.manifest_get(ref).raw == img.manifest
    assert good.manifest_get(ref).raw == img.manifest
    assert log.read_text().splitlines() == ["get creds.example"]  # cached for credExpire

    wrong = RegClient([Host(name=auth_registry.host, tls=TLS_DISABLED, cred_helper="regtest")],
                      skip_docker_config=True)
    with pytest.raises(Unauthorized):
        wrong.manifest_get(ref)
