"""Run a script under its cluster-wide lock: the one entry point of embedded runs and workers.

A script never runs twice at the same time anywhere. A run that arrives while another is
going is not queued: it is skipped and logged (status "skipped"), as the Go regbot's
server skips a cron tick whose previous run is still busy. The lock is a lease renewed by
its holder; a holder that dies stops renewing and the lock frees itself within `lease`.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from regbot.limits import Limits
from regbot.logs import ScriptLogger
from regbot.runner import STATUS_SKIPPED, RunOptions, ScriptResult, run_script

if TYPE_CHECKING:
    from regbot.config import Config, ScriptConfig

SCRIPT_LOCK_LEASE = 60.0  # seconds a dead holder keeps a script locked


def script_lock_name(script: str) -> str:
    return f"script:{script}"


def run_script_locked(
    script: ScriptConfig,
    config: Config,
    options: RunOptions,
    *,
    limits: Limits,
    progress: Any = None,
    executor: Any = None,
    cancel: threading.Event | None = None,
    lease: float = SCRIPT_LOCK_LEASE,
) -> ScriptResult:
    """`run_script` while holding the script's lock in `limits`; a "skipped" result when
    another run holds it."""
    lock = limits.lock(script_lock_name(script.name), ttl=lease)
    if not lock.acquire():
        ScriptLogger(script.name).warn("Skipping run, previous run still going")
        return ScriptResult(name=script.name, status=STATUS_SKIPPED)
    lock.keep_alive()
    try:
        return run_script(script, config, options, progress, executor, cancel=cancel)
    finally:
        lock.release()
