"""`regbot blob get|head REPO DIGEST`, as regctl's."""

from __future__ import annotations

import sys
from typing import Any

import click

from regbot.commands.common import (
    DIGEST,
    REFERENCE,
    AliasedGroup,
    RefArg,
    command_settings,
    regctl_command,
)
from regbot.commands.output import HEADERS_TEMPLATE, RAW_FORMATS, format_option

_STREAM_FORMATS = ("{{printPretty .}}", "rawBody", "raw-body", "body")


@click.group("blob", cls=AliasedGroup)
def blob_group() -> None:
    """Manage blobs (layers, configs)."""


blob_group.alias("get", "pull")
blob_group.alias("head", "digest")


@regctl_command(blob_group, "get")
@click.argument("repository", type=REFERENCE)
@click.argument("digest", type=DIGEST)
@format_option("{{printPretty .}}", "Format output with Go template syntax (default: the blob itself)")
def blob_get(ctx: click.Context, repository: RefArg, digest: str, fmt: str, **given: Any) -> None:
    """Write a blob to standard output, checked against its digest."""
    settings = command_settings(ctx, given)
    from regbot.commands.common import build_engine
    from regbot.commands.output import resolve, show
    from regbot.commands.views import blob_view

    template = None if fmt in _STREAM_FORMATS else resolve(fmt, RAW_FORMATS)
    engine = build_engine(settings)
    with engine.client.blob_get(repository.ref, digest) as reader:
        if template is None:
            out = sys.stdout.buffer
            for chunk in reader:
                out.write(chunk)
            out.flush()
            return
        show(template, blob_view(reader.descriptor, reader.headers, reader.read_all))


@regctl_command(blob_group, "head")
@click.argument("repository", type=REFERENCE)
@click.argument("digest", type=DIGEST)
@format_option("", "Format output with Go template syntax (default: the response headers)")
def blob_head(ctx: click.Context, repository: RefArg, digest: str, fmt: str, **given: Any) -> None:
    """Show the headers of a blob HEAD request."""
    settings = command_settings(ctx, given)
    from regbot.commands.common import build_engine
    from regbot.commands.output import resolve, show
    from regbot.commands.views import blob_view

    named = {"": HEADERS_TEMPLATE, "rawHeaders": HEADERS_TEMPLATE, "raw-headers": HEADERS_TEMPLATE,
             "headers": HEADERS_TEMPLATE}
    template = resolve(fmt, named)
    engine = build_engine(settings)
    descriptor, headers = engine.client.blob_head_with_headers(repository.ref, digest)
    show(template, blob_view(descriptor, headers))
