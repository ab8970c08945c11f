"""`regbot server` on a cluster: a beat and a worker node in one command, against a real
redis-server. A script on `@every 2s` that runs about 3 s: it runs several times, the runs
that arrive while one is going are skipped, and no two runs ever overlap."""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime, timedelta

import pytest

from tests.support.processes import REPO_ROOT, free_port, regbot_env, spawn, stop_process
from tests.support.redis_server import BROKER_DB

CONFIG = """\
version: 1
defaults:
  parallel: 2
scripts:
  - name: slow
    schedule: "@every 2s"
    script: |
      log("slow run starting")
      local t = os.time()
      while os.time() - t < 3 do end
  - name: manual
    script: log("never scheduled")
"""


def script_results(client) -> list[dict]:
    """Every finished regbot.script result in the backend, with its finish time."""
    out = []
    for key in client.scan_iter("celery-task-meta-*"):
        meta = json.loads(client.get(key))
        if meta.get("status") == "SUCCESS" and isinstance(meta.get("result"), dict):
            out.append({**meta["result"], "done": datetime.fromisoformat(meta["date_done"])})
    return out


def test_server_runs_beat_and_worker_and_skips_overlapping_runs(tmp_path, redis_server, broker):
    config = tmp_path / "regbot.yml"
    config.write_text(CONFIG)
    log_path = tmp_path / "server.log"
    client = redis_server.client(BROKER_DB)
    port = free_port()
    proc = spawn(
        [sys.executable, "-m", "regbot", "server", "-c", str(config), "--broker", broker,
         "--transfers", "1", "-n", f"server-test-{os.getpid()}",
         "--metrics-port", f"127.0.0.1:{port}"],
        log_path, env=regbot_env(), cwd=REPO_ROOT)
    try:
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and proc.poll() is None:
            results = script_results(client)
            statuses = [r["status"] for r in results]
            if statuses.count("ok") >= 2 and statuses.count("skipped") >= 1:
                break
            time.sleep(0.3)
        else:
            pytest.fail(f"no two runs and one skip within 45 s; log:\n{log_path.read_text()}")
        # the node's endpoint counts the runs its scripts pool made (recorded before
        # their results were stored, so at least those seen)
        from tests.test_metrics import scrape

        runs = scrape(port).get('regbot_script_runs_total{status="ok"}', 0)
        assert runs >= statuses.count("ok"), (runs, statuses)
    finally:
        stop_process(proc, grace=30)
        client.close()

    log = log_path.read_text(errors="replace")
    assert "Sent scheduled run" in log and "Holding the beat lock" in log
    assert "No schedule or interval found, ignoring" in log and "script=manual" in log
    assert "Skipping run, previous run still going" in log
    assert "Released the beat lock" in log
    assert {r["name"] for r in results} == {"slow"}
    ok = sorted((r for r in results if r["status"] == "ok"), key=lambda r: r["done"])
    assert all(r["duration"] >= 2.0 for r in ok)
    # no overlap: each run started after the previous one finished
    for before, after in zip(ok, ok[1:], strict=False):
        started = after["done"] - timedelta(seconds=after["duration"])
        assert started >= before["done"] - timedelta(milliseconds=50), (before, after)
