"""Real `regbot beat` processes against a real redis-server: config reload on change and on
SIGHUP, and two beats at once (one sends, the other stands by and takes over). What a beat
sends is read from the broker's `scripts` list; no worker runs."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.support.beat import sent_runs
from tests.support.processes import REPO_ROOT, regbot_env, spawn, stop_process
from tests.support.redis_server import BROKER_DB


@pytest.fixture
def queue(redis_server):
    client = redis_server.client(BROKER_DB)
    yield lambda: sent_runs(client, "scripts")
    client.close()


class BeatProcess:
    def __init__(self, config: Path, broker: str, log: Path, *extra: str) -> None:
        self.log_path = log
        self.proc = spawn(
            [sys.executable, "-m", "regbot", "beat", "-c", str(config), "--broker", broker,
             *extra],
            log, env=regbot_env(), cwd=REPO_ROOT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        return stop_process(self.proc, grace=15)


@pytest.fixture
def beats(tmp_path):
    started: list[BeatProcess] = []

    def start(config: Path, broker: str, *extra: str) -> BeatProcess:
        beat = BeatProcess(config, broker, tmp_path / f"beat{len(started)}.log", *extra)
        started.append(beat)
        return beat

    yield start
    for beat in started:
        beat.stop()


def wait_for(predicate, timeout: float, what: str, beat: BeatProcess | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if beat is not None and beat.proc.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}" + (f"; log:\n{beat.log()}" if beat else ""))


def config_text(scripts: dict[str, str]) -> str:
    body = "version: 1\nscripts:\n"
    for name, when in scripts.items():
        body += f'  - name: {name}\n    schedule: "{when}"\n    script: log("{name}")\n'
    return body


def count(runs, script: str) -> int:
    return sum(1 for r in runs if r.args == (script,))


def test_changed_config_is_picked_up_without_restart(tmp_path, broker, queue, beats):
    config = tmp_path / "regbot.yml"
    config.write_text(config_text({"old": "@every 1s"}))
    beat = beats(config, broker)
    wait_for(lambda: count(queue(), "old") >= 2, 15, "runs of the first script", beat)

    config.write_text(config_text({"new": "@every 1s", "hourly": "@hourly"}))
    wait_for(lambda: count(queue(), "new") >= 2, 10, "runs of the added script", beat)
    old_runs = count(queue(), "old")
    time.sleep(2.5)
    assert count(queue(), "old") == old_runs, "a removed script still fires"
    assert count(queue(), "new") >= 4
    assert count(queue(), "hourly") == 0
    log = beat.log()
    assert "Config reloaded" in log and "Unscheduled script" in log and "script=old" in log
    assert beat.stop() == 0
    assert "Released the beat lock" in beat.log()


def test_sighup_rereads_a_config_whose_file_looks_unchanged(tmp_path, broker, queue, beats):
    config = tmp_path / "regbot.yml"
    config.write_text(config_text({"aaaa": "@every 9h"}))
    before = os.stat(config)
    beat = beats(config, broker)
    wait_for(lambda: "Beat starting" in beat.log(), 15, "the beat to start", beat)
    # Same size, same mtime, same inode: a stat poll cannot see this change.
    with open(config, "r+") as handle:
        text = handle.read().replace("aaaa", "bbbb").replace("@every 9h", "@every 1s")
        handle.seek(0)
        handle.write(text)
    os.utime(config, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(config).st_size == before.st_size
    time.sleep(3)
    assert queue() == [], "the change was seen without SIGHUP"
    beat.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: count(queue(), "bbbb") >= 2, 10, "runs after SIGHUP", beat)
    assert "signal=SIGHUP" in beat.log()


def test_two_beats_send_each_run_once_and_fail_over(tmp_path, broker, queue, beats):
    config = tmp_path / "regbot.yml"
    config.write_text(config_text({"tick": "@every 1s"}))
    first = beats(config, broker, "--lock-ttl", "2")
    wait_for(lambda: count(queue(), "tick") >= 1, 15, "the first beat to send", first)
    second = beats(config, broker, "--lock-ttl", "2")
    wait_for(lambda: "standing by" in second.log(), 15, "the second beat to stand by", second)
    time.sleep(3)

    def check_unique() -> list[datetime]:
        due = Counter(r.scheduled for r in queue())
        twice = {when: n for when, n in due.items() if n > 1}
        assert not twice, f"runs sent more than once: {twice}"
        return sorted(datetime.fromisoformat(when) for when in due)

    before = check_unique()
    assert "Sent scheduled run" not in second.log()

    first.proc.send_signal(signal.SIGKILL)  # dies holding the lock
    first.proc.wait()
    killed = len(before)
    wait_for(lambda: "Holding the beat lock" in second.log(), 10, "the standby to take over",
             second)
    wait_for(lambda: len(queue()) >= killed + 3, 10, "runs from the new leader", second)
    after = check_unique()
    # the new leader continued the dead one's rhythm: whole-second due times, each once
    assert all(b - a >= timedelta(seconds=1) for a, b in zip(after, after[1:], strict=False))
    assert after[: len(before)] == before
    assert "Sent scheduled run" in second.log()
