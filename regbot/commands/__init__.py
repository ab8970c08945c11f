"""The regctl-style commands (`regbot tag ls`, `regbot image copy`, ...) and `regbot check`.

Each module holds one command group. They are loaded when first named on the command
line (LazyGroup), so `regbot version` and the other commands start as quickly as before.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

# command name -> "module:attribute" of its click command
COMMANDS = {
    "blob": "regbot.commands.blob:blob_group",
    "check": "regbot.commands.check:check",
    "image": "regbot.commands.image:image_group",
    "manifest": "regbot.commands.manifest:manifest_group",
    "registry": "regbot.commands.registry:registry_group",
    "repo": "regbot.commands.repo:repo_group",
    "tag": "regbot.commands.tag:tag_group",
}


class LazyGroup(click.Group):
    """A group whose `lazy_subcommands` are imported only when used (click's documented
    lazy-loading pattern)."""

    def __init__(self, *args: Any, lazy_subcommands: dict[str, str] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_subcommands = dict(lazy_subcommands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_subcommands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self.lazy_subcommands.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command
