"""The `regbot` command line: once, server, worker, beat, version."""

from __future__ import annotations

import json
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any

import click

from regbot import __version__
from regbot.errors import ConfigError, RegbotError
from regbot.logs import configure_logging, get_logger, parse_level

log = get_logger("regbot.cli")

VERBOSITY_HELP = "Log level (trace, debug, info, warn, error)"


class _StderrProxy:
    """Writes to whatever sys.stderr is at the time, so a live display can redirect it."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def _common_options(func: Callable) -> Callable:
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


def _settings(ctx: click.Context, **given: Any) -> dict[str, Any]:
    """Merge the group's options with the subcommand's (the subcommand wins)."""
    merged = dict(ctx.find_root().obj or {})
    for key, value in given.items():
        if key == "logopt":
            merged["logopt"] = tuple(merged.get("logopt", ())) + tuple(value or ())
        elif value is not None:
            merged[key] = value
    level = merged.get("verbosity") or "info"
    try:
        parse_level(level)
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    for opt in merged.get("logopt", ()):
        if opt not in ("json",):
            raise click.UsageError(f"unknown --logopt {opt!r}: supported: json")
    configure_logging(level, json_format="json" in merged.get("logopt", ()), stream=_StderrProxy())
    return merged


def _load(settings: dict[str, Any]):
    from regbot.config import load_config

    path = settings.get("config_file")
    if not path:
        raise ConfigError("no config file given: use -c FILE (or -c - for stdin)")
    return load_config(path)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@_common_options
@click.pass_context
def main(ctx: click.Context, config_file, dry_run, verbosity, logopt) -> None:
    """Utility for automating repository actions with Lua scripts."""
    ctx.obj = {"config_file": config_file, "dry_run": dry_run, "verbosity": verbosity,
               "logopt": logopt}


@main.command()
@_common_options
@click.pass_context
def once(ctx: click.Context, **given: Any) -> None:
    """Run each script once, ignoring schedules; exit 1 if any script failed."""
    settings = _settings(ctx, **given)
    config = _load(settings)
    from regbot.embedded import run_once
    from regbot.runner import RunOptions
    from regbot.summary import render_summary

    options = RunOptions(dry_run=bool(settings.get("dry_run")))
    interactive = sys.stderr.isatty()
    if interactive:
        from regbot.display import LiveDisplay

        with LiveDisplay(len(config.scripts), sys.stderr) as display:
            results = run_once(config, options, progress_for=display.for_script,
                               on_done=lambda _r: display.script_done())
    else:
        results = run_once(config, options)
    render_summary(results, sys.stdout, rich=sys.stdout.isatty())
    if any(r.status not in ("ok", "skipped") for r in results):
        ctx.exit(1)


@main.command()
@_common_options
@click.pass_context
def server(ctx: click.Context, **given: Any) -> None:
    """Run the scripts on their schedules until SIGINT or SIGTERM."""
    settings = _settings(ctx, **given)
    config = _load(settings)
    from regbot.embedded import EmbeddedScheduler
    from regbot.runner import RunOptions

    scheduler = EmbeddedScheduler(config, RunOptions(dry_run=bool(settings.get("dry_run"))))

    def _stop(signum: int, _frame: object) -> None:
        log.info("Interrupt received, stopping")
        scheduler.stop()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    results = scheduler.run()
    if any(r.status not in ("ok", "skipped") for r in results):
        ctx.exit(1)


@main.command()
@click.option("--format", "fmt", default="{{jsonPretty .}}", help="Format output with Go template syntax")
@_common_options
@click.pass_context
def version(ctx: click.Context, fmt: str, **given: Any) -> None:
    """Show the version."""
    _settings(ctx, **given)
    from regbot.gotemplate import expand

    info = {"VCSRef": _vcs_ref(), "VCSTag": f"v{__version__}", "Version": __version__,
            "Python": sys.version.split()[0]}
    text = expand(fmt, "--format", data=info)
    click.echo(text, nl=not text.endswith("\n"))


def _vcs_ref() -> str:
    import importlib.metadata

    try:
        direct = importlib.metadata.distribution("regbot").read_text("direct_url.json") or "{}"
        return json.loads(direct).get("vcs_info", {}).get("commit_id", "unknown")
    except Exception:  # metadata is optional: an uninstalled checkout has none
        return "unknown"


def run() -> int:
    """Entry point: user mistakes become one line on stderr and an exit status, never a
    traceback (unless -v trace)."""
    try:
        status = main.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("regbot: aborted", err=True)
        return 130
    except click.ClickException as err:
        err.show()
        return err.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except ConfigError as err:
        click.echo(f"regbot: error: {err}", err=True)
        return 2
    except RegbotError as err:
        click.echo(f"regbot: error: {err}", err=True)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # a bug, not a user mistake: one line, traceback at trace level
        if logging.getLogger("regbot").isEnabledFor(5):
            raise
        click.echo(f"regbot: internal error: {type(err).__name__}: {err} (rerun with -v trace for details)", err=True)
        return 1
    return status if isinstance(status, int) else 0


def entry() -> None:
    sys.exit(run())


if __name__ == "__main__":
    entry()
