"""`regbot image copy|digest|inspect|export|import`, as regctl's."""

from __future__ import annotations

import sys
from typing import Any

import click

from regbot.commands.common import REFERENCE, AliasedGroup, RefArg, command_settings, regctl_command
from regbot.commands.manifest import PLATFORM_HELP, head_manifest
from regbot.commands.output import RAW_FORMATS, format_option

COPY_TEMPLATE = "{{ .CommonName }}\n"


@click.group("image", cls=AliasedGroup)
def image_group() -> None:
    """Manage images."""


image_group.alias("copy", "cp")
image_group.alias("inspect", "config")


@regctl_command(image_group, "copy")
@click.argument("source", type=REFERENCE)
@click.argument("target", type=REFERENCE)
@click.option("-p", "--platform", default="", help="Copy only this platform's image (e.g. linux/amd64 or local)")
@click.option("--platforms", multiple=True, hidden=True,
              help="Copy only these platforms of an index (the registry must not validate indexes)")
@click.option("--digest-tags", is_flag=True, help='Include digest tags ("sha256-<digest>.*")')
@click.option("--referrers", is_flag=True, help="Include referrers")
@click.option("--force-recursive", is_flag=True,
              help="Copy everything again, repairing missing nested blobs and manifests")
@click.option("--include-external", is_flag=True, help="Include external (foreign) layers")
@click.option("--fast", is_flag=True,
              help="Fast check: skip referrers and digest tags when the image exists")
@format_option("", "Format output with Go template syntax (default: the target's name)")
def image_copy(ctx: click.Context, source: RefArg, target: RefArg, platform: str,
               platforms: tuple[str, ...], digest_tags: bool, referrers: bool,
               force_recursive: bool, include_external: bool, fast: bool, fmt: str,
               **given: Any) -> None:
    """Copy or retag an image: between registries only missing blobs move, within a
    registry layers are mounted, within a repository only the manifest is sent."""
    settings = command_settings(ctx, given)
    from regbot.commands.common import build_engine, dry_run, parse_platform, resolve_platform
    from regbot.commands.output import resolve, show
    from regbot.commands.views import reference_view
    from regbot.copy import CopyOptions

    template = resolve(fmt or COPY_TEMPLATE)
    wanted = parse_platform(platform) if platform else None
    for item in platforms:
        parse_platform(item)
    options = CopyOptions(platforms=list(platforms), digest_tags=digest_tags,
                          force_recursive=force_recursive, include_external=include_external,
                          referrers=referrers, fast_check=fast)
    engine = build_engine(settings)
    src, tgt = source.ref, target.ref
    if wanted is not None:
        # regctl pins the source to the platform's image, keeping its tag in the name
        src = src.with_digest(resolve_platform(engine, src, wanted)[0].digest)
    if not dry_run(settings, "Copy image", source=src.common_name(), target=tgt.common_name()):
        try:
            _copy(engine, src, tgt, options, live=_wants_progress(settings))
        finally:
            engine.client.close(tgt)
            engine.client.close(src)
    show(template, reference_view(tgt, target.text))


def _wants_progress(settings: dict[str, Any]) -> bool:
    """regctl shows progress on a terminal unless -v was given."""
    return sys.stderr.isatty() and not settings.get("verbosity")


def _copy(engine: Any, src: Any, tgt: Any, options: Any, *, live: bool) -> None:
    from regbot.copy import copy_image

    if not live:
        copy_image(engine.client, src, tgt, options, executor=engine.executor)
        return
    from regbot.display import LiveDisplay

    with LiveDisplay(None, sys.stderr) as display:
        copy_image(engine.client, src, tgt, options, executor=engine.executor,
                   progress=display.for_script("copy"))


@regctl_command(image_group, "digest")
@click.argument("image", type=REFERENCE)
@click.option("-p", "--platform", default="", help=PLATFORM_HELP)
@format_option("", "Format output with Go template syntax (default: the digest; headers)")
def image_digest(ctx: click.Context, image: RefArg, platform: str, fmt: str, **given: Any) -> None:
    """Show the digest of an image, for pinning (as `manifest head`)."""
    head_manifest(command_settings(ctx, given), image, platform, fmt)


@regctl_command(image_group, "inspect")
@click.argument("image", type=REFERENCE)
@click.option("-p", "--platform", default="", help=PLATFORM_HELP + " (default: local)")
@format_option("{{printPretty .}}")
def image_inspect(ctx: click.Context, image: RefArg, platform: str, fmt: str, **given: Any) -> None:
    """Show the image config (what `docker inspect` shows, without pulling layers)."""
    settings = command_settings(ctx, given)
    from regbot.commands.common import build_engine, parse_platform, resolve_platform
    from regbot.commands.output import resolve, show
    from regbot.commands.views import image_config_view
    from regbot.errors import RegbotError
    from regbot.types.manifest import MT_DOCKER_CONFIG, MT_OCI_CONFIG

    template = resolve(fmt, RAW_FORMATS)
    wanted = parse_platform(platform or "local")
    engine = build_engine(settings)
    ref, manifest = resolve_platform(engine, image.ref, wanted)
    config = manifest.config
    if config is None or config.media_type not in (MT_OCI_CONFIG, MT_DOCKER_CONFIG):
        kind = config.media_type if config is not None else manifest.media_type
        raise RegbotError(f"{image.ref.common_name()}: artifacts are not supported with "
                          f"image inspect (media type {kind})")
    with engine.client.blob_get(ref, config.digest, config.size) as reader:
        raw = reader.read_all()
        headers = reader.headers
    show(template, image_config_view(raw, config, headers))


@regctl_command(image_group, "export")
@click.argument("image", type=REFERENCE)
@click.argument("file", required=False, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("-p", "--platform", default="", help="Export only this platform's image")
@click.option("--compress", is_flag=True, help="Compress the tar with gzip")
def image_export(ctx: click.Context, image: RefArg, file: str | None, platform: str,
                 compress: bool, **given: Any) -> None:
    """Write an image to a tar file (OCI layout and `docker load` format; standard
    output without FILE)."""
    settings = command_settings(ctx, given)
    from regbot.commands.common import build_engine, dry_run, parse_platform, resolve_platform
    from regbot.tarball import export_tar, export_tar_stream

    wanted = parse_platform(platform) if platform else None
    to_stdout = not file or file == "-"
    if to_stdout and sys.stdout.isatty():
        raise click.UsageError("refusing to write a tar to a terminal: give a FILE or redirect")
    engine = build_engine(settings)
    ref = image.ref
    if wanted is not None:
        ref = ref.with_digest(resolve_platform(engine, ref, wanted)[0].digest)
    if dry_run(settings, "Export image", image=ref.common_name(), file=file or "-"):
        return
    if to_stdout:
        export_tar_stream(engine.client, ref, sys.stdout.buffer, compress=compress)
        sys.stdout.buffer.flush()
    else:
        assert file is not None
        export_tar(engine.client, ref, file, compress=compress)


@regctl_command(image_group, "import")
@click.argument("image", type=REFERENCE)
@click.argument("file", type=click.Path(dir_okay=False))
def image_import(ctx: click.Context, image: RefArg, file: str, **given: Any) -> None:
    """Push an image from a tar file (`docker save` or OCI layout, as `image export`
    writes)."""
    settings = command_settings(ctx, given)
    from regbot.commands.common import build_engine, dry_run
    from regbot.tarball import import_tar

    if dry_run(settings, "Import image", image=image.ref.common_name(), file=file):
        return
    engine = build_engine(settings)
    try:
        import_tar(engine.client, image.ref, file)
    finally:
        engine.client.close(image.ref)
