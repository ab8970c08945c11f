"""The `repo` module: repo.ls("host[:port]" [, {limit=N, last="r"}])."""

from __future__ import annotations

import re
from typing import Any

from regbot.sandbox.runtime import ArgumentError, Sandbox, lua_type_name
from regbot.sandbox.tag import list_options
from regbot.types.ref import DOCKER_HUB, DOCKER_HUB_ALIASES, Reference

_HOST_RE = re.compile(
    r"^(?:\[[0-9a-fA-F:]+\]|[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
    r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*)(?::[0-9]+)?$"
)


def host_reference(host: str) -> Reference:
    """A registry-only reference (no repository) for catalog calls."""
    if not _HOST_RE.match(host):
        raise ArgumentError(
            f"repo.ls: expected a registry name (host and optional port), got {host!r}")
    if host in DOCKER_HUB_ALIASES:
        host = DOCKER_HUB
    return Reference(scheme="reg", registry=host)


def setup(sb: Sandbox) -> None:
    def ls(host_value: Any = None, opts: Any = None, *_: Any) -> list[str]:
        if not isinstance(host_value, bytes):
            raise ArgumentError(
                "repo.ls: expected a registry name (host and optional port), got "
                + lua_type_name(host_value))
        ref = host_reference(sb.text(host_value, "repo.ls"))
        limit, last = list_options(sb, opts, "repo.ls")
        sb.log.debug("Listing repositories", host=ref.registry, limit=limit, last=last)
        return list(sb.client.repo_list(ref, limit=limit, last=last))

    sb.register_function("repo", "ls", ls)
