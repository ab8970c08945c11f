"""Options every command takes, and the settings merged from them (logging set up)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from regbot.logs import configure_logging, parse_level

VERBOSITY_HELP = "Log level (trace, debug, info, warn, error)"


class _StderrProxy:
    """Writes to whatever sys.stderr is at the time, so a live display can redirect it."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def common_options(func: Callable) -> Callable:
    """Options accepted both before and after the subcommand (`regbot -c f once` and
    `regbot once -c f`), as the Go regbot's persistent flags are."""
    options = [
        click.option("-c", "--config", "config_file", default=None, help="Config file (- for stdin)"),
        click.option("--dry-run", is_flag=True, default=None, help="Dry run, skip all external actions"),
        click.option("-v", "--verbosity", default=None, help=VERBOSITY_HELP),
        click.option("--logopt", multiple=True, help="Log options (json)"),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def apply_settings(ctx: click.Context, default_level: str = "info", **given: Any) -> dict[str, Any]:
    """Merge the group's options with the subcommand's (the subcommand wins) and set up
    logging; `default_level` applies without -v (the regctl-style commands use warn, as
    regctl does)."""
    merged = dict(ctx.find_root().obj or {})
    for key, value in given.items():
        if key == "logopt":
            merged["logopt"] = tuple(merged.get("logopt", ())) + tuple(value or ())
        elif value is not None:
            merged[key] = value
    level = merged.get("verbosity") or default_level
    try:
        parse_level(level)
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    for opt in merged.get("logopt", ()):
        if opt not in ("json",):
            raise click.UsageError(f"unknown --logopt {opt!r}: supported: json")
    configure_logging(level, json_format="json" in merged.get("logopt", ()), stream=_StderrProxy())
    return merged
