"""Running the regbot beat: in the foreground (`regbot beat`) or in a thread (`regbot server`).

Both use Celery's own beat loop (`celery.beat.Service`) with RegbotScheduler. SIGHUP
re-reads the config file at the next tick (within `DEFAULT_MAX_INTERVAL` seconds);
SIGTERM and SIGINT stop the loop after its current tick (as promptly), and closing the
scheduler releases the beat lock so a standby beat takes over at once.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import TYPE_CHECKING, Any

from celery import Celery
from celery.beat import Service

from beat_schedule.scheduler import DEFAULT_LOCK_TTL, RegbotScheduler
from regbot.logs import get_logger, log_fields

if TYPE_CHECKING:
    from workers.launcher import NodeOptions

log = get_logger("regbot.beat")


def beat_service(
    app: Celery,
    config_file: str,
    *,
    store_url: str | None,
    lock_ttl: float | None = None,
    max_interval: float | None = None,
    dry_run: bool = False,
) -> tuple[Service, RegbotScheduler]:
    """A beat Service for `app` and its scheduler, already loaded (ConfigError if the file
    is wrong: nothing has started then). `dry_run` sends every run with dry_run=True."""
    app.conf.regbot_config_file = config_file
    app.conf.regbot_store_url = store_url
    app.conf.regbot_beat_lock_ttl = lock_ttl or DEFAULT_LOCK_TTL
    app.conf.regbot_dry_run = dry_run
    service = Service(app, max_interval=max_interval, scheduler_cls=RegbotScheduler)
    scheduler = service.scheduler  # built now: config and store errors surface here
    return service, scheduler


def _celery_warnings_to_regbot_log() -> None:
    """Celery's own beat warnings (broker connection retries...) in regbot's log format."""
    celery_log = logging.getLogger("celery")
    for handler in logging.getLogger("regbot").handlers:
        if handler not in celery_log.handlers:
            celery_log.addHandler(handler)
    celery_log.setLevel(logging.WARNING)
    celery_log.propagate = False


def run_beat(
    app: Celery,
    config_file: str,
    *,
    store_url: str | None,
    lock_ttl: float | None = None,
    max_interval: float | None = None,
    dry_run: bool = False,
) -> None:
    """Run the beat in this (main) thread until SIGTERM or SIGINT."""
    service, scheduler = beat_service(app, config_file, store_url=store_url,
                                      lock_ttl=lock_ttl, max_interval=max_interval,
                                      dry_run=dry_run)
    _celery_warnings_to_regbot_log()

    def _reload(signum: int, _frame: object) -> None:
        log_fields(log, logging.INFO, "SIGHUP received: reloading the config")
        scheduler.request_reload()

    def _stop(signum: int, _frame: object) -> None:
        # Not SystemExit: raised mid-tick it could lose a run already claimed. The loop
        # ends after its current sleep (at most max_interval), then closes the scheduler.
        log_fields(log, logging.INFO, "Stopping", signal=signal.Signals(signum).name)
        service.stop()

    signal.signal(signal.SIGHUP, _reload)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log_fields(log, logging.INFO, "Beat starting", config=config_file,
               scripts=len(scheduler.schedule), lock_ttl=scheduler.lock_ttl)
    service.start()
    log_fields(log, logging.INFO, "Beat stopped")


class BeatThread(threading.Thread):
    """The beat in a background thread (`regbot server` on a cluster); the caller routes
    SIGHUP to `reload()` and calls `stop()` on shutdown."""

    def __init__(self, app: Celery, config_file: str, *, store_url: str | None,
                 lock_ttl: float | None = None, max_interval: float | None = None,
                 dry_run: bool = False) -> None:
        super().__init__(name="regbot-beat", daemon=True)
        self.service, self.scheduler = beat_service(
            app, config_file, store_url=store_url, lock_ttl=lock_ttl,
            max_interval=max_interval, dry_run=dry_run)
        self.error: BaseException | None = None
        _celery_warnings_to_regbot_log()

    def run(self) -> None:
        try:
            self.service.start()
        except BaseException as exc:  # logged: the node's workers keep serving the queues
            self.error = exc
            log_fields(log, logging.ERROR, "Beat stopped on an error",
                       error=" ".join(str(exc).split()) or type(exc).__name__)

    def reload(self) -> None:
        self.scheduler.request_reload()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop and wait for it to close the scheduler (releasing the beat lock)."""
        self.service.stop()
        self.join(timeout)

    def info(self) -> dict[str, Any]:
        return {"scripts": len(self.scheduler.schedule), "leader": self.scheduler.is_leader}


def run_server(node: NodeOptions, *, lock_ttl: float | None = None, dry_run: bool = False) -> int:
    """`regbot server` on a cluster: this node's beat (in a thread) and its worker processes
    (workers/launcher.py). Returns the node's exit status once the workers have stopped.

    SIGTERM/SIGINT go to the workers (a warm shutdown: running scripts finish); the beat
    keeps the cluster's schedule going meanwhile and stops, releasing its lock, once they
    are gone. SIGHUP re-reads the config in the beat; the workers notice a changed file by
    themselves."""
    from workers.app import create_app
    from workers.launcher import run_node

    beat = BeatThread(create_app(node.settings), node.config_path,
                      store_url=node.settings.redis_url, lock_ttl=lock_ttl, dry_run=dry_run)

    def _reload(signum: int, _frame: object) -> None:
        log_fields(log, logging.INFO, "SIGHUP received: reloading the config")
        beat.reload()

    previous = signal.signal(signal.SIGHUP, _reload)
    beat.start()
    try:
        return run_node(node)
    finally:
        beat.stop()
        signal.signal(signal.SIGHUP, previous)
