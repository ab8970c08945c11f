"""RegbotScheduler driven in-process: Celery's beat tick() with a fake clock, a real
redis-server as broker and shared store; sent runs are read from the broker's queue list."""

from __future__ import annotations

import itertools
import logging
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from celery import Celery

from beat_schedule.scheduler import RegbotScheduler
from tests.support.beat import Captured, FakeClock, sent_runs, tick_until

_ids = itertools.count()


def _script(name: str, when: str) -> str:
    key = "interval" if when[0].isdigit() else "schedule"
    return f"  - name: {name}\n    {key}: \"{when}\"\n    script: log(\"{name}\")\n"


def write_config(path: Path, scripts: dict[str, str | None]) -> None:
    body = "version: 1\nscripts:\n"
    for name, when in scripts.items():
        body += _script(name, when) if when else f"  - name: {name}\n    script: log(1)\n"
    path.write_text(body)


class Beat:
    """One scheduler under test with its own queue and key prefix."""

    def __init__(self, redis_server, tmp_path: Path, clock: FakeClock, *, prefix: str,
                 queue: str, lock_ttl: float = 30.0, config: Path | None = None) -> None:
        self.app = Celery(f"beat-test-{next(_ids)}", broker=redis_server.url,
                          set_as_current=False)
        self.app.conf.broker_connection_retry_on_startup = False
        self.client = redis_server.client()
        self.config = config or tmp_path / "regbot.yml"
        self.clock = clock
        self.queue = queue
        self.scheduler = RegbotScheduler(
            self.app, config_file=str(self.config), store=self.client, prefix=prefix,
            queue=queue, lock_ttl=lock_ttl, nowfun=clock.now)

    def runs(self, script: str | None = None):
        return [r for r in sent_runs(self.client, self.queue) if script in (None, r.args[0])]

    def due_times(self, script: str) -> list[datetime]:
        return [datetime.fromisoformat(r.scheduled) for r in self.runs(script)]

    def close(self) -> None:
        self.scheduler.close()
        self.client.close()


@pytest.fixture
def names(request):
    """A key prefix and a queue name unique to this test."""
    tag = f"{os.getpid()}-{next(_ids)}"
    return {"prefix": f"beattest-{tag}", "queue": f"scripts-{tag}"}


@pytest.fixture
def make_beat(redis_server, tmp_path, names):
    beats: list[Beat] = []

    def make(clock: FakeClock, **kw) -> Beat:
        beat = Beat(redis_server, tmp_path, clock, **{**names, **kw})
        beats.append(beat)
        return beat

    yield make
    client = redis_server.client()
    for beat in beats:
        beat.close()
    client.delete(names["queue"])
    for key in client.scan_iter(f"{names['prefix']}:*"):
        client.delete(key)
    client.close()


def _minute_aligned_clock() -> FakeClock:
    now = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    return FakeClock(now + timedelta(seconds=7))  # 7 s past a minute: cron waits, @every does not


def test_interval_and_cron_entries_fire_at_their_times(make_beat, tmp_path):
    write_config(tmp_path / "regbot.yml", {
        "every 30s": "@every 30s",
        "interval 2m": "2m",
        "five minutes": "CRON_TZ=UTC */5 * * * *",
        "nothing": None,
    })
    clock = _minute_aligned_clock()
    start = clock.now()
    beat = make_beat(clock)
    tick_until(beat.scheduler, clock, start + timedelta(minutes=15, seconds=1))

    assert beat.due_times("every 30s") == [start + timedelta(seconds=30 * k) for k in range(1, 31)]
    assert beat.due_times("interval 2m") == [start + timedelta(minutes=2 * k) for k in range(1, 8)]
    first_five = start.replace(second=0) + timedelta(minutes=5 - start.minute % 5)
    assert beat.due_times("five minutes") == [first_five + timedelta(minutes=5 * k)
                                              for k in range(3)]
    runs = beat.runs()
    assert {r.task for r in runs} == {"regbot.script"}
    assert all(len(r.args) == 1 for r in runs)
    assert not beat.runs("nothing")


