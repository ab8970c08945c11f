"""One cron engine: the beat sends each run exactly when the embedded server would start it.

Both are driven by a fake clock over weeks holding DST changes, for schedules where two
engines would most likely part ways: wall-clock times in a DST gap or repeat (with
CRON_TZ=, and in the host's local zone), robfig's day-of-month OR day-of-week rule, an
`@every` period that does not divide a day, and business-hours steps. The beat is the real
RegbotScheduler (Celery's tick, a real Redis as broker and store); the embedded side is
DueRuns, the bookkeeping of `regbot server`'s loop.
"""

from __future__ import annotations

import itertools
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import tzlocal
from celery import Celery

from beat_schedule.scheduler import RegbotScheduler
from regbot.config import parse_config
from regbot.embedded import DueRuns
from tests.support.beat import FakeClock, sent_runs, tick_until

_ids = itertools.count()

TRICKY = {
    "berlin night": "CRON_TZ=Europe/Berlin 30 2 * * *",     # 02:30 skipped in spring, twice in autumn
    "new york night": "CRON_TZ=America/New_York */30 1-3 * * *",
    "first or monday": "0 0 1 * 1",                          # the 1st of a month OR a Monday
    "ninety minutes": "@every 90m",                          # 16 a day, phase crosses midnight
    "office hours": "*/15 9-17 * * MON-FRI",
}

# Windows (in the future, so the runs' expiry times are too) around 2027's DST changes:
# spring: New York 14 March, Berlin 28 March, and 1 April (a Thursday) for the OR rule;
# autumn: Berlin 31 October, New York 7 November, and 1 November, a Monday (both days match).
WINDOWS = {
    "spring": (datetime(2027, 3, 12, 22, 0, 0, tzinfo=UTC), datetime(2027, 4, 2, 6, 0, tzinfo=UTC)),
    "autumn": (datetime(2027, 10, 29, 9, 7, 3, tzinfo=UTC), datetime(2027, 11, 9, 6, 0, tzinfo=UTC)),
}


def _config_text() -> str:
    body = "version: 1\nscripts:\n"
    for name, when in TRICKY.items():
        body += f'  - name: {name}\n    schedule: "{when}"\n    script: log("{name}")\n'
    return body


@pytest.fixture(params=["UTC", "America/New_York"])
def host_zone(request, monkeypatch):
    """The beat host's (and the server's) local zone, for the schedules without CRON_TZ=."""
    monkeypatch.setenv("TZ", request.param)
    tzlocal.reload_localzone()
    yield request.param
    monkeypatch.undo()
    tzlocal.reload_localzone()


def embedded_runs(start: datetime, end: datetime) -> list[tuple[str, datetime]]:
    """(script, time) for each start of the embedded server's loop until `end`, its fake
    clock jumping to each next due time."""
    due = DueRuns(parse_config(_config_text()).scripts, start)
    runs = []
    while (now := due.next_due()) is not None and now <= end:
        runs.extend((script.name, now) for script in due.pop_due(now))
    return runs


def beat_runs(redis_server, tmp_path: Path, start: datetime, end: datetime) -> list[tuple[str, datetime]]:
    """(script, due time) for each run the beat sent until `end`, in sending order."""
    config = tmp_path / "regbot.yml"
    config.write_text(_config_text())
    tag = f"{os.getpid()}-{next(_ids)}"
    queue, prefix = f"scripts-{tag}", f"beattest-{tag}"
    app = Celery(f"beat-vs-embedded-{tag}", broker=redis_server.url, set_as_current=False)
    app.conf.broker_connection_retry_on_startup = False
    client = redis_server.client()
    clock = FakeClock(start)
    # A long lock ttl lets the beat sleep until each due time instead of seconds at a time.
    scheduler = RegbotScheduler(app, config_file=str(config), store=client, prefix=prefix,
                                queue=queue, nowfun=clock.now, lock_ttl=10**6,
                                max_interval=10**5)
    try:
        tick_until(scheduler, clock, end + timedelta(seconds=1))
        return [(run.args[0], datetime.fromisoformat(run.scheduled))
                for run in sent_runs(client, queue)]
    finally:
        scheduler.close()
        client.delete(queue)
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
        client.close()


@pytest.mark.parametrize("window", WINDOWS)
def test_beat_sends_every_run_when_the_embedded_server_starts_it(
    redis_server, tmp_path, host_zone, window
):
    start, end = WINDOWS[window]
    expected = embedded_runs(start, end)
    sent = beat_runs(redis_server, tmp_path, start, end)

    for name in TRICKY:
        ours = [when for script, when in sent if script == name]
        theirs = [when for script, when in expected if script == name]
        assert ours == theirs, name
        assert len(set(ours)) == len(ours), f"{name}: a run sent twice"
    assert sorted(sent, key=_by_time) == sorted(expected, key=_by_time)  # nothing else sent
    assert len(expected) > 400

    # The windows do hold what makes these schedules tricky, and no run is lost to them.
    def on(name: str, zone: str, day: str) -> list[str]:
        return [when.astimezone(ZoneInfo(zone)).isoformat() for s, when in expected
                if s == name and when.astimezone(ZoneInfo(zone)).date().isoformat() == day]

    if window == "spring":
        assert len(on("berlin night", "Europe/Berlin", "2027-03-28")) == 1  # 02:30 never comes
        assert on("new york night", "America/New_York", "2027-03-14")  # 02:xx never comes
        assert on("first or monday", host_zone, "2027-04-01")  # a Thursday, by day of month
    else:
        assert len(on("berlin night", "Europe/Berlin", "2027-10-31")) == 2  # 02:30 comes twice
        assert on("new york night", "America/New_York", "2027-11-07")
        assert len(on("first or monday", host_zone, "2027-11-01")) == 1  # both days match: once


def _by_time(run: tuple[str, datetime]) -> tuple[datetime, str]:
    return run[1], run[0]
