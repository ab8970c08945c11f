"""Monitoring: Flower against the test broker lists the script runs a real worker node ran,
with their task name, arguments, state and runtime (read from Flower's HTTP API)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.support.registry import free_port

ROOT = Path(__file__).resolve().parent.parent
DB = 15  # the beat and flower tests' database on the session redis-server (flushed per test)

CONFIG = """\
version: 1
scripts:
  - name: say hello
    script: log("hello from the cluster")
  - name: broken
    script: error("this script fails")
"""


@pytest.fixture
def broker(redis_server):
    client = redis_server.client(DB)
    client.flushdb()
    yield redis_server.url_for(DB)
    client.flushdb()
    client.close()


def _env(broker: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REGBOT_BROKER_URL": broker,
           "FLOWER_UNAUTHENTICATED_API": "true"}
    for name in ("REGBOT_RESULT_BACKEND", "REGBOT_REDIS_URL"):
        env.pop(name, None)
    return env


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_flower_lists_script_runs_with_args_state_and_runtime(tmp_path, broker):
    config = tmp_path / "regbot.yml"
    config.write_text(CONFIG)
    port = free_port()
    env = _env(broker)
    procs = []
    try:
        procs.append(_spawn(
            [sys.executable, "-m", "celery", "-A", "workers.app", "flower",
             "--address=127.0.0.1", f"--port={port}"], env, tmp_path / "flower.log"))
        base = f"http://127.0.0.1:{port}"
        _wait(lambda: _get(f"{base}/healthcheck") == "OK", 30, "Flower to answer", tmp_path)

        procs.append(_spawn(
            [sys.executable, "-m", "regbot", "worker", "-c", str(config), "--transfers", "1",
             "-n", f"flower-test-{os.getpid()}"], env, tmp_path / "worker.log"))

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
        app.close()
    finally:
        for proc in reversed(procs):
            _stop(proc)


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