def test_runs_expire_when_the_next_is_due(make_beat, tmp_path):
    write_config(tmp_path / "regbot.yml", {"fast": "@every 5s", "slow": "@every 10m"})
    clock = _minute_aligned_clock()
    beat = make_beat(clock)
    tick_until(beat.scheduler, clock, clock.now() + timedelta(minutes=10, seconds=1))
    fast = beat.runs("fast")[0]
    slow = beat.runs("slow")[0]
    # at least a minute (clock skew between hosts), else one period
    assert datetime.fromisoformat(fast.expires) - datetime.fromisoformat(fast.scheduled) == \
        timedelta(seconds=60)
    assert datetime.fromisoformat(slow.expires) - datetime.fromisoformat(slow.scheduled) == \
        timedelta(minutes=10)


def test_a_stalled_beat_skips_missed_interval_runs_and_keeps_phase(make_beat, tmp_path):
    write_config(tmp_path / "regbot.yml", {"ten": "@every 10s"})
    clock = _minute_aligned_clock()
    start = clock.now()
    beat = make_beat(clock)
    tick_until(beat.scheduler, clock, start + timedelta(seconds=11))
    clock.advance(95)  # the beat process was stopped (SIGSTOP, a long GC) for 95 s
    tick_until(beat.scheduler, clock, start + timedelta(seconds=121))
    assert beat.due_times("ten") == [
        start + timedelta(seconds=10),
        start + timedelta(seconds=20),  # sent late, at +106: one run for all missed, not nine
        start + timedelta(seconds=110),
        start + timedelta(seconds=120),
    ]


def test_changed_config_file_adds_removes_and_reschedules(make_beat, tmp_path):
    config = tmp_path / "regbot.yml"
    write_config(config, {"keep": "@every 20s", "change": "@every 1h", "drop": "@every 10s"})
    clock = _minute_aligned_clock()
    start = clock.now()
    beat = make_beat(clock)
    tick_until(beat.scheduler, clock, start + timedelta(seconds=25))
    assert len(beat.due_times("drop")) == 2 and len(beat.due_times("keep")) == 1

    write_config(config, {"keep": "@every 20s", "change": "@every 15s", "new": "CRON_TZ=UTC * * * * *"})
    os.utime(config, ns=(time.time_ns(), time.time_ns() + 1_000_000_000))
    with Captured("regbot.beat") as captured:
        tick_until(beat.scheduler, clock, start + timedelta(seconds=96))
    reloaded = start + timedelta(seconds=25)
    assert beat.due_times("keep") == [start + timedelta(seconds=20 * k) for k in range(1, 5)]
    assert beat.due_times("drop") == [start + timedelta(seconds=10), start + timedelta(seconds=20)]
    change = beat.due_times("change")
    assert change[0] == reloaded.replace(microsecond=0) + timedelta(seconds=15)
    assert [b - a for a, b in itertools.pairwise(change)] == [timedelta(seconds=15)] * (len(change) - 1)
    next_minute = start.replace(second=0) + timedelta(minutes=1)
    assert beat.due_times("new") == [next_minute]
    logged = captured.messages(logging.INFO)
    assert ("Unscheduled script", {"script": "drop"}) in logged
    assert ("Rescheduled script", {"script": "change", "schedule": "@every 15s"}) in logged
    assert ("Scheduled script", {"script": "new", "schedule": "CRON_TZ=UTC * * * * *"}) in logged


def test_touched_file_with_same_content_keeps_the_schedule(make_beat, tmp_path):
    config = tmp_path / "regbot.yml"
    write_config(config, {"keep": "@every 20s"})
    clock = _minute_aligned_clock()
    start = clock.now()
    beat = make_beat(clock)
    tick_until(beat.scheduler, clock, start + timedelta(seconds=30))
    os.utime(config, ns=(time.time_ns(), time.time_ns() + 2_000_000_000))
    tick_until(beat.scheduler, clock, start + timedelta(seconds=61))
    assert beat.due_times("keep") == [start + timedelta(seconds=20 * k) for k in (1, 2, 3)]


