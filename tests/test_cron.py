"""Cron schedules with robfig/cron v3's standard parser rules, arithmetic from croniter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from regbot.cron import Schedule, ScheduleError, every_schedule, parse_schedule

START = datetime(2024, 1, 1, 0, 0, 0)  # a Monday


def runs(schedule: Schedule, start: datetime = START, count: int = 5) -> list[datetime]:
    out = []
    t = start
    for _ in range(count):
        t = schedule.next_after(t)
        out.append(t)
    return out


def croniter_runs(expr: str, start: datetime = START, count: int = 5) -> list[datetime]:
    it = croniter(expr, start)
    return [it.get_next(datetime) for _ in range(count)]


@pytest.mark.parametrize(
    "expr",
    [
        "0 * * * *",
        "*/15 * * * *",
        "5,35 9-17 * * *",
        "0 0 1 * *",
        "0 12 * * 1-5",
        "30 2 1-7 * *",
        "0 0 1 1,7 *",
        "10-50/20 3 * * *",
        "0 */6 * * *",
        "15 3 * * *",
    ],
)
def test_plain_expressions_match_croniter(expr):
    assert runs(parse_schedule(expr), count=8) == croniter_runs(expr, count=8)


@pytest.mark.parametrize(
    ("expr", "same_as"),
    [
        ("0 0 * JAN,jul MON", "0 0 * 1,7 1"),
        ("0 0 * * mon-FRI", "0 0 * * 1-5"),
        ("0 0 * FEB-apr *", "0 0 * 2-4 *"),
        ("0 0 ? * SUN", "0 0 * * 0"),
        ("0 0 * * */1", "0 0 * * *"),
        ("*/1 * * * *", "* * * * *"),
        ("5/15 * * * *", "5,20,35,50 * * * *"),  # "N/step" means N-max/step
        ("1,,2 * * * *", "1,2 * * * *"),  # empty list items are skipped (strings.FieldsFunc)
        ("+5 * * * *", "5 * * * *"),  # strconv.Atoi accepts a sign
    ],
)
def test_names_steps_and_lists(expr, same_as):
    a, b = parse_schedule(expr), parse_schedule(same_as)
    assert a.cron_fields == b.cron_fields
    assert runs(a) == runs(b)


def test_fields_for_celery():
    s = parse_schedule("*/15 9-17 * JAN-MAR mon,wed,fri")
    assert s.cron_fields == ("0,15,30,45", "9-17", "*", "1-3", "1,3,5")
    assert s.day_or is False
    assert s.every is None
    assert s.crontab_kwargs() == [
        {
            "minute": "0,15,30,45",
            "hour": "9-17",
            "month_of_year": "1-3",
            "day_of_month": "*",
            "day_of_week": "1,3,5",
        }
    ]


def test_day_of_month_or_day_of_week():
    # Both restricted: a day matching either runs (robfig's dayMatches, Vixie cron).
    s = parse_schedule("0 0 13 * 5")
    assert s.day_or is True
    got = runs(s, count=6)
    assert got == [
        datetime(2024, 1, 5),
        datetime(2024, 1, 12),
        datetime(2024, 1, 13),
        datetime(2024, 1, 19),
        datetime(2024, 1, 26),
        datetime(2024, 2, 2),
    ]
    assert [k["day_of_month"] for k in s.crontab_kwargs()] == ["13", "*"]
    assert [k["day_of_week"] for k in s.crontab_kwargs()] == ["*", "5"]


def test_star_day_of_week_means_and():
    s = parse_schedule("0 0 13 * *")
    assert s.day_or is False
    assert runs(s, count=2) == [datetime(2024, 1, 13), datetime(2024, 2, 13)]


def test_step_on_day_of_week_is_restricted():
    # robfig drops the star bit for steps above 1: "*/2" with a day of month is an OR.
    s = parse_schedule("0 0 15 * */2")
    assert s.day_or is True
    got = runs(s, count=4)
    assert got == [
        datetime(2024, 1, 2),
        datetime(2024, 1, 4),
        datetime(2024, 1, 6),
        datetime(2024, 1, 7),
    ]
    assert datetime(2024, 1, 15) in runs(s, count=10)  # a Monday, selected by the 15th


def test_full_range_without_star_is_restricted():
    # "1-31" is not a star: with a weekday, every day matches (OR).
    s = parse_schedule("0 0 1-31 * 1")
    assert s.day_or is True
    assert runs(s, count=3) == [datetime(2024, 1, 2), datetime(2024, 1, 3), datetime(2024, 1, 4)]


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ("@yearly", ("0", "0", "1", "1", "*")),
        ("@annually", ("0", "0", "1", "1", "*")),
        ("@monthly", ("0", "0", "1", "*", "*")),
        ("@weekly", ("0", "0", "*", "*", "0")),
        ("@daily", ("0", "0", "*", "*", "*")),
        ("@midnight", ("0", "0", "*", "*", "*")),
        ("@hourly", ("0", "*", "*", "*", "*")),
    ],
)
def test_descriptors(text, fields):
    s = parse_schedule(text)
    assert s.cron_fields == fields
    assert s.text == text
    assert s.every is None
    assert runs(s, count=3) == croniter_runs(" ".join(fields), count=3)


def test_weekly_is_sunday_midnight():
    assert runs(parse_schedule("@weekly"), count=2) == [datetime(2024, 1, 7), datetime(2024, 1, 14)]


def test_every():
    s = parse_schedule("@every 1h30m")
    assert s.every == 5400.0
    assert s.cron_fields is None
    assert s.crontab_kwargs() == []
    t = datetime(2024, 1, 1, 10, 0, 0, 700000)
    assert s.next_after(t) == datetime(2024, 1, 1, 11, 30, 0)  # rounded down to the second


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("@every 300ms", 1.0),  # below a second: one second (robfig's Every)
        ("@every 0s", 1.0),
        ("@every 1.7s", 1.0),  # sub-second parts are dropped
        ("@every 90s", 90.0),
        ("@every 2h45m30.5s", 9930.0),
    ],
)
def test_every_rounding(text, seconds):
    assert parse_schedule(text).every == seconds


def test_every_schedule_from_interval():
    s = every_schedule(3600.0)
    assert s.text == "@every 1h0m0s"
    assert s.every == 3600.0


def test_timezone_prefix():
    s = parse_schedule("CRON_TZ=Europe/Paris 30 2 * * *")
    assert s.timezone == "Europe/Paris"
    start = datetime(2024, 1, 1, tzinfo=UTC)
    first = s.next_after(start)
    assert first == datetime(2024, 1, 1, 1, 30, tzinfo=UTC)  # 02:30 in Paris, winter
    assert first.tzinfo is UTC
    summer = s.next_after(datetime(2024, 7, 1, tzinfo=UTC))
    assert summer.astimezone(ZoneInfo("Europe/Paris")).hour == 2
    assert parse_schedule("TZ=UTC @hourly").timezone == "UTC"


def test_aware_times_keep_their_zone():
    zone = ZoneInfo("America/New_York")
    start = datetime(2024, 3, 1, 8, 59, tzinfo=zone)
    nxt = parse_schedule("0 9 * * *").next_after(start)
    assert nxt == datetime(2024, 3, 1, 9, 0, tzinfo=zone)


def test_next_is_strictly_after():
    s = parse_schedule("0 * * * *")
    assert s.next_after(datetime(2024, 1, 1, 5, 0, 0)) == datetime(2024, 1, 1, 6, 0, 0)
    assert s.next_after(datetime(2024, 1, 1, 5, 0, 0) - timedelta(seconds=1)) == datetime(
        2024, 1, 1, 5, 0, 0
    )


def test_leap_day_is_possible():
    assert runs(parse_schedule("0 0 29 2 *"), count=2) == [
        datetime(2024, 2, 29),
        datetime(2028, 2, 29),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty spec string"),
        ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
        ("0 * * * * *", "expected exactly 5 fields, found 6: [0 * * * * *]"),
        ("61 * * * *", "end of range (61) above maximum (59): 61"),
        ("* 24 * * *", "end of range (24) above maximum (23): 24"),
        ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
        ("* * * 13 *", "end of range (13) above maximum (12): 13"),
        ("* * * * 7", "end of range (7) above maximum (6): 7"),  # robfig: Sunday is 0 only
        ("5-1 * * * *", "beginning of range (5) beyond end of range (1): 5-1"),
        ("*/0 * * * *", "step of range should be a positive number: */0"),
        ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
        ("*/2/3 * * * *", "too many slashes: */2/3"),
        ("0 0 L * *", 'failed to parse int from "L"'),
        ("0 0 * * 5#2", 'failed to parse int from "5#2"'),
        ("0 0 * * FOO", 'failed to parse int from "FOO"'),
        ("-5 * * * *", 'failed to parse int from ""'),
        ("@Daily", "unrecognized descriptor: @Daily"),
        ("@reboot", "unrecognized descriptor: @reboot"),
        ("@every 5x", 'failed to parse duration @every 5x: unknown unit "x" in duration "5x"'),
        ("@every", "unrecognized descriptor: @every"),
        ("TZ=No/Where 0 0 * * *", "provided bad location No/Where"),
        ("0 0 31 2 *", "'0 0 31 2 *' never fires (no such day in the months given)"),
        ("0 0 31 4,6,9,11 *", "'0 0 31 4,6,9,11 *' never fires (no such day in the months given)"),
        (", * * * *", "minute field ',' selects nothing"),
    ],
)
def test_errors(text, message):
    with pytest.raises(ScheduleError) as info:
        parse_schedule(text)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


def test_impossible_day_with_weekday_is_fine():
    # With a weekday the 31st of February is just never chosen by the day-of-month side.
    s = parse_schedule("0 0 31 2 1")
    assert s.day_or is True
    assert runs(s, count=1) == [datetime(2024, 2, 5)]


@pytest.mark.parametrize(
    "expr",
    [
        "*/15 9-17 * JAN-MAR mon,wed,fri",
        "0 0 13 * 5",
        "30 6 1-7,15 * 0",
        "0 */4 * * *",
        "@weekly",
        "5/20 1 * * */2",
    ],
)
def test_celery_crontabs_fire_when_the_schedule_does(expr):
    from celery.schedules import crontab

    schedule = parse_schedule(expr)
    tabs = [crontab(**kwargs) for kwargs in schedule.crontab_kwargs()]

    def celery_fires(t: datetime) -> bool:  # Celery ANDs every field of one crontab
        return any(
            t.minute in tab.minute
            and t.hour in tab.hour
            and t.day in tab.day_of_month
            and t.month in tab.month_of_year
            and t.isoweekday() % 7 in tab.day_of_week
            for tab in tabs
        )

    start = datetime(2024, 1, 1)
    minutes = [start + timedelta(minutes=m) for m in range(1, 60 * 24 * 21)]
    expected = [t for t in minutes if celery_fires(t)]
    got, t = [], start
    while True:
        t = schedule.next_after(t)
        if t > minutes[-1]:
            break
        got.append(t)
    assert got == expected
    assert got  # the window holds runs of every schedule above
