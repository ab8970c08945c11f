"""Running `regbot once` and the Go regbot side by side: the peer's path, the commands,
config files both read, their summaries, and runs alternated A B A B.

    go = find_go(args.go)                     # GoPeer(path or None, note)
    config = write_config(tmp / "x.yml", {"src.test": src.host}, {"copy": 'image.copy(...)'})
    ours = run_once(regbot_argv(), config)    # ProcResult of `regbot once -c config`
    theirs = run_once([go.path], config)      # `../shared/peers/regbot once -c config`
"""

from __future__ import annotations

import compileall
import functools
import json
import os
import re
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from _common import REPO_ROOT, ProcResult, run_measured

# The Go regbot (regclient 725072f) is provided next to the repository, not in it: a
# user's clone has none, and then its column is skipped with a note.
GO_DEFAULT = REPO_ROOT.parent / "shared" / "peers" / "regbot"
GO_HELP = (f"the Go regbot to compare with (default {GO_DEFAULT}: ../shared/peers/regbot "
           "next to the repository; its column is skipped with a note when absent)")
_SUMMARY_FIELD = re.compile(r'([\w-]+)=("(?:[^"\\]|\\.)*"|\S+)')
T = TypeVar("T")


@dataclass
class GoPeer:
    path: str | None
    note: str  # why its column is missing, when it is

    def __bool__(self) -> bool:
        return self.path is not None


def find_go(given: str | None) -> GoPeer:
    path = Path(given) if given else GO_DEFAULT
    if path.is_file() and os.access(path, os.X_OK):
        return GoPeer(str(path), "")
    return GoPeer(None, f"Go regbot column skipped: no executable at {path} "
                        "(pass --go PATH to give one)")


def regbot_argv() -> list[str]:
    """The `regbot` command of this Python (the venv's console script when installed,
    else `python -m regbot`): what a user runs."""
    script = Path(sys.executable).parent / "regbot"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "regbot"]


_NOT_PASSED = ("REGBOT_BROKER_URL", "REGBOT_RESULT_BACKEND", "REGBOT_REDIS_URL",
               # an installed regbot has its bytecode: without it every run compiles ours
               "PYTHONDONTWRITEBYTECODE")


def regbot_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without any cluster setting (so `once` runs embedded), the
    repository importable with its bytecode compiled (as `pip install` leaves it), plus
    `extra`."""
    _compile_bytecode()
    env = {k: v for k, v in os.environ.items() if k not in _NOT_PASSED}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return {**env, **(extra or {})}


@functools.cache
def _compile_bytecode() -> None:
    for package in ("regbot", "workers", "beat_schedule"):
        compileall.compile_dir(str(REPO_ROOT / package), quiet=1)


def run_once(command: Sequence[str], config: Path, *args: str,
             env: dict[str, str] | None = None, timeout: float = 1800.0) -> ProcResult:
    """`<command> once -c config -v warn <args>`, measured; raises when it fails."""
    argv = [*command, "once", "-c", str(config), "-v", "warn", *args]
    res = run_measured(argv, env=env if env is not None else regbot_env(), timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {res.returncode}:\n"
                           + (res.stdout + res.stderr).decode(errors="replace")[-3000:])
    return res


def write_config(path: Path, hosts: dict[str, str], scripts: dict[str, str], *,
                 req_concurrent: int | None = None, parallel: int = 1,
                 defaults: dict[str, str] | None = None) -> Path:
    """A regbot.yml both regbots read: each registry name of `hosts` mapped to its
    127.0.0.1:port (plain http), `reqConcurrent` when given (else each one's default),
    `scripts` name -> Lua source; `defaults`: more keys of that section (ours: the Go
    regbot ignores them)."""
    lines = ["version: 1", "creds:"]
    for name, host in hosts.items():
        lines += [f"  - registry: {name}", f"    hostname: {host}", "    tls: disabled"]
        if req_concurrent is not None:
            lines.append(f"    reqConcurrent: {req_concurrent}")
    lines += ["defaults:", f"  parallel: {parallel}"]
    lines += [f"  {key}: {value}" for key, value in (defaults or {}).items()]
    lines += ["scripts:" if scripts else "scripts: []"]
    for name, body in scripts.items():
        lines += [f"  - name: {name}", "    script: |"]
        lines += [f"      {line}" for line in body.strip().splitlines()]
    path.write_text("\n".join(lines) + "\n")
    return path


def summary_row(stdout: str, script: str) -> dict[str, str]:
    """The fields of `script`'s line in our `regbot once`'s plain summary; raises unless
    it succeeded."""
    for line in stdout.splitlines():
        if not line.startswith("summary "):
            continue
        fields = {k: json.loads(v) if v.startswith('"') else v
                  for k, v in _SUMMARY_FIELD.findall(line[len("summary "):])}
        if fields.get("script") == script:
            if fields.get("status") != "ok":
                raise RuntimeError(f"script {script!r} did not succeed: {line}")
            return fields
    raise RuntimeError(f"no summary line for script {script!r} in:\n{stdout}")


def alternate(runs: int, contenders: Sequence[str], measure: Callable[[str, int], T],
              ) -> dict[str, list[T]]:
    """measure(name, run) for run 1..runs, contenders in turn within each run (A B A B),
    so a change of the machine's load hits them alike."""
    out: dict[str, list[T]] = {name: [] for name in contenders}
    for n in range(1, runs + 1):
        for name in contenders:
            out[name].append(measure(name, n))
    return out


def median(values: Sequence[float]) -> float:
    return statistics.median(values)
