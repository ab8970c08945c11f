"""Running scripts in this process: `once` (each script one time) and the scheduler loop
of `server`. Both call the same `run_script_locked` (regbot/runner.py) that the Celery
workers call, on the one Engine of the process."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime

from regbot.config import ScriptConfig
from regbot.copy.progress import ProgressListener
from regbot.cron import Schedule
from regbot.engine import Engine
from regbot.logs import get_logger, log_fields
from regbot.runner import RunOptions, ScriptResult, run_script_locked

log = get_logger("regbot.embedded")

ProgressFor = Callable[[str], ProgressListener | None]


def run_once(
    engine: Engine,
    options: RunOptions,
    progress_for: ProgressFor | None = None,
    on_done: Callable[[ScriptResult], None] | None = None,
) -> list[ScriptResult]:
    """Each script once, `defaults.parallel` at a time; results in config order."""
    config = engine.config
    with ThreadPoolExecutor(max_workers=config.defaults.parallel,
                            thread_name_prefix="script") as pool:
        futures = []
        for script in config.scripts:
            progress = progress_for(script.name) if progress_for else None
            future = pool.submit(run_script_locked, engine, script, options,
                                 progress=progress)
            if on_done is not None:
                future.add_done_callback(lambda f: on_done(f.result()))
            futures.append(future)
        return [f.result() for f in futures]


class DueRuns:
    """When each scheduled script of the server runs next.

    Run times come from `Schedule.next_run_after`, the same engine the beat's schedules
    use (beat_schedule/), so `server` on one node and a cluster's beat run a script at the
    same times. A script without schedule or interval is logged as an error and left out.
    """

    def __init__(self, scripts: Iterable[ScriptConfig], now: datetime) -> None:
        self._next: dict[str, tuple[ScriptConfig, Schedule, datetime]] = {}
        for script in scripts:
            schedule = script.effective_schedule()
            if schedule is None:
                log_fields(log, logging.ERROR, "No schedule or interval found, ignoring",
                           script=script.name)
                continue
            log_fields(log, logging.DEBUG, "Scheduled script", script=script.name,
                       schedule=schedule.text)
            self._next[script.name] = (script, schedule, schedule.next_run_after(now))

    def pop_due(self, now: datetime) -> list[ScriptConfig]:
        """The scripts due at `now`, each moved on to its first run after `now` (runs missed
        meanwhile are not caught up, as robfig's cron does not)."""
        due = []
        for name, (script, schedule, when) in list(self._next.items()):
            if when <= now:
                due.append(script)
                self._next[name] = (script, schedule, schedule.next_run_after(now))
        return due

    def next_due(self) -> datetime | None:
        """The earliest next run, None when no script is scheduled."""
        return min((when for _, _, when in self._next.values()), default=None)


class EmbeddedScheduler:
    """Runs each scheduled script when due, never starting one again while its previous
    run is still going (that run is skipped and logged, as the Go regbot's cron does)."""

    def __init__(self, engine: Engine, options: RunOptions) -> None:
        self.engine = engine
        self.config = engine.config
        self.options = options
        self.stop_event = threading.Event()
        self.results: list[ScriptResult] = []
        self._running: dict[str, Future] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=self.config.defaults.parallel,
                                        thread_name_prefix="script")

    def run(self) -> list[ScriptResult]:
        """Blocks until `stop()`; then cancels running scripts and returns all results."""
        due = DueRuns(self.config.scripts, datetime.now(UTC))
        while not self.stop_event.is_set():
            for script in due.pop_due(datetime.now(UTC)):
                self._start(script)
            next_when = due.next_due()
            wait = 1.0 if next_when is None else (next_when - datetime.now(UTC)).total_seconds()
            self.stop_event.wait(min(max(wait, 0.01), 1.0))
        # As the Go regbot cancels its context: running scripts stop at their next Lua
        # instruction or copy chunk (a copy interrupted leaves the target valid).
        log_fields(log, logging.DEBUG, "Stopping: cancelling running scripts")
        self._pool.shutdown(wait=True, cancel_futures=True)
        return self.results

    def stop(self) -> None:
        self.stop_event.set()

    def _start(self, script: ScriptConfig) -> None:
        with self._lock:
            previous = self._running.get(script.name)
            if previous is not None and not previous.done():
                log_fields(log, logging.WARNING, "Skipping run, previous run still going", script=script.name)
                return
            started = time.monotonic()
            future = self._pool.submit(run_script_locked, self.engine, script, self.options,
                                       cancel=self.stop_event)
            self._running[script.name] = future
        future.add_done_callback(lambda f, s=script.name: self._finished(s, f, started))

    def _finished(self, name: str, future: Future, started: float) -> None:
        if future.cancelled():  # queued behind others when the server stopped
            return
        result = future.result()
        with self._lock:
            self.results.append(result)
        log_fields(log, logging.INFO, "Script finished", script=name, status=result.status,
                   duration=round(time.monotonic() - started, 3))
