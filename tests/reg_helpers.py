"""Helpers shared by the registry-client tests (tests/test_reg_*.py, test_http_*.py)."""

from __future__ import annotations

import uuid
from typing import Any

from regbot.hosts import TLS_DISABLED, Host, HostTable
from regbot.http.client import HTTPClient
from regbot.limits import Limits
from regbot.scheme.reg import RegScheme
from regbot.types.ref import Reference

USER_AGENT = "regbot-test/1.0"


def make_limits() -> Limits:
    """Limits on the embedded store, under a prefix of their own."""
    return Limits.in_memory(prefix=f"regtest-{uuid.uuid4().hex[:8]}")


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

