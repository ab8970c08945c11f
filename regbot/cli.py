"""The `regbot` command line: once, server, worker, beat, version."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import click

from regbot import __version__
from regbot.commands import COMMANDS, LazyGroup
from regbot.commands.options import apply_settings as _settings
from regbot.commands.options import common_options as _common_options
from regbot.errors import ConfigError, RegbotError
from regbot.logs import get_logger

log = get_logger("regbot.cli")

def _load(settings: dict[str, Any]):
    from regbot.config import load_config

    path = settings.get("config_file")
    if not path:
        raise ConfigError("no config file given: use -c FILE (or -c - for stdin)")
    return load_config(path)


def _load_scripts(settings: dict[str, Any]):
    """The config of a command that runs its scripts: one defining none is a mistake
    (an empty file, `scripts: []`), not a run that did nothing."""
    config = _load(settings)
    if not config.scripts:
        raise ConfigError(f"{config.source}: defines no scripts (add entries under `scripts:`)")
    return config


@click.group(cls=LazyGroup, lazy_subcommands=COMMANDS,
             context_settings={"help_option_names": ["-h", "--help"]})
@_common_options
@click.pass_context
def main(ctx: click.Context, config_file, dry_run, verbosity, logopt) -> None:
    """Utility for automating repository actions with Lua scripts."""
    ctx.obj = {"config_file": config_file, "dry_run": dry_run, "verbosity": verbosity,
               "logopt": logopt}


def _metrics_address(_ctx: Any, _param: Any, value: str | None) -> tuple[str, int] | None:
    """`PORT` or `HOST:PORT` (all interfaces by default)."""
    if not value:
        return None
    host, _, port = value.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"{value!r}: expected PORT or HOST:PORT")
    return host.strip("[]"), int(port)


_METRICS_OPTION = click.option(
    "--metrics-port", "metrics_port", callback=_metrics_address, default=None,
    envvar="REGBOT_METRICS_PORT", metavar="[HOST:]PORT",
    help="Serve Prometheus metrics there (else $REGBOT_METRICS_PORT; default: none)")


def _serve_metrics(address: tuple[str, int] | None) -> None:
    if address:
        from regbot import metrics

        metrics.serve(address[1], address[0])
        log.info("Metrics on %s:%d", address[0] or "*", address[1])


def _cluster_options(func: Callable) -> Callable:
    """Where the cluster is: flags win over $REGBOT_BROKER_URL, $REGBOT_RESULT_BACKEND and
    $REGBOT_REDIS_URL (see workers/settings.py)."""
    options = [
        click.option("--broker", default=None, help="Broker URL (else $REGBOT_BROKER_URL)"),
        click.option("--result-backend", default=None,
                     help="Result backend URL (else $REGBOT_RESULT_BACKEND, else the Redis below)"),
        click.option("--redis-url", default=None,
                     help="Redis for shared state (else $REGBOT_REDIS_URL, the backend or the broker)"),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@main.command()
@_common_options
@_cluster_options
@_METRICS_OPTION
@click.pass_context
def once(ctx: click.Context, broker: str | None, result_backend: str | None,
         redis_url: str | None, metrics_port: tuple[str, int] | None, **given: Any) -> None:
    """Run each script once, ignoring schedules; exit 1 if any script failed.

    With a broker configured the scripts run on the cluster's workers and their log lines
    and progress are shown here; without one they run in this process."""
    settings = _settings(ctx, **given)
    config = _load_scripts(settings)
    from regbot.embedded import run_once
    from regbot.runner import RunOptions
    from regbot.summary import render_summary
    from workers.settings import ClusterSettings

    options = RunOptions(dry_run=bool(settings.get("dry_run")))
    cluster = ClusterSettings.resolve(broker, result_backend, redis_url)
    _serve_metrics(metrics_port)
    if cluster is None:
        from regbot.engine import Engine

        engine = Engine.embedded(config)

        def run(**kw: Any) -> list:
            return run_once(engine, options, **kw)
    else:
        from workers.submit import cluster_engine, run_cluster_once

        # built here, once: the run waits on its limits and the display reads the rate
        # limits the workers record there
        engine = cluster_engine(config, cluster)

        def run(**kw: Any) -> list:
            return run_cluster_once(engine, cluster, dry_run=options.dry_run, **kw)

    interactive = sys.stderr.isatty()
    if interactive:
        from regbot.display import LiveDisplay, registry_rate_limits

        with LiveDisplay(len(config.scripts), sys.stderr,
                         registry_rate_limits(engine)) as display:
            results = run(progress_for=display.for_script,
                          on_done=lambda _r: display.script_done())
    else:
        results = run()
    render_summary(results, sys.stdout, rich=sys.stdout.isatty())
    if any(r.failed for r in results):
        ctx.exit(1)


_LOCK_TTL_OPTION = click.option(
    "--lock-ttl", type=click.FloatRange(min=1.0), default=None,
    help="Seconds before a standby beat replaces a dead one (default 30)")


@main.command()
@_common_options
@_cluster_options
@click.option("--transfers", type=click.IntRange(min=1), default=4, show_default=True,
              help="Cluster: processes serving the transfers queue on this node")
@click.option("-n", "--hostname", "node_name", default="",
              help="Cluster: node name (workers scripts@NAME and transfers@NAME; "
                   "default: HOST-PID)")
@_LOCK_TTL_OPTION
@_METRICS_OPTION
@click.pass_context
def server(ctx: click.Context, broker: str | None, result_backend: str | None,
           redis_url: str | None, transfers: int, node_name: str, lock_ttl: float | None,
           metrics_port: tuple[str, int] | None, **given: Any) -> None:
    """Run the scripts on their schedules until SIGINT or SIGTERM.

    With a broker configured this node runs a beat and a worker of the cluster (see
    `regbot beat` and `regbot worker`); without one the scripts run in this process."""
    settings = _settings(ctx, **given)
    config = _load_scripts(settings)
    from workers.settings import ClusterSettings

    cluster = ClusterSettings.resolve(broker, result_backend, redis_url)
    if cluster is not None:
        ctx.exit(_serve_cluster(settings, config, cluster, transfers=transfers,
                                node_name=node_name, lock_ttl=lock_ttl,
                                metrics_port=metrics_port))
    from regbot.embedded import EmbeddedScheduler
    from regbot.engine import Engine
    from regbot.runner import RunOptions

    _serve_metrics(metrics_port)
    scheduler = EmbeddedScheduler(Engine.embedded(config),
                                  RunOptions(dry_run=bool(settings.get("dry_run"))))

    def _stop(signum: int, _frame: object) -> None:
        log.info("Interrupt received, stopping")
        scheduler.stop()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    results = scheduler.run()
    if any(r.failed for r in results):
        ctx.exit(1)


def _serve_cluster(settings: dict[str, Any], config: Any, cluster: Any, *, transfers: int,
                   node_name: str, lock_ttl: float | None,
                   metrics_port: tuple[str, int] | None = None) -> int:
    """`server` on a cluster: a beat thread plus this node's worker processes (whose
    metrics the node serves, as `regbot worker` does)."""
    path = settings.get("config_file")
    if not path or path == "-":
        raise ConfigError("a cluster node re-reads its config file: use -c FILE (not stdin)")
    from beat_schedule.service import run_server
    from regbot.logs import add_secrets
    from workers.launcher import NodeOptions

    add_secrets(cluster.secrets())
    log.info("Server on %s", cluster.describe())
    node = NodeOptions(config_path=path, settings=cluster, parallel=config.defaults.parallel,
                       transfers=transfers, node_name=node_name,
                       log_level=settings.get("verbosity") or "info",
                       json_logs="json" in settings.get("logopt", ()), metrics=metrics_port)
    return run_server(node, lock_ttl=lock_ttl, dry_run=bool(settings.get("dry_run")))


@main.command()
@_common_options
@_cluster_options
@_LOCK_TTL_OPTION
@click.pass_context
def beat(ctx: click.Context, broker: str | None, result_backend: str | None,
         redis_url: str | None, lock_ttl: float | None, **given: Any) -> None:
    """Send each scheduled script to the cluster when due (the scheduler only; the broker
    defaults to redis://localhost:6379/0).

    The config file is re-read when it changes or on SIGHUP. Run more than one beat for
    high availability: one schedules, the others stand by."""
    settings = _settings(ctx, **given)
    path = settings.get("config_file")
    if not path or path == "-":
        raise ConfigError("beat re-reads its config file when it changes: use -c FILE (not stdin)")
    from beat_schedule.service import run_beat
    from regbot.logs import add_secrets
    from workers.app import create_app
    from workers.settings import DEFAULT_BROKER, ClusterSettings

    cluster = ClusterSettings.resolve(broker, result_backend, redis_url,
                                      default_broker=DEFAULT_BROKER)
    assert cluster is not None  # a default broker was given
    add_secrets(cluster.secrets())
    log.info("Beat on %s", cluster.describe())
    run_beat(create_app(cluster), path, store_url=cluster.redis_url, lock_ttl=lock_ttl,
             dry_run=bool(settings.get("dry_run")))


@main.command()
@_common_options
@_cluster_options
@click.option("--transfers", type=click.IntRange(min=1), default=4, show_default=True,
              help="Processes serving the transfers queue on this node")
@click.option("--queues", default="scripts,transfers", show_default=True,
              help="Queues this node serves, comma separated")
@click.option("-n", "--hostname", "node_name", default="",
              help="Node name: its workers are scripts@NAME and transfers@NAME "
                   "(default: HOST-PID, so nodes of one host never share a name)")
@click.option("--lease", type=click.FloatRange(min=1.0), default=None,
              help="Seconds a dead node's task leases, blob claims, request slots and "
                   "script locks outlive it, and so how soon its transfers are redone "
                   "(default 30; script locks 60)")
@click.option("--visibility-timeout", type=click.FloatRange(min=1.0), default=None,
              help="Redis broker: seconds before a message a dead node took but never "
                   "started is delivered again (default 3600; tasks are acked on start and "
                   "lost transfers redone by lease, so it rarely matters)")
@click.option("--grace", type=click.FloatRange(min=0.0), default=60.0, show_default=True,
              help="Seconds a warm shutdown may take (running tasks finish) before it is "
                   "made cold; also for a Celery process that began one on its own")
@_METRICS_OPTION
@click.pass_context
def worker(ctx: click.Context, broker: str | None, result_backend: str | None,
           redis_url: str | None, transfers: int, queues: str, node_name: str,
           lease: float | None, visibility_timeout: float | None, grace: float,
           metrics_port: tuple[str, int] | None, **given: Any) -> None:
    """Run one worker node: scripts (defaults.parallel at a time) and transfers, each
    queue in its own pool, until SIGINT or SIGTERM. With --metrics-port the node serves
    the Prometheus metrics of all its processes there."""
    settings = _settings(ctx, **given)
    path = settings.get("config_file")
    if not path or path == "-":
        raise ConfigError("a worker reads its config file for every task: use -c FILE (not stdin)")
    config = _load(settings)  # a broken file stops the node now, not each task later
    from regbot.logs import add_secrets
    from workers.launcher import NodeOptions, run_node
    from workers.settings import DEFAULT_BROKER, QUEUES, ClusterSettings

    wanted = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = [q for q in wanted if q not in QUEUES]
    if unknown or not wanted:
        raise click.UsageError(f"--queues {queues!r}: choose from {', '.join(QUEUES)}")
    cluster = ClusterSettings.resolve(broker, result_backend, redis_url,
                                      default_broker=DEFAULT_BROKER)
    assert cluster is not None  # a default broker was given
    add_secrets(cluster.secrets())
    level = settings.get("verbosity") or "info"
    ctx.exit(run_node(NodeOptions(
        config_path=path, settings=cluster, parallel=config.defaults.parallel,
        transfers=transfers, queues=wanted, node_name=node_name, log_level=level,
        json_logs="json" in settings.get("logopt", ()), lease=lease,
        visibility_timeout=visibility_timeout, metrics=metrics_port, grace=grace)))


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
    """The commit pip recorded when it installed regbot from a git URL (direct_url.json),
    else "unknown". Read directly: importlib.metadata alone costs `version` 20 ms."""
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            if name.startswith("regbot-") and name.endswith(".dist-info"):
                try:
                    with open(os.path.join(entry, name, "direct_url.json")) as fh:
                        return json.load(fh).get("vcs_info", {}).get("commit_id", "unknown")
                except (OSError, ValueError, AttributeError):
                    return "unknown"
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
