"""Helpers shared by the registry-client tests (tests/test_reg_*.py, test_http_*.py)."""

from __future__ import annotations

import uuid
from typing import Any

from regbot.hosts import TLS_DISABLED, Host, HostTable
from regbot.http.client import HTTPClient
from regbot.limits import Limits, embedded_store
from regbot.scheme.reg import RegScheme
from regbot.types.ref import Reference

USER_AGENT = "regbot-test/1.0"


def make_limits() -> Limits:
    """Limits on the embedded store, under a prefix of their own."""
    return Limits(embedded_store(), prefix=f"regtest-{uuid.uuid4().hex[:8]}")


def plain(name: str, **fields: Any) -> Host:
    """A Host spoken to over plain http (the test registries)."""
    return Host(name=name, tls=TLS_DISABLED, **fields)


def make_scheme(
    hosts: list[Host],
    *,
    limits: Limits | None = None,
    blob_limit: int = 0,
    retries: int = 3,
    backoff_base: float = 0.01,
    skip_docker_config: bool = True,
    docker_config_dir: str | None = None,
    certs_dir: str | None = None,
    **http_kw: Any,
) -> RegScheme:
    table = HostTable(
        hosts, skip_docker_config=skip_docker_config,
        docker_config_dir=docker_config_dir, certs_dir=certs_dir,
    )
    limits = limits or make_limits()
    http = HTTPClient(table, limits, USER_AGENT, retries=retries, backoff_base=backoff_base, **http_kw)
    return RegScheme(table, limits, USER_AGENT, blob_limit=blob_limit, http=http)


def ref(host: str, repo: str, tag: str = "latest") -> Reference:
    return Reference.parse(f"{host}/{repo}:{tag}")


def start_custom_registry(*, http_extra: str = "", extra: str = ""):
    """A docker-registry like tests/support/registry.py starts, with extra config:
    `http_extra` is indented under `http:` (e.g. a `tls:` block), `extra` is top level
    (e.g. `catalog:\\n  maxentries: 2`). Returns a RegistryProcess (call .stop())."""
    import os
    import subprocess
    import tempfile
    import textwrap
    from pathlib import Path

    from tests.support.registry import REGISTRY_BINARY, RegistryProcess, free_port, wait_for_port

    root = Path(tempfile.mkdtemp(prefix="regbot-registry-"))
    port = free_port()
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n  accesslog:\n    disabled: true\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {root / 'data'}\n"
        "  delete:\n    enabled: true\n"
        "  maintenance:\n    uploadpurging:\n      enabled: false\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: regbot-test-secret\n"
        + textwrap.indent(http_extra, "  ")
        + extra
    )
    log_path = root / "registry.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([REGISTRY_BINARY, "serve", str(config)], stdout=log,
                                stderr=subprocess.STDOUT, env=env)
    registry = RegistryProcess(port, root, proc, log_path=log_path)
    try:
        wait_for_port(port, proc=proc)
    except RuntimeError:
        registry.stop()
        raise
    return registry
