"""Shared helpers of the benchmarks: sizes, registries, measured child processes, tables.

The benchmarks measure every contender in a process of its own, so a peak RSS is that
tool's alone. Peak RSS is the kernel's high-water mark of the process (`VmHWM` in
/proc/<pid>/status), sampled while it runs; `wait4`'s ru_maxrss is not used because a
child spawned with vfork (as Python's subprocess does) inherits the parent's peak.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    # tests/support holds the registry starter and image builders the benchmarks reuse.
    sys.path.insert(0, str(REPO_ROOT))

from tests.support.registry import RegistryProcess, start_registry  # noqa: E402

MB = 1000 * 1000  # throughput is printed in MB/s (10^6 bytes), like curl and skopeo do
MiB = 1024 * 1024
_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": MB, "mb": MB, "g": 1000**3, "gb": 1000**3,
    "ki": 1024, "kib": 1024, "mi": MiB, "mib": MiB, "gi": 1024**3, "gib": 1024**3,
}
SAMPLE_INTERVAL = 0.01  # seconds between two VmHWM samples of a measured process


def bench_parser(doc: str, needs: str) -> argparse.ArgumentParser:
    """An argument parser whose --help ends with what the benchmark needs installed."""
    return argparse.ArgumentParser(
        description=doc.split("\n\n")[0],
        epilog=f"Needs: `pip install -e .` (no test extras), {needs}. Run from anywhere.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def parse_size(text: str) -> int:
    """'1GiB', '256MiB', '8M', '1000' -> bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {text!r} (use e.g. 1GiB, 256MiB, 8MB, 1000)")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def human(n: float) -> str:
    """Bytes for people: 1.0 GiB, 95.3 MiB, 812 KiB."""
    for unit, scale in (("GiB", 1024**3), ("MiB", MiB), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def mbps(nbytes: int, seconds: float) -> float:
    return nbytes / MB / seconds if seconds > 0 else float("inf")


# --- tools -----------------------------------------------------------------------------


def ensure_tool(command: str, package: str) -> str | None:
    """The path of `command`, installing Debian's `package` with apt-get when it is
    missing (as root, or through sudo); None when that fails."""
    found = shutil.which(command)
    if found:
        return found
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"... {command} is missing: apt-get install -y {package}", file=sys.stderr, flush=True)
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
        try:
            done = subprocess.run(sudo + cmd, env=env).returncode == 0
        except OSError:
            done = False
        if not done:
            print(f"    installing {package} failed", file=sys.stderr, flush=True)
            return None
    return shutil.which(command)


# --- registries ------------------------------------------------------------------------


class Registries:
    """Starts docker-registry processes on free loopback ports; stops them all on exit.

        with Registries() as regs:
            src = regs.start()
    """

    def __init__(self) -> None:
        if not ensure_tool("docker-registry", "docker-registry"):
            raise SystemExit("docker-registry is needed (Debian package docker-registry)")
        self._started: list[RegistryProcess] = []

    def start(self) -> RegistryProcess:
        reg = start_registry()
        self._started.append(reg)
        return reg

    def stop(self, reg: RegistryProcess) -> None:
        reg.stop()
        if reg in self._started:
            self._started.remove(reg)

    def __enter__(self) -> Registries:
        return self

    def __exit__(self, *exc: object) -> None:
        for reg in reversed(self._started):
            reg.stop()
        self._started.clear()


def check_copied(src: str, tgt: str, repo: str, tags: Sequence[str]) -> None:
    """Every tag of `repo` in the target registry names the source's digest."""
    from tests.support import images

    for tag in tags:
        want = images.head_manifest(src, repo, tag).headers.get("Docker-Content-Digest")
        got = images.head_manifest(tgt, repo, tag).headers.get("Docker-Content-Digest")
        if not want or want != got:
            raise RuntimeError(f"{tgt}/{repo}:{tag} is {got}, the source has {want}")


# --- measured processes ----------------------------------------------------------------


@dataclass
class ProcResult:
    """One finished process: exit status, wall seconds (spawn to exit), CPU seconds (user
    + system, from wait4: unlike its ru_maxrss these are the process's own), peak RSS."""

    argv: list[str]
    returncode: int
    seconds: float
    cpu: float
    peak_rss: int
    stdout: bytes = b""
    stderr: bytes = b""


