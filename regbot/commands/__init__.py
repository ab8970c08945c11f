"""The regctl-style commands (`regbot tag ls`, `regbot image copy`, ...) and `regbot check`.

Each module holds one command group; only click is imported at start-up, the client and
everything heavy inside the command functions, so `regbot version` stays quick.
"""

from __future__ import annotations

import click


def register(main: click.Group) -> None:
    from regbot.commands.blob import blob_group
    from regbot.commands.check import check
    from regbot.commands.image import image_group
    from regbot.commands.manifest import manifest_group
    from regbot.commands.registry import registry_group
    from regbot.commands.repo import repo_group
    from regbot.commands.tag import tag_group

    for command in (blob_group, check, image_group, manifest_group, registry_group, repo_group,
                    tag_group):
        main.add_command(command)
