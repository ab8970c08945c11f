"""regbot.yml scripts as Celery beat entries.

One entry per scheduled script, named after the script; its task is the script task and
its only argument the script name (workers read the config and credentials themselves, so
nothing secret travels in a message).

Every entry's schedule is a `CronSchedule` (beat_schedule/cron_schedule.py): regbot's own
schedule engine, the one the embedded server uses, for cron fields, descriptors, `TZ=` /
`CRON_TZ=` zones (else the beat host's local zone, as robfig uses time.Local), `@every`
and `interval` alike. Started from the beat's start time, the first `@every` run comes one
interval after start, as robfig's does. A script with neither schedule nor interval is
logged as an error and left out.
"""

from __future__ import annotations

import logging
from typing import Any

from beat_schedule.cron_schedule import CronSchedule, NowFun
from regbot.config import Config
from regbot.cron import ScheduleError
from regbot.logs import get_logger, log_fields
from workers import settings

log = get_logger("regbot.beat")

# The script task and its queue, as the workers name them (the beat sends by name and
# never imports the task module).
SCRIPT_TASK = settings.SCRIPT_TASK
SCRIPT_QUEUE = settings.QUEUE_SCRIPTS

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
            sched = script.effective_schedule()
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
            "schedule": CronSchedule(sched, nowfun=nowfun, app=app),
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
