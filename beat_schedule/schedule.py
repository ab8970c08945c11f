"""regbot.yml scripts as Celery beat entries.

One entry per scheduled script, named after the script; its task is the script task and
its only argument the script name (workers read the config and credentials themselves, so
nothing secret travels in a message).

- `interval` and `@every <d>`: a fixed `celery.schedules.schedule(timedelta(d))`. Started
  from the beat's start time, the first run comes one interval after start, as robfig's
  `@every` does (the period is whole seconds, at least one, as robfig rounds it).
- cron fields and descriptors (`@daily`...): a `crontab` in the schedule's zone (`TZ=` /
  `CRON_TZ=` prefix, else the beat host's local zone, as robfig uses time.Local).
- When both day of month and day of week are restricted, robfig runs on a day matching
  either; Celery's crontab needs both. Such a schedule becomes two crontabs inside one
  `AnyCrontab`, so a day matching both still fires the script once a minute, not twice.
- A script with neither schedule nor interval is logged as an error and left out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from celery.schedules import BaseSchedule, crontab, schedstate, schedule
from celery.utils.time import timezone as celery_timezone

from regbot.config import Config, ScriptConfig
from regbot.logs import get_logger, log_fields
from regbot.schedule import Schedule, ScheduleError
from workers import settings

log = get_logger("regbot.beat")

# The script task and its queue, as the workers name them (the beat sends by name and
# never imports the task module).
SCRIPT_TASK = settings.SCRIPT_TASK
SCRIPT_QUEUE = settings.QUEUE_SCRIPTS

NowFun = Callable[[], datetime]


def local_zone() -> tzinfo:
    """The zone robfig's cron uses when no TZ= is given: the host's local time."""
    return celery_timezone.local


def zone_name(zone: tzinfo) -> str:
    return getattr(zone, "key", None) or str(zone)


class ZonedCrontab(crontab):
    """A crontab evaluated in a fixed zone instead of the Celery app's `timezone`."""

    def __init__(
        self,
        minute: str = "*",
        hour: str = "*",
        day_of_week: str = "*",
        day_of_month: str = "*",
        month_of_year: str = "*",
        zone: tzinfo | str | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(zone, str):
            zone = ZoneInfo(zone)
        self.zone: tzinfo = zone if zone is not None else local_zone()
        super().__init__(minute, hour, day_of_week, day_of_month, month_of_year, **kwargs)

    @property
    def tz(self) -> tzinfo:  # crontab reads self.tz for all its field matching
        return self.zone

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ZonedCrontab):
            return zone_name(self.zone) == zone_name(other.zone) and super().__eq__(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable app binding; compared, not hashed

    def __reduce__(self) -> tuple:
        fields = (
            self._orig_minute,
            self._orig_hour,
            self._orig_day_of_week,
            self._orig_day_of_month,
            self._orig_month_of_year,
            zone_name(self.zone),
        )
        return self.__class__, fields, self._orig_kwargs

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]} {zone_name(self.zone)}>"


class AnyCrontab(BaseSchedule):
    """Due when any of its crontabs is due: the union of their run times, each run once."""

    def __init__(
        self, crontabs: Iterable[crontab], nowfun: NowFun | None = None, app: Any = None
    ) -> None:
        self.crontabs = tuple(crontabs)
        if not self.crontabs:
            raise ValueError("AnyCrontab needs at least one crontab")
        super().__init__(nowfun=nowfun, app=app)

    @property
    def app(self) -> Any:
        return BaseSchedule.app.fget(self)  # type: ignore[attr-defined]

    @app.setter
    def app(self, app: Any) -> None:
        # Celery binds the app to an entry's schedule; the parts need it too.
        self._app = app
        for part in getattr(self, "crontabs", ()):
            part.app = app

    def remaining_estimate(self, last_run_at: datetime) -> timedelta:
        return min(part.remaining_estimate(last_run_at) for part in self.crontabs)

    def is_due(self, last_run_at: datetime) -> schedstate:
        remaining = self.remaining_estimate(last_run_at).total_seconds()
        if remaining > 0:
            return schedstate(False, remaining)
        # Due now: the next check is when the earliest part fires after now.
        return schedstate(True, max(self.remaining_estimate(self.now()).total_seconds(), 0))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AnyCrontab):
            return self.crontabs == other.crontabs
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple:
        return self.__class__, (self.crontabs, self.nowfun)

    def __repr__(self) -> str:
        return "<any of " + ", ".join(repr(part) for part in self.crontabs) + ">"


