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
