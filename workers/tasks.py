"""The two tasks of a regbot cluster. Thin: they unpack Celery's request and call
workers/jobs.py. Their names and arguments are stable (they are what Flower shows and what
beat and `once` send):

- `regbot.script(script, dry_run=False, run_id="", log_level=None, progress=True)` on
  queue `scripts` (`progress`: stream copy progress to the `once` of `run_id`, for its
  live display):
  returns the ScriptResult as a dict. Only the script's name travels: the worker reads the
  script, the credentials and everything else from its own config file and environment.
- `regbot.transfer(unit, script, run={...})` on queue `transfers`: `unit` is a copy plan
  unit (references, digest, size, descriptor; never credentials), `script` names the script
  it belongs to; `run` carries run_id, log_level, copy_id and deadline. Returns the
  UnitResult as a dict plus the `hostname` of the node that ran it.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, Task
from celery.exceptions import Ignore

from workers import jobs
from workers.app import app
from workers.executor import STATE_PROGRESS
from workers.settings import SCRIPT_TASK, TRANSFER_TASK


def register(app: Celery) -> tuple[Task, Task]:
    """Define both tasks on `app` (the worker's app below; tests use an eager one)."""

    @app.task(name=SCRIPT_TASK, bind=True, acks_late=False, shared=False)
    def run_script(self, script: str, dry_run: bool = False, run_id: str = "",
                   log_level: int | None = None, progress: bool = True) -> dict[str, Any]:
        """Run one script of the worker's config (acknowledged on start: see workers/app.py)."""
        try:
            return jobs.script_job(script, app=self.app, task_id=self.request.id,
                                   dry_run=dry_run, run_id=run_id, log_level=log_level,
                                   progress=progress)
        except jobs.Duplicate:
            raise Ignore() from None

    @app.task(name=TRANSFER_TASK, bind=True, acks_late=False, shared=False)
    def transfer(self, unit: dict[str, Any], script: str = "",
                 run: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run one copy unit (idempotent; acknowledged on start: a lost node's unit is sent
        again by the script waiting for it, see workers/executor.py)."""
        hostname = self.request.hostname or ""
        task_id = self.request.id  # reports come from another thread: not its request

        def report(bytes_done: int) -> None:
            self.update_state(task_id=task_id, state=STATE_PROGRESS,
                              meta={"bytes_done": bytes_done, "hostname": hostname})

        try:
            return jobs.transfer_job(unit, script, run or {}, task_id=task_id,
                                     hostname=hostname, report=report)
        except jobs.Duplicate:
            raise Ignore() from None

    return run_script, transfer


run_script, transfer = register(app)
