"""Running `python -m regbot` as a user would, in an environment of the test's own.

    env = isolated_env(tmp_path)          # HOME, REGBOT_CONFIG_DIR, DOCKER_CONFIG in tmp_path
    proc = run_regbot("tag", "ls", ref, env=env)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.processes import REPO_ROOT, regbot_env


def isolated_env(base: Path, **extra: str) -> dict[str, str]:
    """No file of the user's is read: a home, a regbot config dir and a Docker config
    dir of their own under `base`."""
    home = base / "home"
    home.mkdir(parents=True, exist_ok=True)
    return regbot_env(HOME=str(home), REGBOT_CONFIG_DIR=str(base / "regbot-config"),
                      DOCKER_CONFIG=str(home / ".docker"), **extra)


def run_regbot(*args: str, env: dict[str, str], stdin: str | bytes | None = None,
               cwd: Path | None = None, text: bool = True,
               timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "regbot", *args], input=stdin, env=env,
                          capture_output=True, text=text, timeout=timeout, cwd=cwd or REPO_ROOT)


def run_on_pty(args: list[str], env: dict[str, str], answers: list[tuple[bytes, bytes]] = (),
               timeout: float = 120) -> tuple[int, str]:
    """Run regbot with a terminal on stdin, stdout and stderr; each (prompt, reply) of
    `answers` is typed once `prompt` has appeared. Returns the exit status and everything
    the terminal showed (colour codes removed)."""
    import os
    import pty
    import re
    import select
    import signal
    import time

    pid, fd = pty.fork()
    if pid == 0:  # the child: exec regbot on the terminal
        os.chdir(REPO_ROOT)
        os.execve(sys.executable, [sys.executable, "-m", "regbot", *args], env)
    output = b""
    pending = list(answers)
    deadline = time.monotonic() + timeout
    while True:
        if time.monotonic() > deadline:  # stuck: stop it, the caller sees the status
            os.kill(pid, signal.SIGKILL)
            break
        if pending and pending[0][0] in output:
            os.write(fd, pending.pop(0)[1])
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    _, status = os.waitpid(pid, 0)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.decode(errors="replace"))
    return os.waitstatus_to_exitcode(status), text
