"""regbot's schedule engine as a Celery schedule.

`CronSchedule` is the only schedule the beat uses: every due time it reports comes from
`Schedule.next_run_after` (regbot/cron.py), the very call the embedded server makes,
so a cluster's beat and `regbot server` on one node cannot disagree about a run time:
not across a DST change, not on robfig's day-of-month/day-of-week rule, not on `@every`.
Celery's own `crontab` is not used; it ANDs day of month and day of week and has its own
DST rules.

It implements Celery's public schedule interface (`is_due`, `remaining_estimate`, `__eq__`,
`__reduce__`), so a stock `celery beat` can run it from `app.conf.beat_schedule` too.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from celery.schedules import BaseSchedule, schedstate

from regbot.cron import Schedule

NowFun = Callable[[], datetime]


class CronSchedule(BaseSchedule):
    """Due when the regbot `Schedule` it wraps says a run is due."""

    def __init__(self, cron: Schedule, nowfun: NowFun | None = None, app: Any = None) -> None:
        super().__init__(nowfun=nowfun, app=app)
        self.cron = cron

    @property
    def period(self) -> timedelta | None:
        """The fixed period of an `@every` (or interval) schedule; None for cron fields."""
        return None if self.cron.every is None else timedelta(seconds=self.cron.every)

    def due_after(self, last_run_at: datetime) -> datetime:
        """When the run after one at `last_run_at` is due (possibly in the past). A naive
        `last_run_at` (an old persisted schedule) is taken as UTC, as Celery does."""
        return self.cron.next_run_after(self.maybe_make_aware(last_run_at))

    def remaining_estimate(self, last_run_at: datetime) -> timedelta:
        return self.due_after(last_run_at) - self._aware_now()

    def is_due(self, last_run_at: datetime) -> schedstate:
        now = self._aware_now()
        remaining = (self.due_after(last_run_at) - now).total_seconds()
        if remaining > 0:
            return schedstate(False, remaining)
        # Due now: once run (last_run_at = now), the next check is the run after now.
        return schedstate(True, max((self.due_after(now) - now).total_seconds(), 0.0))

    def _aware_now(self) -> datetime:
        return self.maybe_make_aware(self.now())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, CronSchedule):
            return self.cron == other.cron
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # the app binding is mutable: compared, not hashed

    def __reduce__(self) -> tuple:
        return self.__class__, (self.cron, self.nowfun)

    def __repr__(self) -> str:
        return f"<cron: {self.cron.text}>"
