"""Run one script in a fresh sandbox on the process's Engine, and report a ScriptResult.

`run_script` is a plain function with no global state, so the CLI (once/server) and the
Celery worker task call it alike. `run_script_locked` adds the script's cluster-wide lock:
a script never runs twice at the same time anywhere. A run that arrives while another is
going is not queued: it is skipped and logged (status "skipped"), as the Go regbot's
server skips a cron tick whose previous run is still busy. The lock is a lease renewed by
its holder; a holder that dies stops renewing and the lock frees itself within `lease`.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from regbot import metrics
from regbot.copy.executors import RunTag
from regbot.errors import RegbotError, ScriptError, ScriptTimeout
from regbot.logs import TRACE, ScriptLogger, script_context
from regbot.sandbox.runtime import Sandbox

if TYPE_CHECKING:
    from regbot.config import Config, ScriptConfig
    from regbot.engine import Engine

STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_TIMEOUT = "timeout"
STATUS_SKIPPED = "skipped"
STATUS_CANCELLED = "cancelled"  # stopped from outside (server shutdown), not by its timeout
STATUSES = (STATUS_OK, STATUS_FAILED, STATUS_TIMEOUT, STATUS_SKIPPED, STATUS_CANCELLED)
FAILED_STATUSES = (STATUS_FAILED, STATUS_TIMEOUT)


SCRIPT_LOCK_LEASE = 60.0  # seconds a dead holder keeps a script locked


@dataclass
class RunOptions:
    """How a run was asked for: `dry_run`, and on a cluster the `once` run (`run_id`)
    that relays its log lines at `log_level`."""

    dry_run: bool = False
    run_id: str = ""
    log_level: int | None = None


@dataclass
class ScriptResult:
    name: str
    status: str
    duration: float = 0.0
    error: str = ""
    images_copied: int = 0
    blobs_copied: int = 0
    blobs_skipped: int = 0
    blobs_mounted: int = 0
    bytes_copied: int = 0
    tags_deleted: int = 0

    @property
    def ok(self) -> bool:
        return self.status in (STATUS_OK, STATUS_SKIPPED)

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScriptResult:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def format_error(script: ScriptConfig, config: Config, exc: ScriptError) -> str:
    """`script 'name' line 12 (regbot.yml line 40): message` on one line."""
    text = str(exc)
    # line_offset 1 is the default of a ScriptConfig not read from a file.
    if exc.line and script.line_offset > 1:
        where = f"script {script.name!r} line {exc.line}"
        yaml_line = script.line_offset + exc.line - 1
        text = text.replace(where, f"{where} ({config.source} line {yaml_line})", 1)
    return " ".join(text.split())


def script_lock_name(script: str) -> str:
    return f"script:{script}"


def run_script_locked(
    engine: Engine,
    script: ScriptConfig,
    options: RunOptions | None = None,
    *,
    progress: Any = None,
    cancel: threading.Event | None = None,
    lease: float = SCRIPT_LOCK_LEASE,
) -> ScriptResult:
    """`run_script` while holding the script's lock in the engine's limits; a "skipped"
    result when another run holds it."""
    lock = engine.limits.lock(script_lock_name(script.name), ttl=lease)
    if not lock.acquire():
        ScriptLogger(script.name).warn("Skipping run, previous run still going")
        return ScriptResult(name=script.name, status=STATUS_SKIPPED)
    lock.keep_alive()
    try:
        return run_script(engine, script, options, progress=progress, cancel=cancel)
    finally:
        lock.release()


def config_dir(source: str) -> str | None:
    """The directory of the config file, where scripts' `require` looks first."""
    return os.path.dirname(os.path.abspath(source)) if os.path.isfile(source) else None


def run_script(
    engine: Engine,
    script: ScriptConfig,
    options: RunOptions | None = None,
    *,
    progress: Any = None,
    cancel: threading.Event | None = None,
) -> ScriptResult:
    """Run `script` once on `engine` and say how it went; never raises for a script's own
    failure.

    `cancel`, when set from another thread, stops the script as its timeout would.
    """
    options = options or RunOptions()
    config = engine.config
    log = ScriptLogger(script.name)
    start = time.monotonic()
    result = ScriptResult(name=script.name, status=STATUS_OK)
    sandbox: Sandbox | None = None
    log.info("Starting script", dry_run=options.dry_run)
    try:
        sandbox = Sandbox(
            script.name,
            engine.client,
            dry_run=options.dry_run,
            timeout=script.timeout,
            parallel=config.defaults.parallel,
            progress=progress,
            executor=engine.executor,
            run_tag=RunTag(script.name, options.run_id, options.log_level),
            copy_window=script.copy_window,
            logger=log,
            cancel=cancel,
            sandbox_mode=script.sandbox,
            module_dir=config_dir(config.source),
        )
        with script_context(script.name):
            sandbox.run(script.script)
    except ScriptTimeout as exc:
        cancelled = cancel is not None and cancel.is_set()
        result.status = STATUS_CANCELLED if cancelled else STATUS_TIMEOUT
        result.error = format_error(script, config, exc)
    except ScriptError as exc:
        result.status = STATUS_FAILED
        result.error = format_error(script, config, exc)
    except RegbotError as exc:  # the sandbox could not be set up, or the limits store
        result.status = STATUS_FAILED
        result.error = f"script {script.name!r}: {' '.join(str(exc).split())}"
    except Exception as exc:
        log.log(TRACE, "Unexpected exception running script", exc_info=True)
        result.status = STATUS_FAILED
        result.error = " ".join(
            f"script {script.name!r}: internal error: {type(exc).__name__}: {exc}".split())
    finally:
        if sandbox is not None:
            sandbox.close()
            # RunStats' counters are ScriptResult fields of the same names.
            result = replace(result, **asdict(sandbox.stats))
        result.duration = round(time.monotonic() - start, 3)
    metrics.script_done(result.status, result.duration)
    _log_result(log, result)
    return result


def _log_result(log: ScriptLogger, result: ScriptResult) -> None:
    counts = {k: v for k, v in result.to_dict().items()
              if k not in ("name", "status", "duration", "error")}
    if result.status == STATUS_OK:
        log.debug("Script finished", status=result.status, duration=result.duration, **counts)
    else:
        log.error("Script failed", status=result.status, duration=result.duration,
                  error=result.error, **counts)
