"""`regbot once` on a cluster: enqueue every script, relay what the workers say, wait.

The script names are sent (`regbot.script` on queue `scripts`) with a fresh run id; the
workers run them from their own config. Meanwhile the run's Redis stream is followed
(workers/logstream.py): log lines come out here as they would in an embedded run, progress
events feed the live display. Results come back through the result backend as
ScriptResults, in config order, for the same summary and exit status as an embedded run.

A script whose worker dies mid-run (its task guard lapses while the task still reads
STARTED) is reported failed rather than waited for forever. Redis or the broker being
unreachable is one clear error before anything is sent. Once the scripts are sent, an
outage is waited out for up to OUTAGE_LIMIT seconds (`REGBOT_OUTAGE_LIMIT`; a line when
Redis is lost, one when it is back); past that, one clear line and exit status 1. The
scripts themselves go on on their nodes.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable

import redis
from celery.result import AsyncResult
from kombu.exceptions import OperationalError

from regbot.config import Config
from regbot.copy.progress import ProgressListener
from regbot.engine import Engine
from regbot.errors import LimitError, RegbotError
from regbot.limits import Limits, store_from_url
from regbot.logs import ROOT, add_secrets, get_logger, log_fields
from regbot.runner import STATUS_FAILED, ScriptResult
from workers.app import create_app
from workers.executor import Outage, forget_result, task_guard_name, task_state
from workers.logstream import RunFollower, RunStream
from workers.settings import (
    ENV_OUTAGE_LIMIT,
    QUEUE_SCRIPTS,
    SCRIPT_TASK,
    ClusterSettings,
    env_float,
    sanitize,
)

log = get_logger("regbot.once")

LOST_GRACE = 15.0  # seconds a started script may lack its task guard before it counts as lost
IDLE_WARNING = 15.0  # seconds without any worker taking a script before saying so
POLL = 0.2  # seconds between two looks at the results (the stream read blocks this long)
OUTAGE_LIMIT = 60.0  # seconds `once` waits for Redis to come back before it gives up
OUTAGE_PAUSE = 1.0  # seconds between two tries while Redis is away


class ClusterUnavailable(RegbotError):
    """Redis or the broker cannot be reached."""


def check_cluster(settings: ClusterSettings, app=None) -> redis.Redis:
    """Fail fast, in one line, when Redis or the broker is unreachable; returns the store."""
    store = store_from_url(settings.redis_url, retries=2)
    try:
        store.ping()
    except redis.RedisError as exc:
        raise ClusterUnavailable(f"cannot reach Redis at {sanitize(settings.redis_url)}: "
                                 f"{_one_line(exc)}") from None
    own_app = app is None
    app = app or create_app(settings)
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=2, interval_start=0.2, interval_step=0.5,
                                   interval_max=1.0, timeout=5)
    except Exception as exc:  # kombu raises OperationalError or the transport's own errors
        raise ClusterUnavailable(f"cannot reach the broker at {sanitize(settings.broker_url)}"
                                 f": {_one_line(exc)}") from None
    finally:
        if own_app:
            app.close()
    return store


def cluster_engine(config: Config, settings: ClusterSettings) -> Engine:
    """The engine of `once` on a cluster, its limits on the cluster's Redis: what the run
    waits on, and where the live display reads the rate limits the workers recorded.
    Redis and the broker are checked first (one clear error when either is down)."""
    add_secrets(settings.secrets())
    return Engine(config, Limits(check_cluster(settings)))


def run_cluster_once(
    engine: Engine,
    settings: ClusterSettings,
    *,
    dry_run: bool = False,
    progress_for: Callable[[str], ProgressListener | None] | None = None,
    on_done: Callable[[ScriptResult], None] | None = None,
) -> list[ScriptResult]:
    """Run every script of the engine's config once on the cluster (`cluster_engine`);
    results in config order."""
    config = engine.config
    app = create_app(settings)
    limits = engine.limits
    run_id = uuid.uuid4().hex
    stream = RunStream(limits, run_id)
    follower = RunFollower(stream, progress_for)
    level = logging.getLogger(ROOT).getEffectiveLevel()
    pending: dict[str, tuple[str, AsyncResult]] = {}  # task id -> (script, result)
    try:
        try:
            for script in config.scripts:
                result = app.send_task(SCRIPT_TASK, args=(script.name,),
                                       kwargs={"dry_run": dry_run, "run_id": run_id,
                                               "log_level": level,
                                               # progress only feeds a live display
                                               "progress": progress_for is not None},
                                       queue=QUEUE_SCRIPTS)
                pending[result.id] = (script.name, result)
        except OperationalError as exc:
            raise ClusterUnavailable(f"cannot send to the broker at "
                                     f"{sanitize(settings.broker_url)}: {_one_line(exc)}") from None
        log_fields(log, logging.DEBUG, "Scripts sent to the cluster", run=run_id,
                   scripts=len(pending), cluster=settings.describe())
        outage = Outage(f"Redis at {sanitize(settings.redis_url)}",
                        env_float(ENV_OUTAGE_LIMIT) or OUTAGE_LIMIT, log, ClusterUnavailable)
        try:
            results = _wait(pending, follower, limits, on_done, outage)
        except (redis.RedisError, OperationalError) as exc:
            raise ClusterUnavailable(f"lost Redis at {sanitize(settings.redis_url)} while "
                                     f"waiting for the scripts: {_one_line(exc)}") from None
    except BaseException as exc:
        _abandon(app, stream, pending, exc)
        raise
    finally:
        app.close()
    follower.drain()
    with contextlib.suppress(redis.RedisError):  # it expires on its own anyway
        stream.delete()
    return [results[name] for name in (s.name for s in config.scripts)]


def _wait(pending: dict[str, tuple[str, AsyncResult]], follower: RunFollower,
          limits: Limits, on_done: Callable[[ScriptResult], None] | None,
          outage: Outage | None = None) -> dict[str, ScriptResult]:
    outage = outage or Outage("Redis", OUTAGE_LIMIT, log, ClusterUnavailable)
    results: dict[str, ScriptResult] = {}
    missing_since: dict[str, float] = {}
    state = {"started_at": time.monotonic(), "warned": False}
    while pending:
        try:
            _look(pending, follower, limits, on_done, results, missing_since, state)
        except (redis.RedisError, OperationalError, ConnectionError, TimeoutError) as exc:
            outage.failed(exc)  # ClusterUnavailable once it lasted OUTAGE_LIMIT
            missing_since.clear()  # guards could not be seen: count again from now
            time.sleep(OUTAGE_PAUSE)
            continue
        outage.ok()
    return results


def _look(pending: dict[str, tuple[str, AsyncResult]], follower: RunFollower, limits: Limits,
          on_done: Callable[[ScriptResult], None] | None, results: dict[str, ScriptResult],
          missing_since: dict[str, float], seen: dict) -> None:
    """One look at the stream and at every pending script's result."""
    follower.poll(block=POLL)
    anyone_started = False
    for task_id, (name, result) in list(pending.items()):
        state, info = task_state(result)
        if state in ("PENDING", "RECEIVED"):
            continue
        anyone_started = True
        if state in ("STARTED", "RETRY"):
            if _lost(task_id, limits, missing_since):
                node = info.get("hostname") if isinstance(info, dict) else None
                where = f" ({node})" if node else ""
                done = ScriptResult(name=name, status=STATUS_FAILED,
                                    error=f"script {name!r}: the worker running it{where} "
                                          "stopped before it finished")
            else:
                continue
        elif state == "SUCCESS" and isinstance(info, dict):
            done = ScriptResult.from_dict(info)
        else:
            done = ScriptResult(name=name, status=STATUS_FAILED,
                                error=f"script {name!r}: task {state.lower()}: "
                                      f"{_one_line(info) if info else 'no result'}")
        follower.poll()  # lines logged before the result was stored come first
        del pending[task_id]
        forget_result(result)
        results[name] = done
        if on_done is not None:
            on_done(done)
    if not anyone_started and not seen["warned"] and not results \
            and time.monotonic() - seen["started_at"] > IDLE_WARNING:
        seen["warned"] = True
        log_fields(log, logging.WARNING, "No worker has taken a script yet; is one "
                   "running on this broker?", queue=QUEUE_SCRIPTS)


def _lost(task_id: str, limits: Limits, missing_since: dict[str, float]) -> bool:
    """True once a started task's guard has been missing for LOST_GRACE seconds."""
    try:
        alive = limits.is_locked(task_guard_name(task_id))
    except LimitError:
        return False
    if alive:
        missing_since.pop(task_id, None)
        return False
    first = missing_since.setdefault(task_id, time.monotonic())
    return time.monotonic() - first > LOST_GRACE


def _abandon(app, stream: RunStream, pending: dict[str, tuple[str, AsyncResult]],
             exc: BaseException) -> None:
    """Interrupted: ask running scripts to stop, drop the queued ones (best effort)."""
    reason = "once interrupted" if isinstance(exc, KeyboardInterrupt) else "once failed"
    with contextlib.suppress(redis.RedisError):
        stream.cancel(reason)
    if pending:
        try:
            app.control.revoke(list(pending))
        except Exception as err:
            log.debug("cannot revoke queued scripts: %s", err)


def _one_line(value: object) -> str:
    return " ".join(str(value).split()) or type(value).__name__
