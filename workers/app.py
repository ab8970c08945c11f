"""The Celery app of a regbot cluster.

`celery -A workers.app worker ...` (what `regbot worker` starts, twice: one process per
queue) imports this module; `app` is configured from the environment (workers/settings.py).
Clients that only send tasks and wait (`regbot once`) build their own app with
`create_app(settings)`, naming tasks by their stable names.

Settings, and why:
- JSON only, for task messages, results and events: nothing but plain data travels, and a
  result backend entry can never be code.
- Task events on (`worker_send_task_events`, `task_send_sent_event`) and
  `task_track_started`, so Flower lists script runs and transfers with their state.
- Every task is acknowledged when it starts (`task_acks_late` off). Transfers (queue
  `transfers`, task `regbot.transfer`) do not need the broker to deliver them again: the
  script waiting for one sends it again once its lease lapses (workers/executor.py), on any
  broker and in seconds, where a late ack would wait for the Redis visibility timeout (1 h).
  And with nothing unacknowledged a Redis broker outage leaves kombu nothing to restore,
  the path where kombu's worker crashes (`restore_unacked_once`) when Redis comes back.
- Script runs (queue `scripts`, task `regbot.script`): a run can last an hour, longer than
  RabbitMQ's consumer timeout (30 min) allows an unacknowledged delivery, and a lost run is
  simply run again by the next schedule. The per-task guard in workers/jobs.py makes a
  duplicate delivery harmless either way. On the
  Redis broker `worker_disable_prefetch` keeps a busy node from holding a run back while
  another node is idle; with RabbitMQ a busy scripts worker may hold one waiting run per
  process (prefetch), which then starts as soon as a process is free.
- Broker connections are retried with backoff at start-up and after a loss, forever (a
  node rides out a Redis restart or a network cut); publishing retries a few times, then
  fails with an error instead of hanging (the script sending it waits and tries again).
- A worker started by `regbot worker` keeps a heartbeat file for its launcher
  (workers/liveness.py): the launcher ends and restarts a process that begins a shutdown
  nobody asked for, or whose main process hangs.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from celery import Celery, bootsteps, signals
from kombu import Queue

from regbot.limits import CONNECT_TIMEOUT, HEALTH_CHECK_INTERVAL, SOCKET_TIMEOUT
from workers.liveness import Heartbeat
from workers.settings import (
    DEFAULT_BROKER,
    DEFAULT_VISIBILITY_TIMEOUT,
    ENV_HEARTBEAT,
    ENV_LOG_JSON,
    ENV_LOG_LEVEL,
    ENV_VISIBILITY,
    QUEUE_SCRIPTS,
    QUEUE_TRANSFERS,
    SCRIPT_TASK,
    TRANSFER_TASK,
    ClusterSettings,
    env_float,
    is_redis,
)

RESULT_TTL = timedelta(days=1)
BROKER_HEALTH_CHECK = 5  # seconds (kombu's default 25: a cut would go unnoticed for ~50 s)
# Redis calls of the result backend fail after about this many seconds of outage.
_BACKEND_RETRY = {"max_retries": 5, "interval_start": 0.2, "interval_step": 0.5,
                  "interval_max": 2.0}
_PUBLISH_RETRY = {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5,
                  "interval_max": 2.0}


def app_config(settings: ClusterSettings, visibility_timeout: float | None = None
               ) -> dict[str, Any]:
    """The Celery settings of a regbot app on these URLs."""
    conf: dict[str, Any] = {
        "broker_url": settings.broker_url,
        "result_backend": settings.result_backend,
        "task_serializer": "json",
        "result_serializer": "json",
        "event_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_track_started": True,
        "task_acks_late": False,
        # Cancels only late-acked tasks still unacknowledged when the broker connection
        # drops: regbot has none, so it changes nothing but silences Celery's warning.
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_prefetch_multiplier": 1,
        "task_queues": (Queue(QUEUE_SCRIPTS), Queue(QUEUE_TRANSFERS)),
        "task_default_queue": QUEUE_SCRIPTS,
        "task_routes": {SCRIPT_TASK: {"queue": QUEUE_SCRIPTS},
                        TRANSFER_TASK: {"queue": QUEUE_TRANSFERS}},
        "result_expires": RESULT_TTL,
        "broker_connection_retry": True,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,  # a worker waits for its broker to come back
        "broker_connection_timeout": 5.0,
        "task_publish_retry": True,
        "task_publish_retry_policy": _PUBLISH_RETRY,
        # The result backend notices a silent connection (a network cut) within seconds:
        # a read gives up after SOCKET_TIMEOUT, and the caller waits the outage out at its
        # own level, saying so (`once`'s wait; a result is stored under the retry policy
        # below). Retrying a timed-out read here too would hide a 10 s cut from `once`.
        "redis_socket_connect_timeout": CONNECT_TIMEOUT,
        "redis_socket_timeout": SOCKET_TIMEOUT,
        "redis_retry_on_timeout": False,
        "redis_socket_keepalive": True,
        "redis_backend_health_check_interval": HEALTH_CHECK_INTERVAL,
        "result_backend_transport_options": {"retry_policy": _BACKEND_RETRY},
        "worker_hijack_root_logger": True,
    }
    if is_redis(settings.broker_url):
        # Take a message only when a process is free to run it: a busy scripts worker must
        # not hold a script run back while another node idles (scripts are acknowledged on
        # start, so prefetch alone would not stop that).
        conf["worker_disable_prefetch"] = True
        vt = visibility_timeout or DEFAULT_VISIBILITY_TIMEOUT
        conf["broker_transport_options"] = {
            "visibility_timeout": vt,
            # look for messages of dead consumers often enough to honour a short timeout
            "unacked_restore_interval": max(1, min(10, int(vt // 4))),
            "unacked_restore_throttle": 1,
            # A consumer's BRPOP on a silent connection is dropped and reconnected once
            # its reply is BROKER_HEALTH_CHECK s overdue (kombu checks that often), any
            # other broker command after SOCKET_TIMEOUT.
            "socket_timeout": SOCKET_TIMEOUT,
            "socket_connect_timeout": CONNECT_TIMEOUT,
            "socket_keepalive": True,
            "health_check_interval": BROKER_HEALTH_CHECK,
        }
    return conf


def create_app(settings: ClusterSettings, visibility_timeout: float | None = None,
               *, include_tasks: bool = False) -> Celery:
    """A Celery app on `settings`; `include_tasks` registers workers.tasks (workers only)."""
    app = Celery("regbot", include=["workers.tasks"] if include_tasks else [])
    app.conf.update(app_config(settings, visibility_timeout))
    if include_tasks:
        app.steps["worker"].add(HeartbeatStep)
    return app


class HeartbeatStep(bootsteps.StartStopStep):
    """The worker's heartbeat file for its launcher (workers/liveness.py), when the
    launcher named one. Started after the pool, before the consumer; `close` comes first
    in any shutdown (warm, cold, or Celery's own after an unrecoverable error), before
    anything that may wait or hang."""

    requires = ("celery.worker.components:Pool",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        path = os.environ.get(ENV_HEARTBEAT)
        self.heartbeat = Heartbeat(Path(path)) if path else None

    def include_if(self, parent: Any) -> bool:
        return self.heartbeat is not None

    def start(self, parent: Any) -> None:
        global _heartbeat
        assert self.heartbeat is not None
        _heartbeat = self.heartbeat
        self.heartbeat.start()

    def close(self, parent: Any) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stopping()

    def stop(self, parent: Any) -> None:
        self.close(parent)

    def shutdown(self, parent: Any) -> None:
        self.close(parent)


_heartbeat: Heartbeat | None = None


@signals.worker_shutting_down.connect
def _shutting_down(**_: Any) -> None:
    """A shutdown signal reached the worker (from its launcher or anyone else): the
    heartbeat says so at once, before the consumer loop even notices."""
    if _heartbeat is not None:
        _heartbeat.stopping()


_worker_app: Celery | None = None


def worker_app() -> Celery:
    """The worker's app, configured from the environment on first use (`workers.app.app`
    is this, so importing the module elsewhere, e.g. for create_app, needs no cluster)."""
    global _worker_app
    if _worker_app is None:
        settings = ClusterSettings.resolve(default_broker=DEFAULT_BROKER)
        assert settings is not None  # a default broker was given
        _worker_app = create_app(settings, env_float(ENV_VISIBILITY), include_tasks=True)
    return _worker_app


def __getattr__(name: str) -> Any:
    if name == "app":  # what `celery -A workers.app` and workers/tasks.py look up
        return worker_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@signals.after_setup_logger.connect
def _setup_regbot_logging(**_: Any) -> None:
    """Celery configured its own loggers: give regbot's the level and format the node was
    started with (regbot's lines keep their key=value or JSON form, secrets redacted)."""
    from regbot.logs import configure_logging

    level = os.environ.get(ENV_LOG_LEVEL) or "info"
    handler = configure_logging(level, json_format=os.environ.get(ENV_LOG_JSON) == "1")
    # The relay of `once` may want more detail than this node prints: the threshold sits
    # on the handler, so the logger level can be lowered for a run (workers/logstream.py).
    handler.setLevel(logging.getLogger("regbot").level)
    for name in _BROKER_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, BrokerOutageLines) for f in logger.filters):
            logger.addFilter(_outage_lines)


