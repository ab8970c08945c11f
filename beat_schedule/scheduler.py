"""The regbot beat scheduler: Celery's beat loop, with entries from regbot.yml.

Run by `regbot beat` (and `regbot server` on a cluster) through `celery.beat.Service`; it
also works as `celery -A workers.app beat -S beat_schedule.scheduler:RegbotScheduler` with
the config path in $REGBOT_CONFIG (or `app.conf.regbot_config_file`).

- Entries come from the config file (see beat_schedule/entries.py); their due times come
  from regbot's own schedule engine, the one the embedded server uses
  (beat_schedule/cron_schedule.py). The file is checked on
  every tick (a stat; its content hash when the stat changed) and re-read on SIGHUP
  (`request_reload()`): scripts added, removed or rescheduled take effect without a
  restart. A file that fails to load is logged and the running schedule kept.
- High availability, in the manner of redbeat: only the holder of a lock in the shared
  store sends runs; other beats stand by, polling the lock, and take over when the holder
  stops renewing it (it renews on each tick, so a stuck beat loses it too). Each run also
  claims "<script>:<due time>" (`Limits.once_per`) before it is sent, so even two beats
  that both believe they lead (a stall longer than the lock ttl) send it once.
- The time of each script's last run is kept in the store: a beat taking over continues
  the cluster's rhythm (same due times, so the claims above match) and fires a run the
  dead leader missed within the last `2 x lock_ttl`; older state is ignored, so a cluster
  started after a long stop behaves as a fresh start (robfig: the first `@every` run one
  interval after start, no catch-up of missed cron runs).
- Each run's message expires when the next run is due (at least a minute later): a
  backlog left by absent workers does not replay every missed run when they return.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from celery.beat import ScheduleEntry, Scheduler, SchedulingError
from celery.schedules import schedstate

from beat_schedule.config_watcher import ConfigWatcher
from beat_schedule.cron_schedule import CronSchedule
from beat_schedule.entries import SCRIPT_QUEUE, SCRIPT_TASK, NowFun, build_entries
from regbot.config import Config, load_config
from regbot.errors import ConfigError, LimitError
from regbot.limits import DEFAULT_PREFIX, Limits, describe_store, store_from_url
from regbot.limitstore import MemoryStore
from regbot.logs import get_logger, log_fields
from workers.settings import ENV_CONFIG, ENV_REDIS, is_redis

log = get_logger("regbot.beat")

DEFAULT_LOCK_TTL = 30.0  # seconds a dead leader keeps the lock before a standby takes over
DEFAULT_MAX_INTERVAL = 2.0  # longest sleep between ticks: bounds reload and standby latency
MIN_EXPIRY = 60.0  # a run's message lives at least this long (clock skew between hosts)
LAST_RUN_TTL = 7 * 24 * 3600  # shared last-run records of scripts no longer configured go
LEADER_LOCK = "beat:leader"  # under the store's lock keys; script locks use other names


class RegbotScheduler(Scheduler):
    """Celery beat scheduler whose entries are the scripts of a regbot.yml.

    Settings come from keyword arguments, else from the app's conf:
    `config_file` (`regbot_config_file`, else $REGBOT_CONFIG; required), `store` (a redis
    client) or `store_url` (`regbot_store_url`, else the cluster's Redis as the workers
    find it; none: the in-process store, one beat only),
    `lock_ttl` (`regbot_beat_lock_ttl`), `task` / `queue` (`regbot_script_task`,
    `regbot_script_queue`), `prefix` (`regbot_prefix`), `dry_run` (`regbot_dry_run`: runs
    are sent with dry_run=True). `nowfun` replaces the clock
    (tests drive `tick()` with a fake one).
    """

    def __init__(
        self,
        app: Any,
        *args: Any,
        config_file: str | None = None,
        store: Any = None,
        store_url: str | None = None,
        lock_ttl: float | None = None,
        task: str | None = None,
        queue: str | None = None,
        prefix: str | None = None,
        dry_run: bool | None = None,
        nowfun: NowFun | None = None,
        **kwargs: Any,
    ) -> None:
        conf = app.conf
        self.config_file = (config_file or conf.get("regbot_config_file")
                            or os.environ.get(ENV_CONFIG))
        self.task_name = task or conf.get("regbot_script_task") or SCRIPT_TASK
        self.queue = queue or conf.get("regbot_script_queue") or SCRIPT_QUEUE
        self.lock_ttl = float(lock_ttl or conf.get("regbot_beat_lock_ttl") or DEFAULT_LOCK_TTL)
        if self.lock_ttl <= 0:
            raise ValueError("the beat lock ttl must be positive")
        self._store_arg = store
        self._store_url = store_url if store_url is not None else _store_url_from(conf)
        self._prefix = prefix or conf.get("regbot_prefix") or DEFAULT_PREFIX
        self.dry_run = bool(dry_run if dry_run is not None else conf.get("regbot_dry_run"))
        self._nowfun = nowfun
        self._due_times_moved = False  # see schedules_equal
        self._reload_requested = threading.Event()
        self._definitions: dict[str, str] = {}  # script -> schedule text it was built from
        self._reserved_due: dict[str, datetime] = {}
        self._leader_lock: Any = None
        self._is_leader = False
        self._extended_at = 0.0
        self._standby_logged = False
        self._limits: Limits | None = None
        self._store: Any = None
        self._watcher: ConfigWatcher | None = None
        if not kwargs.get("max_interval"):  # Service passes 0 or None for "unset"
            kwargs["max_interval"] = conf.get("beat_max_loop_interval") or DEFAULT_MAX_INTERVAL
        super().__init__(app, *args, **kwargs)
        # The leader renews its lock from tick(): never sleep through a third of its ttl.
        self.max_interval = min(self.max_interval, self.lock_ttl / 3)

    # --- setup -------------------------------------------------------------------------

    def setup_schedule(self) -> None:
        if not self.config_file or self.config_file == "-":
            raise ConfigError("beat needs a config file it can re-read: use -c FILE")
        self._open_store()
        self._watcher = ConfigWatcher(self.config_file)
        config = load_config(self.config_file)  # ConfigError: the beat does not start
        self._watcher.read()
        self._apply_config(config)

    def install_default_entries(self, data: Any) -> None:
        """No celery.backend_cleanup: regbot's result backends expire results themselves."""

    def _open_store(self) -> None:
        if self._store is None:
            if self._store_arg is not None:
                self._store = self._store_arg
            elif self._store_url:
                self._store = store_from_url(self._store_url)
            else:
                self._store = MemoryStore()
            self._limits = Limits(self._store, self._prefix)
            self._leader_lock = self._limits.lock(LEADER_LOCK, self.lock_ttl)
            if describe_store(self._store) == "embedded":
                log_fields(log, logging.WARNING, "No shared store: run a single beat only")

    @property
    def info(self) -> str:
        where = describe_store(self._store) if self._store is not None else "not opened"
        return (f"    . config -> {self.config_file}\n    . store -> {where}\n"
                f"    . lock ttl -> {self.lock_ttl:g}s")

    # --- the beat loop -----------------------------------------------------------------

    def tick(self, *args: Any, **kwargs: Any) -> float:
        self._check_reload()
        if not self._ensure_leader():
            return self.max_interval
        return super().tick(*args, **kwargs)

    def request_reload(self) -> None:
        """Re-read the config file on the next tick even if it looks unchanged (SIGHUP)."""
        self._reload_requested.set()

    @property
    def is_leader(self) -> bool:
        return self._is_leader

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._is_leader and self._leader_lock is not None:
                self._leader_lock.release()  # a standby takes over at once, not after the ttl
                log_fields(log, logging.INFO, "Released the beat lock")
            self._is_leader = False

    def sync(self) -> None:
        """Nothing to flush: last runs go to the shared store as they happen."""

    # --- leadership --------------------------------------------------------------------

    def _ensure_leader(self) -> bool:
        assert self._leader_lock is not None
        now = time.monotonic()
        if self._is_leader:
            if now - self._extended_at < self.lock_ttl / 3:
                return True
            try:
                kept = self._leader_lock.extend()
            except LimitError as err:
                log_fields(log, logging.ERROR, "Cannot renew the beat lock", error=str(err))
                kept = False
            if kept:
                self._extended_at = now
                return True
            self._is_leader = False
            self._standby_logged = False
            log_fields(log, logging.WARNING, "Lost the beat lock: standing by")
        try:
            acquired = self._leader_lock.acquire()
        except LimitError as err:
            log_fields(log, logging.ERROR, "Cannot reach the store for the beat lock",
                       error=str(err))
            return False
        if not acquired:
            if not self._standby_logged:
                log_fields(log, logging.INFO, "Another beat holds the lock: standing by")
                self._standby_logged = True
            return False
        self._is_leader = True
        self._extended_at = now
        log_fields(log, logging.INFO, "Holding the beat lock: scheduling",
                   scripts=len(self.data))
        self._adopt_last_runs(self.data.values())
        self._due_times_moved = True
        return True

    def schedules_equal(self, old_schedules: Any, new_schedules: Any) -> bool:
        """Celery's comparison, telling its tick to re-order the entries by due time when
        they changed; also when only their last runs moved (a takeover adopted the
        cluster's, a reload restarted some), which entry equality does not look at."""
        if self._due_times_moved:
            self._due_times_moved = False
            return False
        return super().schedules_equal(old_schedules, new_schedules)

    # --- runs --------------------------------------------------------------------------

    def is_due(self, entry: ScheduleEntry) -> schedstate:
        """Celery's answer, except that a due interval entry's next check is its next due
        time after this run (Celery would say "one period from now", drifting each run by
        however late the tick was)."""
        state = entry.is_due()
        if not state.is_due:
            return state
        now = self._now()
        after = self._last_run_after(entry, self._due_time(entry), now)
        wait = (_schedule_of(entry).due_after(after) - now).total_seconds()
        return schedstate(True, max(wait, 0.0))

    def reserve(self, entry: ScheduleEntry) -> ScheduleEntry:
        """Advance the entry past the run being sent; remember that run's due time."""
        now = self._now()
        due = self._due_time(entry)
        self._reserved_due[entry.name] = due
        new_entry = self.Entry(
            name=entry.name, task=entry.task, schedule=entry.schedule, args=entry.args,
            kwargs=entry.kwargs, options=entry.options, app=self.app,
            last_run_at=self._last_run_after(entry, due, now),
            total_run_count=entry.total_run_count + 1,
        )
        self.schedule[entry.name] = new_entry
        return new_entry

    # True while sends fail (Redis or the broker away): an outage is one line, not one per
    # due run, and its end is another.
    _sends_failing = False

    def apply_entry(self, entry: ScheduleEntry, producer: Any = None) -> None:
        try:
            self.apply_async(entry, producer=producer, advance=False)
        except Exception as exc:  # one failed send must not stop the beat
            level = logging.DEBUG if self._sends_failing else logging.ERROR
            self._sends_failing = True
            log_fields(log, level, "Could not send a scheduled run", script=entry.name,
                       error=" ".join(str(exc).split()))
            return
        if self._sends_failing:
            self._sends_failing = False
            log_fields(log, logging.INFO, "Sending scheduled runs again", script=entry.name)

    def apply_async(
        self, entry: ScheduleEntry, producer: Any = None, advance: bool = True, **kwargs: Any
    ) -> Any:
        """Send one run of `entry` unless another beat already sent the run due then."""
        if advance:
            self.reserve(entry)
        due = self._reserved_due.pop(entry.name, None) or self._due_time(entry)
        stamp = _stamp(due)
        assert self._limits is not None
        if not self._limits.once_per(f"beat:{entry.name}:{stamp}", self._claim_ttl(entry)):
            log_fields(log, logging.INFO, "Run already sent by another beat", script=entry.name,
                       due=_iso(due))
            return None
        options = {**entry.options, **kwargs}
        options["headers"] = {**options.get("headers", {}), "celery_beat_task": True,
                              "regbot_scheduled": _iso(due)}
        options.setdefault("expires", due + max(self._period_after(entry, due),
                                                timedelta(seconds=MIN_EXPIRY)))
        try:
            task = self.app.tasks.get(entry.task)
            if task is not None:
                result = task.apply_async(entry.args, entry.kwargs, producer=producer, **options)
            else:
                result = self.send_task(entry.task, entry.args, entry.kwargs, producer=producer,
                                        **options)
        except Exception as exc:
            raise SchedulingError(f"cannot send a run of script {entry.name!r}: {exc}") from exc
        log_fields(log, logging.INFO, "Sent scheduled run", script=entry.name, due=_iso(due),
                   task_id=getattr(result, "id", None))
        self._record_last_run(entry.name, stamp)
        return result

    def _now(self) -> datetime:
        now = self._nowfun() if self._nowfun is not None else self.app.now()
        return now if now.tzinfo is not None else now.replace(tzinfo=UTC)

    def _due_time(self, entry: ScheduleEntry) -> datetime:
        return _schedule_of(entry).due_after(entry.last_run_at)

    def _period_after(self, entry: ScheduleEntry, due: datetime) -> timedelta:
        return _schedule_of(entry).due_after(due) - due

    def _claim_ttl(self, entry: ScheduleEntry) -> float:
        # Long enough that a beat which stalled past the lock ttl still finds the claim.
        return max(600.0, 4 * self.lock_ttl)

    @staticmethod
    def _last_run_after(entry: ScheduleEntry, due: datetime, now: datetime) -> datetime:
        """last_run_at once the run due at `due` is sent.

        Intervals keep their phase (next = due + period, as robfig's @every); a beat that
        stalled over several periods skips the missed ones instead of replaying them. Cron
        entries count from now: the next matching minute after this one.
        """
        period = _schedule_of(entry).period
        if period is not None:
            missed = math.floor((now - due) / period)
            if missed > 0:
                return due + missed * period
            return due
        return max(due, now)

    # --- shared last runs --------------------------------------------------------------

    def _last_run_key(self, name: str) -> str:
        assert self._limits is not None  # opened in setup_schedule
        return self._limits.keys.beat_last_run(name)

    def _record_last_run(self, name: str, stamp: int) -> None:
        body = json.dumps({"schedule": self._definitions.get(name, ""), "due": stamp})
        try:
            self._limits.put_record(self._last_run_key(name), body, LAST_RUN_TTL)
        except Exception as exc:  # the run was sent; a standby just re-phases on takeover
            log_fields(log, logging.WARNING, "Cannot record the last run", script=name,
                       error=" ".join(str(exc).split()))

    def _adopt_last_runs(self, entries: Iterable[ScheduleEntry]) -> None:
        """On becoming leader (and for entries added meanwhile): continue from the cluster's
        last run of each entry; a run missed longer ago than the grace is not caught up
        (as after a long stop of every beat: start afresh)."""
        now = self._now()
        grace = timedelta(seconds=2 * self.lock_ttl)
        for entry in entries:
            last = self._shared_last_run(entry) or entry.last_run_at
            if _schedule_of(entry).due_after(last) < now - grace:
                last = now.replace(microsecond=0)
            entry.last_run_at = last

    def _shared_last_run(self, entry: ScheduleEntry) -> datetime | None:
        """The due time of the entry's last run sent by any beat, if recorded for the
        entry's current schedule."""
        try:
            raw = self._limits.get_record(self._last_run_key(entry.name))
        except Exception as exc:
            log_fields(log, logging.WARNING, "Cannot read the last run", script=entry.name,
                       error=" ".join(str(exc).split()))
            return None
        if raw is None:
            return None
        try:
            record = json.loads(raw)
            last = datetime.fromtimestamp(int(record["due"]), tz=UTC)
            definition = record["schedule"]
        except (ValueError, TypeError, KeyError):
            return None
        if definition != self._definitions.get(entry.name):
            return None  # rescheduled since: that rhythm is gone
        return last

    # --- config reload -----------------------------------------------------------------

    def _check_reload(self) -> None:
        assert self._watcher is not None
        forced = self._reload_requested.is_set()
        self._reload_requested.clear()
        text = self._watcher.changed(force=forced)
        if text is None:
            return
        from regbot.config import parse_config

        try:
            config = parse_config(text, self.config_file)
        except ConfigError as err:
            log_fields(log, logging.ERROR, "Config reload failed, keeping the schedule",
                       error=str(err))
            return
        log_fields(log, logging.INFO, "Config reloaded", file=self.config_file,
                   signal="SIGHUP" if forced else None)
        self._apply_config(config)

    def _apply_config(self, config: Config) -> None:
        """Make the entries those of `config`: keep unchanged ones (and their last run), add
        new ones, restart changed ones from now, drop removed ones."""
        specs = build_entries(config, task=self.task_name, queue=self.queue,
                              nowfun=self._nowfun, app=self.app, dry_run=self.dry_run)
        start = self._now().replace(microsecond=0)  # robfig counts @every from whole seconds
        current: dict[str, ScheduleEntry] = dict(self.data)
        entries: dict[str, ScheduleEntry] = {}
        fresh: list[ScheduleEntry] = []
        for name, spec in specs.items():
            definition = spec["regbot_schedule"]
            old = current.get(name)
            if (old is not None and self._definitions.get(name) == definition
                    and old.task == spec["task"] and old.options == spec["options"]
                    and old.kwargs == spec["kwargs"]):
                entries[name] = old
                continue
            entry = self.Entry(name=name, task=spec["task"], schedule=spec["schedule"],
                               args=spec["args"], kwargs=spec["kwargs"],
                               options=spec["options"],
                               last_run_at=start, app=self.app)
            entries[name] = entry
            fresh.append(entry)
            self._definitions[name] = definition
            log_fields(log, logging.INFO, "Rescheduled script" if old else "Scheduled script",
                       script=name, schedule=definition)
        for name in current.keys() - specs.keys():
            self._definitions.pop(name, None)
            log_fields(log, logging.INFO, "Unscheduled script", script=name)
        self.data = entries
        if fresh and self._is_leader:
            self._adopt_last_runs(fresh)
        self._due_times_moved = True


def _store_url_from(conf: Any) -> str | None:
    """`regbot_store_url`, else the Redis the workers use (REGBOT_REDIS_URL, else a Redis
    result backend or broker): so `celery beat -S beat_schedule.scheduler:RegbotScheduler`
    shares the cluster's store too. None: the in-process store (a single beat only)."""
    if conf.get("regbot_store_url"):
        return conf.get("regbot_store_url")
    for url in (os.environ.get(ENV_REDIS), conf.get("result_backend"), conf.get("broker_url")):
        if is_redis(url):
            return url
    return None


def _schedule_of(entry: ScheduleEntry) -> CronSchedule:
    """The entry's schedule: always a CronSchedule, as build_entries makes every entry."""
    sched = entry.schedule
    if not isinstance(sched, CronSchedule):
        raise TypeError(f"beat entry {entry.name!r} has a {type(sched).__name__} schedule, "
                        "not regbot's CronSchedule")
    return sched


def _stamp(due: datetime) -> int:
    return int(round(due.timestamp()))


def _iso(due: datetime) -> str:
    return datetime.fromtimestamp(_stamp(due), tz=UTC).isoformat().replace("+00:00", "Z")
