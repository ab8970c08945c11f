"""Per-unit cost of the copy engine: copy_image of an image of many tiny layers, timed
inside the executor's run() (the units, not the planning), in a process of its own.

    report = measure_overhead(config, copies, mode="embedded")
    # {"copies": [{"units", "run_seconds", "copy_seconds", "blobs_copied"}, ...]}

`copies` is a list of [source, target] references copied one after the other in the same
process (the first ones warm it up: imports, connections, tokens); `mode` "embedded" is
`regbot once` without a broker (the Engine's LocalExecutor, limits in memory),
"distributed" runs each unit as a `regbot.transfer` task of the cluster at `redis_url`
(broker, results and shared state), as a script on a worker does.

Run by bench/scale.py and bench/vs_go.py as `python bench/_overhead.py --child JSON`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH] + [str(_BENCH)]

from _common import run_python_child  # noqa: E402


def measure_overhead(config: Path, copies: list[list[str]], *, mode: str = "embedded",
                     redis_url: str | None = None, timeout: float = 900.0) -> dict:
    """Run the copies in a child process; its report (see the module docstring)."""
    payload = {"mode": mode, "config": str(config), "copies": copies, "redis_url": redis_url}
    _, report = run_python_child(Path(__file__), payload, timeout=timeout)
    return report


class TimedExecutor:
    """Wraps an executor to time its run() (the units' execution, planning excluded)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.cancel = getattr(inner, "cancel", None)
        self.seconds = 0.0
        self.units = 0

    @property
    def threads(self):
        return self.inner.threads

    def run(self, units, ctx):
        started = time.perf_counter()
        try:
            return self.inner.run(units, ctx)
        finally:
            self.seconds += time.perf_counter() - started
            self.units += len(units)


def child(payload: dict) -> int:
    """Runs in its own process: the copies of `payload`, embedded or on the cluster."""
    from regbot.config import load_config
    from regbot.copy import RunTag, copy_image
    from regbot.engine import Engine
    from regbot.types.ref import Reference

    config = load_config(payload["config"])
    app = None
    if payload["mode"] == "embedded":
        engine = Engine.embedded(config)

        def make_executor():
            return engine.executor
    else:
        from regbot.limits import Limits, store_from_url
        from workers.app import create_app
        from workers.executor import CeleryExecutor
        from workers.settings import ClusterSettings

        url = payload["redis_url"]
        settings = ClusterSettings.resolve(url, None, url, environ={})
        limits = Limits(store_from_url(url))
        app = create_app(settings)
        # transferMin 0: every blob goes to a node, to measure what a dispatch costs
        engine = Engine(config, limits, CeleryExecutor(app, limits, transfer_min=0))

        def make_executor():
            return engine.executor
    reports = []
    try:
        for src, tgt in payload["copies"]:
            executor = TimedExecutor(make_executor())
            started = time.perf_counter()
            result = copy_image(engine.client, Reference.parse(src), Reference.parse(tgt),
                                executor=executor, run=RunTag("bench overhead"))
            reports.append({"units": executor.units, "run_seconds": executor.seconds,
                            "copy_seconds": time.perf_counter() - started,
                            "blobs_copied": result.blobs_copied})
    finally:
        if app is not None:
            app.close()
    print(json.dumps({"copies": reports}))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        sys.exit(child(json.loads(sys.argv[2])))
    sys.exit(__doc__)
