"""Monitoring: Flower against the test broker lists the script runs a real worker node ran,
with their task name, arguments, state and runtime (read from Flower's HTTP API)."""

from __future__ import annotations

import ast
import os
import sys
import time
from pathlib import Path

import requests

from tests.support.processes import REPO_ROOT, free_port, regbot_env, spawn, stop_process

CONFIG = """\
version: 1
scripts:
  - name: say hello
    script: log("hello from the cluster")
  - name: broken
    script: error("this script fails")
"""


def test_flower_lists_script_runs_with_args_state_and_runtime(tmp_path, broker):
    config = tmp_path / "regbot.yml"
    config.write_text(CONFIG)
    port, metrics_port = free_port(), free_port()
    env = regbot_env(REGBOT_BROKER_URL=broker, FLOWER_UNAUTHENTICATED_API="true")
    procs = []
    try:
        procs.append(spawn(
            [sys.executable, "-m", "celery", "-A", "workers.app", "flower",
             "--address=127.0.0.1", f"--port={port}"],
            tmp_path / "flower.log", env=env, cwd=REPO_ROOT))
        base = f"http://127.0.0.1:{port}"
        _wait(lambda: _get(f"{base}/healthcheck") == "OK", 30, "Flower to answer", tmp_path)

        procs.append(spawn(
            [sys.executable, "-m", "regbot", "worker", "-c", str(config), "--transfers", "1",
             "-n", f"flower-test-{os.getpid()}", "--metrics-port", f"127.0.0.1:{metrics_port}"],
            tmp_path / "worker.log", env=env, cwd=REPO_ROOT))

        from workers.app import create_app
        from workers.settings import SCRIPT_TASK, ClusterSettings

        app = create_app(ClusterSettings.resolve(broker))
        sent = {app.send_task(SCRIPT_TASK, args=(name,)).id: name
                for name in ("say hello", "broken")}

        def listed():
            tasks = requests.get(f"{base}/api/tasks", timeout=5).json()
            done = {uid: tasks[uid] for uid in sent
                    if uid in tasks and tasks[uid].get("state") == "SUCCESS"
                    and tasks[uid].get("runtime") is not None}
            return done if len(done) == len(sent) else None

        tasks = _wait(listed, 60, "Flower to list both runs as finished", tmp_path)
        for uid, name in sent.items():
            task = tasks[uid]
            assert task["name"] == SCRIPT_TASK
            assert ast.literal_eval(task["args"]) == (name,)
            assert task["runtime"] > 0
            assert task["worker"].startswith("scripts@flower-test-")
        # the result Flower shows carries the script's own outcome
        results = {sent[uid]: ast.literal_eval(tasks[uid]["result"]) for uid in sent}
        assert results["say hello"]["status"] == "ok"
        assert results["broken"]["status"] == "failed"
        assert "this script fails" in results["broken"]["error"]
        # and one task's detail page of the API agrees
        uid = next(iter(sent))
        info = requests.get(f"{base}/api/task/info/{uid}", timeout=5).json()
        assert info["state"] == "SUCCESS" and info["name"] == SCRIPT_TASK
        # the node's Prometheus endpoint, alongside Flower, counted the same two runs
        from tests.test_metrics import scrape

        values = scrape(metrics_port)
        assert values['regbot_script_runs_total{status="ok"}'] == 1, values
        assert values['regbot_script_runs_total{status="failed"}'] == 1, values
        app.close()
    finally:
        for proc in reversed(procs):
            stop_process(proc, grace=20)


def _get(url: str) -> str | None:
    try:
        return requests.get(url, timeout=2).text
    except requests.RequestException:
        return None


def _wait(predicate, timeout: float, what: str, logs: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (requests.RequestException, ValueError):
            value = None
        if value:
            return value
        time.sleep(0.3)
    detail = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                       for p in sorted(logs.glob("*.log")))
    raise AssertionError(f"timed out waiting for {what}\n{detail}")
