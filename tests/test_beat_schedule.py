"""beat_schedule.schedule: regbot.yml scripts as Celery beat entries (no services needed)."""

from __future__ import annotations

import logging
import pickle
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from celery import Celery
from celery.schedules import crontab, schedule

from beat_schedule.schedule import (
    SCRIPT_QUEUE,
    SCRIPT_TASK,
    AnyCrontab,
    ZonedCrontab,
    beat_schedule,
    build_entries,
    celery_schedule,
    local_zone,
    next_due,
)
from regbot.config import parse_config
from regbot.schedule import parse_schedule
from tests.support.beat import Captured

APP = Celery("beat-schedule-tests", set_as_current=False)

CONFIG = """\
version: 1
creds:
  - registry: registry.example.com
    user: alice
    pass: hunter2-secret
defaults:
  parallel: 2
scripts:
  - name: hourly by interval
    interval: 60m
    script: log("a")
  - name: every five minutes
    schedule: "*/5 * * * *"
    script: log("b")
  - name: every 90s
    schedule: "@every 90s"
    script: log("c")
  - name: nightly
    schedule: "@daily"
    script: log("d")
  - name: first or monday
    schedule: "30 6 1 * mon"
    script: log("e")
  - name: tokyo morning
    schedule: "CRON_TZ=Asia/Tokyo 0 9 * * 1-5"
    script: log("f")
  - name: manual only
    script: log("g")
"""


@pytest.fixture(scope="module")
def entries():
    return build_entries(parse_config(CONFIG), app=APP)


def test_entries_are_named_after_scripts_and_carry_only_the_name(entries):
    assert set(entries) == {"hourly by interval", "every five minutes", "every 90s", "nightly",
                            "first or monday", "tokyo morning"}
    for name, entry in entries.items():
        assert entry["task"] == SCRIPT_TASK
        assert entry["args"] == (name,)
        assert entry["options"] == {"queue": SCRIPT_QUEUE}
        assert entry["kwargs"] == {}
    # nothing from creds can reach a message: the whole entry table is free of the password
    assert "hunter2-secret" not in repr(entries)
    assert "alice" not in repr(entries)


def test_interval_is_a_fixed_schedule_from_start(entries):
    sched = entries["hourly by interval"]["schedule"]
    assert type(sched) is schedule
    assert sched.run_every == timedelta(hours=1)
    started = datetime(2024, 5, 1, 12, 0, 7, tzinfo=UTC)
    # robfig @every: the first run one interval after start
    assert next_due(sched, started) == started + timedelta(hours=1)
    assert entries["hourly by interval"]["regbot_schedule"] == "@every 1h0m0s"


def test_every_descriptor_is_an_interval(entries):
    sched = entries["every 90s"]["schedule"]
    assert type(sched) is schedule and sched.run_every == timedelta(seconds=90)
    # robfig rounds @every to whole seconds, at least one
    assert celery_schedule(parse_schedule("@every 1500ms")).run_every == timedelta(seconds=1)
    assert celery_schedule(parse_schedule("@every 10ms")).run_every == timedelta(seconds=1)


def test_cron_fields_become_a_crontab_in_local_time(entries):
    sched = entries["every five minutes"]["schedule"]
    assert isinstance(sched, ZonedCrontab)
    assert sched.minute == set(range(0, 60, 5))
    assert sched.hour == set(range(24)) and sched.day_of_week == set(range(7))
    assert sched.tz is local_zone()


def test_descriptors_become_crontabs(entries):
    nightly = entries["nightly"]["schedule"]
    assert isinstance(nightly, crontab)
    assert (nightly.minute, nightly.hour) == ({0}, {0})
    weekly = celery_schedule(parse_schedule("@weekly"))
    assert weekly.day_of_week == {0} and weekly.hour == {0} and weekly.minute == {0}
    hourly = celery_schedule(parse_schedule("@hourly"))
    assert hourly.minute == {0} and hourly.hour == set(range(24))
    yearly = celery_schedule(parse_schedule("@yearly"))
    assert yearly.month_of_year == {1} and yearly.day_of_month == {1}


def test_timezone_prefix_sets_the_crontab_zone(entries):
    sched = entries["tokyo morning"]["schedule"]
    assert sched.tz == ZoneInfo("Asia/Tokyo")
    friday_night_utc = datetime(2024, 5, 3, 23, 30, tzinfo=UTC)  # Sat 08:30 in Tokyo
    # next weekday 09:00 Tokyo is Monday 6 May 09:00 JST = 00:00 UTC
    assert next_due(sched, friday_night_utc) == datetime(2024, 5, 6, 0, 0, tzinfo=UTC)