def test_broken_config_keeps_the_running_schedule(make_beat, tmp_path):
    config = tmp_path / "regbot.yml"
    write_config(config, {"keep": "@every 20s"})
    clock = _minute_aligned_clock()
    start = clock.now()
    beat = make_beat(clock)
    tick_until(beat.scheduler, clock, start + timedelta(seconds=21))
    config.write_text("scripts:\n  - name: keep\n    schedule: \"61 * * * *\"\n    script: x\n")
    with Captured("regbot.beat") as captured:
        tick_until(beat.scheduler, clock, start + timedelta(seconds=41))
    assert beat.due_times("keep") == [start + timedelta(seconds=20), start + timedelta(seconds=40)]
    errors = captured.messages(logging.ERROR)
    assert errors and errors[0][0] == "Config reload failed, keeping the schedule"
    assert "61" in errors[0][1]["error"]


def test_reload_request_rereads_a_file_whose_stat_did_not_move(make_beat, tmp_path):
    """SIGHUP's path: same size, same mtime, same inode, new content."""
    config = tmp_path / "regbot.yml"
    write_config(config, {"a": "@every 20s"})
    before = os.stat(config)
    clock = _minute_aligned_clock()
    start = clock.now()
    beat = make_beat(clock)
    with open(config, "r+") as handle:  # rewrite in place: same inode and size
        text = handle.read()
        handle.seek(0)
        handle.write(text.replace("@every 20s", "@every 30s"))
    os.utime(config, ns=(before.st_atime_ns, before.st_mtime_ns))
    tick_until(beat.scheduler, clock, start + timedelta(seconds=21))
    assert beat.due_times("a") == [start + timedelta(seconds=20)]  # not noticed
    beat.scheduler.request_reload()
    tick_until(beat.scheduler, clock, start + timedelta(seconds=82))
    assert beat.due_times("a")[1:] == [start + timedelta(seconds=51), start + timedelta(seconds=81)]


def test_standby_sends_nothing_and_takes_over_in_phase(make_beat, tmp_path):
    write_config(tmp_path / "regbot.yml", {"ten": "@every 10s", "minute": "CRON_TZ=UTC * * * * *"})
    clock = _minute_aligned_clock()
    start = clock.now()
    first = make_beat(clock, lock_ttl=1.5)
    clock.advance(3)  # the second beat starts 3 s later: its own @every phase would differ
    second = make_beat(clock, lock_ttl=1.5)
    clock.set(start)
    for _ in range(200):  # both tick together for 100 s of fake time
        first.scheduler.tick()
        second.scheduler.tick()
        clock.advance(0.5)
    assert first.scheduler.is_leader and not second.scheduler.is_leader
    sent = first.due_times("ten")
    assert sent == [start + timedelta(seconds=10 * k) for k in range(1, 10)]  # ticks to +99.5

    # the leader dies without releasing its lock: the standby takes over once it expires
    died_at = clock.now()
    time.sleep(1.6)
    for _ in range(120):
        second.scheduler.tick()
        clock.advance(0.5)
    assert second.scheduler.is_leader
    times = second.due_times("ten")
    assert times == sorted(set(times)), "a due time was sent twice"
    # the rhythm continues from the dead leader's last run: start + 10 k, no gap, no shift
    assert times == [start + timedelta(seconds=10 * k) for k in range(1, 16)]
    minutes = second.due_times("minute")
    assert minutes == sorted(set(minutes))
    assert minutes[-1] == (died_at + timedelta(seconds=60)).replace(second=0)


def test_graceful_stop_hands_over_at_once(make_beat, tmp_path):
    write_config(tmp_path / "regbot.yml", {"five": "@every 5s"})
    clock = _minute_aligned_clock()
    start = clock.now()
    first = make_beat(clock, lock_ttl=30)
    second = make_beat(clock, lock_ttl=30)
    first.scheduler.tick()
    second.scheduler.tick()
    assert first.scheduler.is_leader and not second.scheduler.is_leader
    tick_until(first.scheduler, clock, start + timedelta(seconds=12))
    first.scheduler.close()  # SIGTERM: the lock is released, no 30 s wait
    tick_until(second.scheduler, clock, start + timedelta(seconds=26))
    assert second.scheduler.is_leader
    assert second.due_times("five") == [start + timedelta(seconds=5 * k) for k in range(1, 6)]


