"""What the regctl-style commands share: settings, the engine, reference arguments.

Each command builds one Engine (regbot/engine.py) from `-c regbot.yml` when given, else
from the user config of `regbot registry set/login` (regbot/userconfig.py), and uses its
client, so credentials, TLS and limits work as they do for scripts.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from regbot.commands.options import apply_settings, common_options

if TYPE_CHECKING:
    from regbot.engine import Engine
    from regbot.types.manifest import Manifest
    from regbot.types.platform import Platform
    from regbot.types.ref import Reference
    from regbot.userconfig import UserConfig

_PLATFORM_PART = re.compile(r"^[a-z0-9._-]+$")


@dataclass(frozen=True)
class RefArg:
    """A reference argument: parsed, and as typed (regctl shows it as the Name)."""

    ref: Reference
    text: str


class ReferenceType(click.ParamType):
    """An image reference (`registry/repo:tag`, `alpine`, `ocidir://dir:tag`); a bad one
    is a usage error (exit 2)."""

    name = "reference"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> RefArg:
        if isinstance(value, RefArg):
            return value
        from regbot.errors import InvalidReference
        from regbot.types.ref import Reference

        try:
            return RefArg(Reference.parse(value), value)
        except InvalidReference as err:
            self.fail(str(err), param, ctx)


REFERENCE = ReferenceType()


class DigestType(click.ParamType):
    name = "digest"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from regbot.errors import RegbotError
        from regbot.types.descriptor import hasher_for

        alg, sep, hexpart = str(value).partition(":")
        try:
            hasher_for(str(value))
        except RegbotError:
            self.fail(f"{value!r}: unsupported digest algorithm", param, ctx)
        want = {"sha256": 64, "sha512": 128}[alg]
        if not sep or len(hexpart) != want or any(c not in "0123456789abcdef" for c in hexpart):
            self.fail(f"{value!r}: expected {alg}: and {want} lowercase hex digits", param, ctx)
        return str(value)


DIGEST = DigestType()


def command_settings(ctx: click.Context, given: dict[str, Any]) -> dict[str, Any]:
    """Settings for a regctl-style command: logging at warn unless -v says otherwise."""
    return apply_settings(ctx, default_level="warn", **given)


def regctl_command(group: click.Group, name: str, **kw: Any) -> Callable[[Callable], click.Command]:
    """`@regctl_command(group, "ls")`: a subcommand with the common options."""

    def decorate(func: Callable) -> click.Command:
        return group.command(name, **kw)(common_options(click.pass_context(func)))

    return decorate


def build_engine(settings: dict[str, Any]) -> Engine:
    """The engine of this command: hosts from -c FILE, else from the user config."""
    from regbot.config import load_config
    from regbot.engine import Engine
    from regbot.userconfig import load_user_config

    path = settings.get("config_file")
    if path:
        return Engine.embedded(load_config(path))
    return user_engine(load_user_config())


def user_engine(user: UserConfig) -> Engine:
    """An engine with the hosts of a user config (as read, or about to be saved)."""
    from regbot.config import Config, Defaults
    from regbot.engine import Engine
    from regbot.userconfig import user_config_hosts

    config = Config(version=1, creds=user_config_hosts(user), defaults=Defaults(), scripts=[],
                    source=str(user.path))
    return Engine.embedded(config)


def dry_run(settings: dict[str, Any], action: str, **fields: Any) -> bool:
    """True (and the skipped write logged) when --dry-run was given."""
    if not settings.get("dry_run"):
        return False
    from regbot.logs import get_logger, log_fields

    # shown at the default (warn) level: the user asked to see what would be written
    log_fields(get_logger("regbot.commands"), logging.WARNING, action, **fields, dry_run=True)
    return True


def parse_platform(text: str) -> Platform:
    """A --platform value as regclient reads it: `local`, `linux/arm64`, `arm64`,
    `windows/amd64,osver=10.0.17763.4974`; a bad one is a usage error."""
    from regbot.types.platform import Platform, local_platform

    spec, _, args = text.partition(",")
    parts = [p.lower() for p in spec.split("/")]
    if len(parts) > 3 or not all(_PLATFORM_PART.match(p) for p in parts):
        raise click.BadParameter(f"invalid platform {text!r}: expected os/arch[/variant]",
                                 param_hint="'--platform'")
    local = local_platform()
    if spec == "local":
        return local
    if len(parts) == 1:
        os_name, arch, variant = local.os, parts[0], ""
    else:
        os_name, arch, variant = parts[0], parts[1], parts[2] if len(parts) == 3 else ""
    if os_name == "local":
        os_name = local.os
    os_version = ""
    for item in filter(None, args.split(",")):
        key, _, value = item.partition("=")
        if key.strip().lower() not in ("osver", "osversion"):
            raise click.BadParameter(f"unsupported platform option {key!r} in {text!r}",
                                     param_hint="'--platform'")
        os_version = value.strip()
    return Platform(os_name, arch, variant, os_version)


def resolve_platform(engine: Engine, ref: Reference, platform: Platform) -> tuple[Reference, Manifest]:
    """The reference and manifest of `platform`'s image when ref names an index
    (regclient's ManifestGet WithManifestPlatform: the tag is dropped for the digest);
    ref and its manifest for an image."""
    from regbot.errors import NotFound

    manifest = engine.client.manifest_get(ref)
    while manifest.is_index:
        entry = manifest.platform_entry(platform)
        if entry is None:
            raise NotFound(ref, f"platform not found: {platform}")
        ref = ref.with_tag("").with_digest(entry.digest)
        manifest = engine.client.manifest_get(ref)
    return ref, manifest


class AliasedGroup(click.Group):
    """A command group whose subcommands also answer to regctl's aliases (`tag rm` is
    `tag delete`), without listing the aliases in --help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.aliases: dict[str, str] = {}

    def alias(self, name: str, *aliases: str) -> None:
        for alias in aliases:
            self.aliases[alias] = name

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, self.aliases.get(cmd_name, cmd_name))
