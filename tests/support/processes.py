"""Child processes for tests: free loopback ports, waiting for a port, starting a process
with its output in a log file, and stopping it (SIGTERM, then SIGKILL after a grace period)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 15.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def spawn(argv: list[str], log: Path, *, env: dict[str, str] | None = None,
          cwd: Path | str | None = None) -> subprocess.Popen:
    """Start `argv` with stdout and stderr appended to a fresh `log` file."""
    with open(log, "wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)


def stop_process(proc: subprocess.Popen, grace: float = 10.0) -> int:
    """SIGTERM `proc` if still running, SIGKILL it after `grace` seconds; its exit status."""
    if proc.poll() is None:
        proc.terminate()
        try:
            return proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def regbot_env(**extra: str) -> dict[str, str]:
    """This environment for a `python -m regbot`/`celery -A workers.app` child run from the
    repository: the test's own REGBOT_* cluster settings dropped, then `extra` set."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    for name in ("REGBOT_BROKER_URL", "REGBOT_RESULT_BACKEND", "REGBOT_REDIS_URL"):
        env.pop(name, None)
    return {**env, **extra}


def child_pids(pid: int) -> list[int]:
    """The pids of `pid`'s children (from /proc): a node's Celery worker processes."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry))
    return out
