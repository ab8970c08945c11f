"""`regbot manifest get|head|rm`, as regctl's."""

from __future__ import annotations

from typing import Any

import click

from regbot.commands.common import REFERENCE, AliasedGroup, RefArg, command_settings, regctl_command
from regbot.commands.output import HEADER_FORMATS, RAW_FORMATS, format_option

DIGEST_TEMPLATE = '{{ printf "%s\\n" .GetDescriptor.Digest }}'
HEAD_FORMATS = {"": DIGEST_TEMPLATE, "digest": DIGEST_TEMPLATE, **HEADER_FORMATS}
PLATFORM_HELP = "Platform of an index to use (e.g. linux/amd64 or local)"


@click.group("manifest", cls=AliasedGroup)
def manifest_group() -> None:
    """Manage manifests."""


manifest_group.alias("get", "pull")
manifest_group.alias("rm", "delete", "del", "remove")


@regctl_command(manifest_group, "get")
@click.argument("image", type=REFERENCE)
@click.option("-p", "--platform", default="", help=PLATFORM_HELP)
@format_option("{{printPretty .}}", "Format output with Go template syntax (body: the manifest as stored)")
def manifest_get(ctx: click.Context, image: RefArg, platform: str, fmt: str, **given: Any) -> None:
    """Show a manifest or index (regctl's text view; --format body for the raw bytes)."""
    settings = command_settings(ctx, given)
    from regbot.commands.common import build_engine, parse_platform, resolve_platform
    from regbot.commands.output import resolve, show
    from regbot.commands.views import manifest_view

    template = resolve(fmt, RAW_FORMATS)
    wanted = parse_platform(platform) if platform else None
    engine = build_engine(settings)
    ref, text = image.ref, image.text
    if wanted is not None:
        ref, manifest = resolve_platform(engine, ref, wanted)
        text = ref.common_name() if ref != image.ref else text
    else:
        manifest = engine.client.manifest_get(ref)
    show(template, manifest_view(manifest, ref, text))


def head_manifest(settings: dict[str, Any], image: RefArg, platform: str, fmt: str) -> None:
    """`manifest head` and `image digest`: the digest (HEAD; a GET only to pick a platform)."""
    from regbot.commands.common import build_engine, parse_platform
    from regbot.commands.output import resolve, show
    from regbot.commands.views import manifest_view
    from regbot.errors import NotFound

    template = resolve(fmt, HEAD_FORMATS)
    wanted = parse_platform(platform) if platform else None
    engine = build_engine(settings)
    ref = image.ref
    manifest = engine.client.manifest_head(ref)
    while wanted is not None and manifest.is_index:
        entry = engine.client.manifest_get(ref).platform_entry(wanted)
        if entry is None:
            raise NotFound(ref, f"platform not found: {wanted}")
        ref = ref.with_tag("").with_digest(entry.digest)
        manifest = engine.client.manifest_head(ref)
    show(template, manifest_view(manifest, ref, image.text if ref == image.ref else ref.common_name()))


@regctl_command(manifest_group, "head")
@click.argument("image", type=REFERENCE)
@click.option("-p", "--platform", default="", help=PLATFORM_HELP)
@format_option("", "Format output with Go template syntax (default: the digest; headers)")
def manifest_head(ctx: click.Context, image: RefArg, platform: str, fmt: str, **given: Any) -> None:
    """Show the digest of a manifest (an HTTP HEAD request)."""
    head_manifest(command_settings(ctx, given), image, platform, fmt)


@regctl_command(manifest_group, "rm")
@click.argument("image", type=REFERENCE)
@click.option("--force-tag-dereference", is_flag=True,
              help="Delete the manifest a tag points to (every tag on it goes too)")
@click.option("--ignore-missing", is_flag=True, help="Ignore errors if the manifest is missing")
@click.option("-p", "--platform", default="", help="Delete this platform's image of an index")
def manifest_rm(ctx: click.Context, image: RefArg, force_tag_dereference: bool,
                ignore_missing: bool, platform: str, **given: Any) -> None:
    """Delete a manifest by digest, and with it every tag on it (see `tag rm`)."""
    settings = command_settings(ctx, given)
    from regbot.commands.common import build_engine, dry_run, parse_platform, resolve_platform
    from regbot.errors import NotFound

    ref = image.ref
    if not ref.digest and not force_tag_dereference:
        raise click.BadParameter(
            f"digest required to delete manifest, reference {ref.common_name()} "
            "(or --force-tag-dereference)", param_hint="IMAGE")
    wanted = parse_platform(platform) if platform else None
    engine = build_engine(settings)
    try:
        if wanted is not None:
            # only the platform's image goes: the index stays, still listing it
            ref = resolve_platform(engine, ref, wanted)[0]
        elif not ref.digest:
            ref = ref.with_digest(engine.client.manifest_head(ref).digest)
        if dry_run(settings, "Delete manifest", image=ref.common_name()):
            return
        engine.client.manifest_delete(ref)
    except NotFound:
        if not ignore_missing:
            raise
    finally:
        engine.client.close(ref)