# Where Celery's worker says it lost the broker, retries, and connected again.
_BROKER_LOGGERS = ("celery.worker.consumer.consumer", "celery.worker.consumer.connection")


class BrokerOutageLines(logging.Filter):
    """One line when the broker is lost, one when it is back: Celery's worker logs a
    "Cannot connect ... Trying again" line per attempt, minutes of them in a long cut;
    only the first line of an outage passes ("Connection to broker lost", or the first
    "Cannot connect" at start-up), and the "Connected to" line that ends it."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("consumer: Connection to broker lost"):
            self.down = True
        elif message.startswith("consumer: Cannot connect to"):
            if self.down:
                return False
            self.down = True
        elif message.startswith("Connected to"):
            self.down = False
        return True


_outage_lines = BrokerOutageLines()


@signals.worker_process_init.connect
def _record_metrics(**_: Any) -> None:
    """A pool process of a node serving metrics (PROMETHEUS_MULTIPROC_DIR set by
    workers/launcher.py) records its copies, blobs and script runs for the node's sum."""
    from regbot import metrics

    metrics.from_environment()


@signals.worker_process_shutdown.connect
def _pool_process_gone(pid: int | None = None, **_: Any) -> None:
    """prometheus multiprocess bookkeeping for a pool process that exits (Celery replacing
    it, or the node stopping): what only a live process means goes with it."""
    if pid:
        from regbot import metrics

        metrics.process_dead(pid)