def test_two_beats_that_both_think_they_lead_send_each_run_once(make_beat, tmp_path, monkeypatch):
    """The second line of defence: a beat stalled past the lock ttl still believes it leads
    until its next tick; the per-run claim keeps the run it sends from being a second one."""
    write_config(tmp_path / "regbot.yml", {"ten": "@every 10s", "minute": "CRON_TZ=UTC * * * * *"})
    clock = _minute_aligned_clock()
    start = clock.now()
    first = make_beat(clock)
    second = make_beat(clock)
    for beat in (first, second):
        monkeypatch.setattr(beat.scheduler, "_ensure_leader", lambda: True)
    with Captured("regbot.beat") as captured:
        for _ in range(300):
            first.scheduler.tick()
            second.scheduler.tick()
            clock.advance(0.5)
    ten = first.due_times("ten")
    assert ten == [start + timedelta(seconds=10 * k) for k in range(1, 15)]  # ticks to +149.5
    minutes = first.due_times("minute")
    assert len(minutes) == 2 and minutes == sorted(set(minutes))
    skipped = [m for m, _ in captured.messages(logging.INFO) if m == "Run already sent by another beat"]
    assert len(skipped) == len(ten) + len(minutes)


def test_new_leader_ignores_stale_state_after_a_long_stop(make_beat, tmp_path):
    """A beat taking over after every beat was gone for long starts afresh: the first
    @every run one interval later, no catch-up run at once (neither from the shared record
    nor from its own start long ago)."""
    write_config(tmp_path / "regbot.yml", {"ten": "@every 10s"})
    clock = _minute_aligned_clock()
    start = clock.now()
    first = make_beat(clock, lock_ttl=2)
    second = make_beat(clock, lock_ttl=2)  # started with the first, then stopped (SIGSTOP)
    tick_until(first.scheduler, clock, start + timedelta(seconds=21))
    first.scheduler.close()
    clock.advance(3600)
    restarted = clock.now().replace(microsecond=0)
    tick_until(second.scheduler, clock, restarted + timedelta(seconds=21))
    assert second.due_times("ten")[2:] == [restarted + timedelta(seconds=10),
                                           restarted + timedelta(seconds=20)]


def test_or_rule_schedule_fires_each_matching_day_once(redis_server, tmp_path, names):
    """Day of month OR day of week, driven through tick(): a date matching both fires once;
    every run is where regbot's own (robfig-compatible) schedule puts it."""
    from regbot.cron import parse_schedule

    clock = FakeClock(datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0))
    both = clock.now() + timedelta(days=3)  # this date matches the day of month and weekday
    text = f"CRON_TZ=UTC 30 6 {both.day} * {both.isoweekday() % 7}"
    write_config(tmp_path / "regbot.yml", {"either": text})
    app = Celery(f"beat-test-{next(_ids)}", broker=redis_server.url, set_as_current=False)
    client = redis_server.client()
    # a long lock ttl lets the beat sleep until each due time instead of 2 s at a time
    scheduler = RegbotScheduler(app, config_file=str(tmp_path / "regbot.yml"), store=client,
                                nowfun=clock.now, lock_ttl=10**6, max_interval=10**5,
                                **names)
    try:
        start = clock.now()
        ticks = tick_until(scheduler, clock, start + timedelta(days=45))
        assert ticks < 2000
        sent = [datetime.fromisoformat(r.scheduled) for r in sent_runs(client, names["queue"])]
        expected, last = [], start
        reference = parse_schedule(text)
        while (last := reference.next_after(last)) <= start + timedelta(days=45):
            expected.append(last)
        assert sent == expected
        assert sent.count(both.replace(hour=6, minute=30)) == 1
        assert len(sent) >= 6  # a weekly run at least six times in 45 days
    finally:
        scheduler.close()
        client.delete(names["queue"])
        for key in client.scan_iter(f"{names['prefix']}:*"):
            client.delete(key)
        client.close()
