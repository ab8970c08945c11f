"""`regbot tag ls|rm`, as regctl's: list a repository's tags, delete one tag."""

from __future__ import annotations

import re
from typing import Any

import click

from regbot.commands.common import REFERENCE, AliasedGroup, RefArg, command_settings, regctl_command
from regbot.commands.output import RAW_FORMATS, format_option


@click.group("tag", cls=AliasedGroup)
def tag_group() -> None:
    """Manage tags."""


tag_group.alias("ls", "list")
tag_group.alias("rm", "delete", "del", "remove")


def _patterns(values: tuple[str, ...], flag: str) -> list[re.Pattern[str]]:
    out = []
    for expr in values:
        try:
            out.append(re.compile(f"^(?:{expr})$"))
        except re.error as err:
            raise click.BadParameter(f"failed to parse regexp {expr!r}: {err}", param_hint=flag) from None
    return out


def filter_tags(tags: list[str], include: list[re.Pattern[str]],
                exclude: list[re.Pattern[str]]) -> list[str]:
    """regctl's rule: kept when no --include is given or one matches, and no --exclude
    matches. Expressions are bound to the whole tag."""
    return [t for t in tags
            if (not include or any(p.match(t) for p in include))
            and not any(p.match(t) for p in exclude)]


@regctl_command(tag_group, "ls")
@click.argument("repository", type=REFERENCE)
@click.option("--include", multiple=True, help="Regexp of tags to include (bound to the whole tag)")
@click.option("--exclude", multiple=True, help="Regexp of tags to exclude (bound to the whole tag)")
@click.option("--limit", type=int, default=0, help="Number of tags to retrieve (registry support varies)")
@click.option("--last", default="", help="Last tag of a previous request, for pagination")
@format_option("{{printPretty .}}")
def tag_ls(ctx: click.Context, repository: RefArg, include: tuple[str, ...], exclude: tuple[str, ...],
           limit: int, last: str, fmt: str, **given: Any) -> None:
    """List the tags of a repository, one per line (sorted)."""
    settings = command_settings(ctx, given)
    from regbot.commands.common import build_engine
    from regbot.commands.output import resolve, show
    from regbot.commands.views import tag_list_view

    template = resolve(fmt, RAW_FORMATS)
    includes, excludes = _patterns(include, "'--include'"), _patterns(exclude, "'--exclude'")
    engine = build_engine(settings)
    ref = repository.ref
    listing = engine.client.tag_listing(ref, limit=limit if limit > 0 else None, last=last or None)
    tags = filter_tags(listing.names, includes, excludes)
    show(template, tag_list_view(ref, listing, tags))


@regctl_command(tag_group, "rm")
@click.argument("image", type=REFERENCE)
@click.option("--ignore-missing", is_flag=True, help="Ignore errors if the tag is missing")
def tag_rm(ctx: click.Context, image: RefArg, ignore_missing: bool, **given: Any) -> None:
    """Delete one tag; other tags on the same image stay (as tag.delete in scripts)."""
    settings = command_settings(ctx, given)
    from regbot.commands.common import build_engine, dry_run
    from regbot.errors import NotFound

    ref = image.ref
    if not ref.tag or ref.digest:
        raise click.BadParameter(f"{image.text}: a tag is required (and no digest)", param_hint="IMAGE")
    if dry_run(settings, "Delete tag", image=ref.common_name()):
        return
    engine = build_engine(settings)
    try:
        engine.client.tag_delete(ref)
    except NotFound:
        if not ignore_missing:
            raise
    finally:
        engine.client.close(ref)