def test_day_of_month_or_day_of_week_is_one_entry_of_two_crontabs(entries):
    sched = entries["first or monday"]["schedule"]
    assert isinstance(sched, AnyCrontab)
    parts = sched.crontabs
    assert len(parts) == 2
    assert {frozenset(p.day_of_month) for p in parts} == {frozenset({1}), frozenset(range(1, 32))}
    assert {frozenset(p.day_of_week) for p in parts} == {frozenset(range(7)), frozenset({1})}


def _run_times(sched, start: datetime, count: int) -> list[datetime]:
    """The run times Celery's beat would use: last_run_at = each run in turn."""
    times, last = [], start
    for _ in range(count):
        last = next_due(sched, last)
        times.append(last)
    return times


@pytest.mark.parametrize("text", [
    "30 6 1 * mon",          # the OR rule: the 1st of a month, and every Monday
    "0 12 1,15 * fri",       # OR rule with a list
    "*/20 8-9 * * *",
    "0 0 29 2 *",            # leap days only
    "@weekly",
    "CRON_TZ=America/New_York 30 2 * * *",  # crosses the March DST gap
])
def test_run_times_match_robfig_semantics(text):
    """Over many runs the Celery schedule fires exactly when regbot's own (robfig-compatible,
    croniter-based) Schedule does: same times, none twice."""
    parsed = parse_schedule(text)
    sched = celery_schedule(parsed, app=APP)
    start = datetime(2024, 1, 1, 0, 0, 30, tzinfo=UTC)  # 2024-01-01 is a Monday
    ours = _run_times(sched, start, 60)
    expected, last = [], start
    for _ in range(60):
        last = parsed.next_after(last)
        expected.append(last)
    assert [t.astimezone(UTC) for t in ours] == [t.astimezone(UTC) for t in expected]
    assert len(set(ours)) == len(ours)


def test_or_rule_day_matching_both_fires_once():
    """Monday 1 January 2024 matches both crontabs: one run that minute, not two."""
    sched = celery_schedule(parse_schedule("CRON_TZ=UTC 30 6 1 * mon"), app=APP)
    assert isinstance(sched, AnyCrontab)
    runs = _run_times(sched, datetime(2023, 12, 31, 12, 0, tzinfo=UTC), 6)
    assert runs == [
        datetime(2024, 1, 1, 6, 30, tzinfo=UTC),   # the 1st and a Monday: once
        datetime(2024, 1, 8, 6, 30, tzinfo=UTC),
        datetime(2024, 1, 15, 6, 30, tzinfo=UTC),
        datetime(2024, 1, 22, 6, 30, tzinfo=UTC),
        datetime(2024, 1, 29, 6, 30, tzinfo=UTC),
        datetime(2024, 2, 1, 6, 30, tzinfo=UTC),   # a Thursday, by day of month
    ]
    # is_due at the shared minute says "due"; once run, the next is a week later
    fired_at = datetime(2024, 1, 1, 6, 30, 0, 500000, tzinfo=UTC)
    clock = Celery("clock", set_as_current=False)
    clock.now = lambda: fired_at
    sched.app = clock
    due, _ = sched.is_due(fired_at - timedelta(minutes=1))
    assert due
    due_again, wait = sched.is_due(fired_at)
    assert not due_again and wait == pytest.approx(7 * 24 * 3600 - 0.5)


def test_unscheduled_script_is_logged_as_error_and_left_out():
    with Captured("regbot.beat") as captured:
        entries = build_entries(parse_config(CONFIG), app=APP)
    assert "manual only" not in entries
    errors = captured.messages(logging.ERROR)
    assert ("No schedule or interval found, ignoring", {"script": "manual only"}) in errors


def test_default_interval_applies_to_scripts_without_a_schedule():
    config = parse_config("""\
defaults:
  interval: 15m
scripts:
  - name: a
    script: log("a")
  - name: b
    schedule: "@hourly"
    script: log("b")
""")
    entries = build_entries(config, app=APP)
    assert entries["a"]["schedule"].run_every == timedelta(minutes=15)
    assert isinstance(entries["b"]["schedule"], crontab)


def test_plain_beat_schedule_for_stock_celery_beat():
    table = beat_schedule(parse_config(CONFIG), app=APP)
    assert all(set(entry) == {"task", "schedule", "args", "kwargs", "options"}
               for entry in table.values())
    app = Celery("stock", set_as_current=False)
    app.conf.beat_schedule = table
    from celery.beat import Scheduler

    scheduler = Scheduler(app, lazy=False)
    assert set(table) <= set(scheduler.schedule)


def test_dry_run_beat_sends_dry_run_runs():
    entries = build_entries(parse_config(CONFIG), app=APP, dry_run=True)
    assert all(entry["kwargs"] == {"dry_run": True} for entry in entries.values())


def test_schedules_pickle_for_persistent_schedulers(entries):
    for entry in entries.values():
        clone = pickle.loads(pickle.dumps(entry["schedule"]))
        assert clone == entry["schedule"]
