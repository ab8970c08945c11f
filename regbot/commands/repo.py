"""`regbot repo ls HOST`, as regctl's: the repositories of a registry (its catalog)."""

from __future__ import annotations

from typing import Any

import click

from regbot.commands.common import AliasedGroup, command_settings, regctl_command
from regbot.commands.output import RAW_FORMATS, format_option


@click.group("repo", cls=AliasedGroup)
def repo_group() -> None:
    """Manage repositories."""


repo_group.alias("ls", "list")


@regctl_command(repo_group, "ls")
@click.argument("host")
@click.option("--limit", type=int, default=0, help="Number of repositories to retrieve")
@click.option("--last", default="", help="Last repository of a previous request, for pagination")
@format_option("{{printPretty .}}")
def repo_ls(ctx: click.Context, host: str, limit: int, last: str, fmt: str, **given: Any) -> None:
    """List the repositories of a registry, one per line (sorted)."""
    settings = command_settings(ctx, given)
    from regbot.commands.common import build_engine
    from regbot.commands.output import resolve, show
    from regbot.commands.views import repo_list_view
    from regbot.errors import ConfigError
    from regbot.types.ref import Reference
    from regbot.userconfig import registry_name

    template = resolve(fmt, RAW_FORMATS)
    try:
        name, scheme = registry_name(host)
    except ConfigError:
        name, scheme = "", "invalid"
    if scheme:
        raise click.BadParameter(f"{host!r}: expected a registry name (host and optional port)",
                                 param_hint="HOST")
    ref = Reference(scheme="reg", registry=name)
    engine = build_engine(settings)
    listing = engine.client.repo_listing(ref, limit=limit if limit > 0 else None, last=last or None)
    show(template, repo_list_view(listing))