def celery_schedule(
    sched: Schedule, *, nowfun: NowFun | None = None, app: Any = None
) -> BaseSchedule:
    """The Celery schedule that fires when `sched` (a parsed regbot schedule) does."""
    if sched.every is not None:
        return schedule(timedelta(seconds=sched.every), nowfun=nowfun, app=app)
    zone: tzinfo = ZoneInfo(sched.timezone) if sched.timezone else local_zone()
    parts = [
        ZonedCrontab(**kwargs, zone=zone, nowfun=nowfun, app=app)
        for kwargs in sched.crontab_kwargs()
    ]
    if len(parts) == 1:
        return parts[0]
    return AnyCrontab(parts, nowfun=nowfun, app=app)


def next_due(sched: BaseSchedule, last_run_at: datetime) -> datetime:
    """When `sched` is next due after a run at `last_run_at` (the result may be past)."""
    if isinstance(sched, schedule):
        return sched.maybe_make_aware(last_run_at) + sched.run_every
    if isinstance(sched, AnyCrontab):
        return min(next_due(part, last_run_at) for part in sched.crontabs)
    if isinstance(sched, crontab):
        start, delta, _ = sched.remaining_delta(last_run_at)
        return start + delta  # ffwd: the next matching wall-clock time in the crontab's zone
    now = sched.maybe_make_aware(sched.now())
    return now + sched.remaining_estimate(last_run_at)


def script_schedule(script: ScriptConfig) -> Schedule | None:
    """The parsed schedule of a script (its cron, else its interval as @every), or None."""
    return script.effective_schedule()


def build_entries(
    config: Config,
    *,
    task: str = SCRIPT_TASK,
    queue: str = SCRIPT_QUEUE,
    nowfun: NowFun | None = None,
    app: Any = None,
    dry_run: bool = False,
) -> dict[str, dict[str, Any]]:
    """`beat_schedule` entries for the scripts of `config`, keyed by script name.

    Each value is a Celery beat entry dict (task, schedule, args, options; kwargs
    `{"dry_run": True}` only for a dry-run beat) plus "regbot_schedule": the schedule text,
    which identifies the definition (a changed text is a rescheduled script). Scripts
    without a schedule are logged as errors and left out.
    """
    entries: dict[str, dict[str, Any]] = {}
    for script in config.scripts:
        try:
            sched = script_schedule(script)
        except ScheduleError as err:  # load_config validated it; a hand-built Config may not be
            log_fields(log, logging.ERROR, "Invalid schedule, ignoring", script=script.name,
                       error=str(err))
            continue
        if sched is None:
            log_fields(log, logging.ERROR, "No schedule or interval found, ignoring",
                       script=script.name)
            continue
        entries[script.name] = {
            "task": task,
            "schedule": celery_schedule(sched, nowfun=nowfun, app=app),
            "args": (script.name,),
            "kwargs": {"dry_run": True} if dry_run else {},
            "options": {"queue": queue},
            "regbot_schedule": sched.text,
        }
    return entries


def beat_schedule(config: Config, **kwargs: Any) -> dict[str, dict[str, Any]]:
    """Plain `app.conf.beat_schedule` entries (no regbot keys), for a stock `celery beat`."""
    return {
        name: {key: value for key, value in entry.items() if not key.startswith("regbot_")}
        for name, entry in build_entries(config, **kwargs).items()
    }