def _hwm(pid: int) -> int:
    """The process's RSS high-water mark in bytes, or -1 once it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return -1


class _Sampler(threading.Thread):
    """Samples VmHWM of some processes until they have all exited."""

    def __init__(self, procs: Sequence[subprocess.Popen]) -> None:
        super().__init__(daemon=True)
        self.procs = list(procs)
        self.peaks = [0] * len(self.procs)

    def run(self) -> None:
        live = set(range(len(self.procs)))
        while live:
            for i in list(live):
                peak = _hwm(self.procs[i].pid)
                if peak > self.peaks[i]:
                    self.peaks[i] = peak
                # Gone (a zombie has no VmHWM) or reaped by wait() in the main thread.
                if peak < 0 or self.procs[i].returncode is not None:
                    live.discard(i)
            time.sleep(SAMPLE_INTERVAL)


def run_pipeline(
    commands: Sequence[Sequence[str]],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 3600.0,
) -> list[ProcResult]:
    """Run `commands` as a shell-like pipeline (stdout of each into the next), measuring
    each process. The last one's stdout and every stderr are captured."""
    procs: list[subprocess.Popen] = []
    starts: list[float] = []
    prev_out = None
    try:
        for i, argv in enumerate(commands):
            last = i == len(commands) - 1
            starts.append(time.perf_counter())
            proc = subprocess.Popen(
                list(argv), stdin=prev_out, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=env,
            )
            if prev_out is not None:
                prev_out.close()  # the next process owns it now (SIGPIPE reaches the writer)
            prev_out = None if last else proc.stdout
            procs.append(proc)
        sampler = _Sampler(procs)
        sampler.start()
        # Drain the last stdout and all stderr in threads so no pipe fills up.
        outputs: dict[int, bytes] = {}

        def drain(key: int, stream) -> None:
            outputs[key] = stream.read()

        drains = []
        for i, proc in enumerate(procs):
            drains.append(threading.Thread(target=drain, args=(-1 - i, proc.stderr), daemon=True))
        drains.append(threading.Thread(target=drain, args=(0, procs[-1].stdout), daemon=True))
        for t in drains:
            t.start()
        ends, cpus = [], []
        killer = threading.Timer(timeout, lambda: [p.kill() for p in procs if p.returncode is None])
        killer.daemon = True
        killer.start()
        for proc in procs:
            _, status, usage = os.wait4(proc.pid, 0)  # reaps it, keeping its rusage
            proc.returncode = os.waitstatus_to_exitcode(status)
            ends.append(time.perf_counter())
            cpus.append(usage.ru_utime + usage.ru_stime)
        killer.cancel()
        for t in drains:
            t.join()
        sampler.join()
    except BaseException:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                proc.wait()
        raise
    return [
        ProcResult(list(argv), proc.returncode, end - start, cpu, sampler.peaks[i],
                   outputs.get(0, b"") if i == len(procs) - 1 else b"", outputs.get(-1 - i, b""))
        for i, (argv, proc, start, end, cpu)
        in enumerate(zip(commands, procs, starts, ends, cpus, strict=True))
    ]


def run_measured(argv: Sequence[str], *, env: dict[str, str] | None = None,
                 timeout: float = 3600.0) -> ProcResult:
    return run_pipeline([argv], env=env, timeout=timeout)[0]


def run_python_child(script: Path, payload: dict, *, timeout: float = 3600.0) -> tuple[ProcResult, dict]:
    """Run `python script --child JSON`; the child prints one JSON line (its result) last.

    The child's own VmHWM report, when given as `peak_rss`, is exact; the sampled one is
    kept when higher (it cannot be, short of sampling noise)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    res = run_measured([sys.executable, str(script), "--child", json.dumps(payload)],
                       env=env, timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"{script.name} child failed (exit {res.returncode}):\n"
                           + res.stderr.decode(errors="replace")[-4000:])
    lines = [ln for ln in res.stdout.decode().splitlines() if ln.strip()]
    report = json.loads(lines[-1])
    res.peak_rss = max(res.peak_rss, int(report.get("peak_rss", 0)))
    return res, report


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from field 3 (state) on: the command name in parentheses may hold
    spaces, so split after its closing one. None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            text = fh.read().decode(errors="replace")
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a live process has used so far (0.0 once it is gone);
    read twice around a run, the difference is what it spent on that run."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS if fields else 0.0


def machine_cpu_seconds() -> float:
    """CPU seconds every CPU of the machine has been busy so far (all processes, anyone's:
    /proc/stat); around a run, it shows what else competed for the CPUs."""
    with open("/proc/stat") as fh:
        ticks = [int(v) for v in fh.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...: busy is all but idle and iowait
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / CLOCK_TICKS


def session_cpu_seconds(sid: int) -> float:
    """CPU seconds so far of every live process of session `sid` (a worker node started
    with start_new_session: the node, its Celery workers and their pool processes)."""
    total = 0.0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields and int(fields[3]) == sid:
                total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def self_peak_rss() -> int:
    """This process's RSS high-water mark in bytes (for a child's report)."""
    return _hwm(os.getpid())


@dataclass
class Measure:
    """One contender's run: seconds of the work itself, seconds of its process(es) start to
    exit, their CPU seconds, their peak RSS (the largest process), and a note."""

    seconds: float
    process_seconds: float
    cpu: float
    peak_rss: int
    note: str = ""


def best_of(runs: list[Measure], by: str = "seconds") -> Measure:
    """The fastest run's (by `seconds` or `process_seconds`) times and CPU, the highest
    peak RSS of all runs."""
    fastest = min(runs, key=lambda m: getattr(m, by))
    return Measure(fastest.seconds, fastest.process_seconds, fastest.cpu,
                   max(m.peak_rss for m in runs), fastest.note)


# --- output ----------------------------------------------------------------------------


@dataclass
class Table:
    """A plain text table, right-aligned numbers."""

    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([str(c) for c in cells])

    def render(self) -> str:
        widths = [max(len(r[i]) for r in [self.headers, *self.rows]) for i in range(len(self.headers))]
        lines = []
        for n, row in enumerate([self.headers, *self.rows]):
            cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
            lines.append("  ".join(cells).rstrip())
            if n == 0:
                lines.append("  ".join("-" * w for w in widths))
        return "\n".join(lines)


def load_note() -> str:
    """The machine's load, printed with results: on a busy machine wall times vary a lot
    from run to run, CPU seconds much less."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} CPUs"


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


@contextlib.contextmanager
def step(what: str) -> Iterator[None]:
    """Print what is being done and how long it took (to stderr: stdout holds results)."""
    print(f"... {what}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    yield
    print(f"    done in {time.perf_counter() - start:.1f}s", file=sys.stderr, flush=True)
