"""compose/: the stack and the image, checked by reading (no Docker engine in CI): what each
service runs exists in this repository and the stack keeps the properties the README's
scaling section promises."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from click.testing import CliRunner

from regbot.cli import main

COMPOSE = Path(__file__).resolve().parent.parent / "compose"


def _stack() -> dict:
    return yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())


def test_stack_has_its_services():
    services = _stack()["services"]
    assert set(services) == {"redis", "registry", "worker", "beat", "flower"}
    registry = services["registry"]
    assert registry["image"].startswith("registry:2")
    assert registry["environment"]["REGISTRY_STORAGE_DELETE_ENABLED"] == "true"


def test_worker_can_be_scaled():
    worker = _stack()["services"]["worker"]
    # --scale worker=N: no fixed name, no host port, each container its own node name
    assert "container_name" not in worker and "ports" not in worker and "hostname" not in worker
    assert worker["command"][:3] == ["worker", "-c", "/etc/regbot/regbot.yml"]


def test_regbot_services_share_config_secrets_and_broker():
    services = _stack()["services"]
    for name in ("worker", "beat"):
        service = services[name]
        assert service["volumes"] == ["${REGBOT_CONFIG_DIR:-./config}:/etc/regbot:ro"]
        assert service["secrets"] == ["hub_token"]
        assert service["environment"]["REGBOT_BROKER_URL"].endswith("redis://redis:6379/0}")
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["beat"]["command"] == ["beat", "-c", "/etc/regbot/regbot.yml"]
    assert _stack()["secrets"]["hub_token"]["file"].endswith("./secrets/hub_token}")


def test_flower_watches_the_same_broker_on_5555():
    flower = _stack()["services"]["flower"]
    assert flower["entrypoint"] == ["celery", "-A", "workers.app", "flower"]
    assert "--port=5555" in flower["command"]
    assert flower["ports"] == ["127.0.0.1:5555:5555"]
    assert flower["environment"]["REGBOT_BROKER_URL"].endswith("redis://redis:6379/0}")


def test_commands_the_stack_runs_exist():
    runner = CliRunner()
    for command in ("worker", "beat", "server"):
        result = runner.invoke(main, [command, "--help"])
        assert result.exit_code == 0, result.output
    beat_help = runner.invoke(main, ["beat", "--help"]).output
    assert "--broker" in beat_help and "--lock-ttl" in beat_help
    assert "--transfers" in runner.invoke(main, ["worker", "--help"]).output
    import workers.app

    assert workers.app.app.main == "regbot"


def test_dockerfile_builds_a_non_root_regbot_image():
    text = (COMPOSE / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    assert re.search(r"^RUN pip install \.", text, re.M)
    assert re.search(r"^USER (?!root|0\b)\S+", text, re.M)
    assert re.search(r'^ENTRYPOINT \["regbot"\]$', text, re.M)
    root = COMPOSE.parent
    for line in re.findall(r"^COPY (.+) \S+$", text, re.M):
        for source in line.split():
            assert (root / source).exists(), f"the Dockerfile copies a missing {source}"
    build = _stack()["x-regbot"]["build"]
    assert (COMPOSE / build["context"] / build["dockerfile"]).resolve() == COMPOSE / "Dockerfile"
