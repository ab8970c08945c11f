"""beat_schedule.entries and CronSchedule: regbot.yml scripts as Celery beat entries (no services needed)."""

from __future__ import annotations

import logging
import pickle
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from celery import Celery

from beat_schedule.cron_schedule import CronSchedule
from beat_schedule.entries import SCRIPT_QUEUE, SCRIPT_TASK, beat_schedule, build_entries
from regbot.config import parse_config
from regbot.cron import local_zone, parse_schedule
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


def _cron(text: str) -> CronSchedule:
    return CronSchedule(parse_schedule(text), app=APP)


def test_every_entry_runs_on_regbots_own_schedule_engine(entries):
    for name, entry in entries.items():
        sched = entry["schedule"]
        assert type(sched) is CronSchedule, name
        assert sched.cron.text == entry["regbot_schedule"]


def test_interval_is_a_fixed_period_from_start(entries):
    sched = entries["hourly by interval"]["schedule"]
    assert sched.period == timedelta(hours=1)
    started = datetime(2024, 5, 1, 12, 0, 7, tzinfo=UTC)
    # robfig @every: the first run one interval after start
    assert sched.due_after(started) == started + timedelta(hours=1)
    assert entries["hourly by interval"]["regbot_schedule"] == "@every 1h0m0s"


def test_every_descriptor_is_an_interval(entries):
    assert entries["every 90s"]["schedule"].period == timedelta(seconds=90)
    # robfig rounds @every to whole seconds, at least one
    assert _cron("@every 1500ms").period == timedelta(seconds=1)
    assert _cron("@every 10ms").period == timedelta(seconds=1)


def test_cron_fields_run_in_the_hosts_local_zone(entries):
    sched = entries["every five minutes"]["schedule"]
    assert sched.period is None
    assert sched.cron.zone == local_zone()
    last = datetime(2024, 5, 1, 12, 3, 59, tzinfo=UTC)
    assert sched.due_after(last) == sched.cron.next_run_after(last)
    assert sched.due_after(last).astimezone(local_zone()).minute % 5 == 0


def test_descriptors_run_when_their_fields_say():
    monday_noon = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)
    assert _cron("CRON_TZ=UTC @daily").due_after(monday_noon) == datetime(2024, 1, 2, tzinfo=UTC)
    assert _cron("CRON_TZ=UTC @weekly").due_after(monday_noon) == datetime(2024, 1, 7, tzinfo=UTC)
    assert _cron("CRON_TZ=UTC @hourly").due_after(monday_noon) == datetime(2024, 1, 1, 13, tzinfo=UTC)
    assert _cron("CRON_TZ=UTC @yearly").due_after(monday_noon) == datetime(2025, 1, 1, tzinfo=UTC)


def test_timezone_prefix_sets_the_zone(entries):
    sched = entries["tokyo morning"]["schedule"]
    assert sched.cron.zone == ZoneInfo("Asia/Tokyo")
    friday_night_utc = datetime(2024, 5, 3, 23, 30, tzinfo=UTC)  # Sat 08:30 in Tokyo
    # next weekday 09:00 Tokyo is Monday 6 May 09:00 JST = 00:00 UTC
    assert sched.due_after(friday_night_utc) == datetime(2024, 5, 6, 0, 0, tzinfo=UTC)


def test_naive_last_run_is_taken_as_utc():
    """An old persisted schedule may hold naive times: Celery's convention, UTC."""
    sched = _cron("CRON_TZ=UTC 0 * * * *")
    assert sched.due_after(datetime(2024, 1, 1, 5, 30)) == datetime(2024, 1, 1, 6, tzinfo=UTC)


def _run_times(sched, start: datetime, count: int) -> list[datetime]:
    """The run times Celery's beat would use: last_run_at = each run in turn."""
    times, last = [], start
    for _ in range(count):
        last = sched.due_after(last)
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
    sched = CronSchedule(parsed, app=APP)
    start = datetime(2024, 1, 1, 0, 0, 30, tzinfo=UTC)  # 2024-01-01 is a Monday
    ours = _run_times(sched, start, 60)
    expected, last = [], start
    for _ in range(60):
        last = parsed.next_run_after(last)
        expected.append(last)
    assert [t.astimezone(UTC) for t in ours] == [t.astimezone(UTC) for t in expected]
    assert len(set(ours)) == len(ours)


def test_or_rule_day_matching_both_fires_once():
    """Monday 1 January 2024 matches both day fields: one run that minute, not two."""
    sched = _cron("CRON_TZ=UTC 30 6 1 * mon")
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
    assert entries["a"]["schedule"].period == timedelta(minutes=15)
    assert entries["b"]["schedule"].period is None


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
