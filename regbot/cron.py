"""Script schedules, read as the Go regbot reads them (robfig/cron v3 `ParseStandard`).

Accepted: five fields (minute, hour, day of month, month, day of week) with `*`, `?`,
numbers, names (`JAN`, `mon`; any case), ranges `a-b`, steps `/n` and lists `a,b`; the
descriptors `@yearly`/`@annually`, `@monthly`, `@weekly`, `@daily`/`@midnight`, `@hourly`,
`@every <Go duration>`; an optional `TZ=<zone> ` or `CRON_TZ=<zone> ` prefix.

The fields are validated here with robfig's rules (so what Go rejects is rejected, e.g. a
day of week of 7, `L` or `#`), then handed to croniter in a normalised form for the time
arithmetic. Day of month and day of week combine as in robfig (and Vixie cron): when both
are restricted (neither was written with a `*` or `?` start, `*/2` counts as restricted),
a day matching either runs; otherwise both must match.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import tzlocal

from regbot.durations import SECOND, DurationError, format_duration_ns, parse_duration_ns


class ScheduleError(ValueError):
    """A schedule the Go regbot would refuse; the message names the text."""


def local_zone() -> tzinfo:
    """The zone robfig's cron reads a schedule without `TZ=` in: the host's local time
    (Go's time.Local; $TZ, else /etc/localtime). A ZoneInfo, so DST changes are known."""
    return tzlocal.get_localzone()


@dataclass(frozen=True)
class _Bounds:
    low: int
    high: int
    names: dict[str, int]


_MINUTES = _Bounds(0, 59, {})
_HOURS = _Bounds(0, 23, {})
_DOM = _Bounds(1, 31, {})
_MONTHS = _Bounds(
    1,
    12,
    {
        "jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
        "jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12,
    },
)  # fmt: skip
_DOW = _Bounds(0, 6, {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6})
_FIELDS = (
    ("minute", _MINUTES),
    ("hour", _HOURS),
    ("day of month", _DOM),
    ("month", _MONTHS),
    ("day of week", _DOW),
)

# Descriptor -> equivalent five fields (robfig: @weekly is Sunday midnight, etc.).
_DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_EVERY = "@every "
_ATOI = re.compile(r"[+-]?[0-9]+\Z")


@dataclass(frozen=True)
class _Field:
    values: frozenset[int]
    star: bool  # written as `*` or `?` (without a step > 1): robfig's "star bit"

    def text(self) -> str:
        """croniter/Celery form: `*` for a star, else a compact list (`0-4,10,20`)."""
        if self.star:
            return "*"
        parts: list[str] = []
        ordered = sorted(self.values)
        i = 0
        while i < len(ordered):
            j = i
            while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
                j += 1
            if j - i >= 2:
                parts.append(f"{ordered[i]}-{ordered[j]}")
            else:
                parts.extend(str(v) for v in ordered[i : j + 1])
            i = j + 1
        return ",".join(parts)


def _parse_int(expr: str, names: dict[str, int]) -> int:
    if names and expr.lower() in names:
        return names[expr.lower()]
    if not _ATOI.match(expr):
        raise ScheduleError(f'failed to parse int from "{expr}"')
    num = int(expr)
    if num < 0:
        raise ScheduleError(f"negative number ({num}) not allowed: {expr}")
    return num


def _parse_range(expr: str, bounds: _Bounds) -> _Field:
    range_and_step = expr.split("/")
    low_and_high = range_and_step[0].split("-")
    star = False
    if low_and_high[0] in ("*", "?"):
        start, end, star = bounds.low, bounds.high, True
    else:
        start = _parse_int(low_and_high[0], bounds.names)
        if len(low_and_high) == 1:
            end = start
        elif len(low_and_high) == 2:
            end = _parse_int(low_and_high[1], bounds.names)
        else:
            raise ScheduleError(f"too many hyphens: {expr}")
    if len(range_and_step) == 1:
        step = 1
    elif len(range_and_step) == 2:
        step = _parse_int(range_and_step[1], {})
        if len(low_and_high) == 1:
            end = bounds.high  # "N/step" means "N-max/step"
        if step > 1:
            star = False
    else:
        raise ScheduleError(f"too many slashes: {expr}")
    if start < bounds.low:
        raise ScheduleError(f"beginning of range ({start}) below minimum ({bounds.low}): {expr}")
    if end > bounds.high:
        raise ScheduleError(f"end of range ({end}) above maximum ({bounds.high}): {expr}")
    if start > end:
        raise ScheduleError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise ScheduleError(f"step of range should be a positive number: {expr}")
    return _Field(frozenset(range(start, end + 1, step)), star)


def _parse_field(text: str, name: str, bounds: _Bounds) -> _Field:
    values: set[int] = set()
    star = False
    for expr in (part for part in text.split(",") if part):
        field = _parse_range(expr, bounds)
        values |= field.values
        star = star or field.star
    if not values:
        raise ScheduleError(f"{name} field {text!r} selects nothing")
    return _Field(frozenset(values), star)


def _never_fires(dom: _Field, month: _Field, dow: _Field) -> bool:
    # Only a restricted day of month ANDed with a starred day of week can be impossible
    # (the 30th of February); robfig would accept it and silently never run the script.
    if dom.star or not dow.star:
        return False
    longest = {m: calendar.monthrange(2024, m)[1] for m in range(1, 13)}  # 2024: leap year
    return not any(day <= longest[m] for m in month.values for day in dom.values)


class CronFields(NamedTuple):
    """The five fields, named as `celery.schedules.crontab` names its arguments."""

    minute: str
    hour: str
    day_of_month: str
    month_of_year: str
    day_of_week: str


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule.

    `text` is what the user wrote. For `@every`, `every` holds the period in seconds (whole
    seconds, at least 1, as robfig rounds it) and `cron_fields` is None; otherwise
    `cron_fields` holds the five normalised fields (a CronFields: minute, hour, day_of_month,
    month_of_year, day_of_week; `*` or lists/ranges of numbers, Sunday = 0) and `day_or`
    tells that day of month and day of week are both restricted, so a day matching either
    one runs (Celery's crontab ANDs them: build one crontab per side, see crontab_kwargs).
    `timezone` is the `TZ=`/`CRON_TZ=` zone, None for the local time of the caller.
    """

    text: str
    every: float | None = None
    cron_fields: CronFields | None = None
    day_or: bool = False
    timezone: str | None = None

    @property
    def expression(self) -> str | None:
        """The five fields as one croniter expression (None for @every)."""
        return " ".join(self.cron_fields) if self.cron_fields else None

    def crontab_kwargs(self) -> list[dict[str, str]]:
        """Keyword arguments for `celery.schedules.crontab`, one dict per crontab needed.

        Two dicts when `day_or` (one restricting the day of month, one the day of week);
        their union is this schedule. Empty for @every schedules.
        """
        if self.cron_fields is None:
            return []
        fields = self.cron_fields._asdict()
        if self.day_or:
            return [{**fields, "day_of_week": "*"}, {**fields, "day_of_month": "*"}]
        return [fields]

    @property
    def zone(self) -> tzinfo:
        """The zone the fields are read in: the `TZ=` zone, else the host's local zone."""
        return ZoneInfo(self.timezone) if self.timezone else local_zone()

    def next_run_after(self, instant: datetime) -> datetime:
        """The first run strictly after the aware `instant`, where robfig's cron on this host
        puts it: the fields read in `zone` (so a schedule without `TZ=` follows the host's
        local time, DST included), `@every` counted in elapsed time. In instant's zone.

        The one question both the embedded server and the beat ask, so the two modes agree
        on every run time (DST gaps and repeats, the day-of-month/day-of-week rule)."""
        if instant.tzinfo is None:
            raise ValueError("next_run_after needs an aware datetime")
        return self.next_after(instant.astimezone(self.zone)).astimezone(instant.tzinfo)

    def next_after(self, t: datetime) -> datetime:
        """The first run strictly after t, in t's time zone (naive t: naive local time)."""
        if self.every is not None:
            # robfig: t + delay, rounded down to the second.
            start = t.replace(microsecond=0)
            period = timedelta(seconds=self.every)
            if t.tzinfo is None:
                return start + period
            # Aware arithmetic in a zone adds wall-clock time: go through UTC so a DST change
            # in t's zone neither stretches nor shrinks the period.
            return (start.astimezone(UTC) + period).astimezone(t.tzinfo)
        assert self.expression is not None
        if self.timezone is None:
            from croniter import croniter  # only schedules given as cron need it

            return croniter(self.expression, t, day_or=True).get_next(datetime)
        zone = ZoneInfo(self.timezone)
        local = t.astimezone(zone)  # a naive t is taken as system local time
        from croniter import croniter

        nxt = croniter(self.expression, local, day_or=True).get_next(datetime)
        if t.tzinfo is None:
            return nxt.astimezone().replace(tzinfo=None)
        return nxt.astimezone(t.tzinfo)


def parse_schedule(text: str) -> Schedule:
    """Parse a cron expression, descriptor or `@every <duration>` as robfig/cron v3 does.

    Raises ScheduleError (a ValueError) with a one-line reason.
    """
    if not isinstance(text, str) or text == "":
        raise ScheduleError("empty spec string")
    spec = text
    timezone = None
    if spec.startswith(("TZ=", "CRON_TZ=")):
        eq = spec.index("=")
        space = spec.find(" ")
        name = spec[eq + 1 : space] if space > 0 else spec[eq + 1 :]
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ScheduleError(f"provided bad location {name}") from None
        if space < 0:
            raise ScheduleError(f"missing schedule after {spec}")
        timezone = name
        spec = spec[space:].strip()
    if spec.startswith("@"):
        if spec in _DESCRIPTORS:
            fields = _DESCRIPTORS[spec].split()
        elif spec.startswith(_EVERY):
            try:
                ns = parse_duration_ns(spec[len(_EVERY) :])
            except DurationError as err:
                raise ScheduleError(f"failed to parse duration {spec}: {err}") from None
            # robfig's Every(): below one second becomes one second; sub-second parts dropped.
            ns = max(ns, SECOND)
            ns -= ns % SECOND
            return Schedule(text=text, every=ns / SECOND, timezone=timezone)
        else:
            raise ScheduleError(f"unrecognized descriptor: {spec}")
    else:
        fields = spec.split()
        if len(fields) != 5:
            raise ScheduleError(
                f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]"
            )
    parsed = [
        _parse_field(value, name, bounds)
        for value, (name, bounds) in zip(fields, _FIELDS, strict=True)
    ]
    minute, hour, dom, month, dow = parsed
    if _never_fires(dom, month, dow):
        raise ScheduleError(f"{spec!r} never fires (no such day in the months given)")
    return Schedule(
        text=text,
        cron_fields=CronFields(*(f.text() for f in parsed)),
        day_or=not dom.star and not dow.star,
        timezone=timezone,
    )


def every_schedule(seconds: float) -> Schedule:
    """The schedule Go builds for an `interval`: `@every <interval>`."""
    return parse_schedule(_EVERY + format_duration_ns(round(seconds * SECOND)))
