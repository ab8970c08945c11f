"""Profiling a contender with py-spy, and reading the profile back as a hotspot table.

    argv = pyspy_argv(py_spy, out, [*regbot_argv(), "once", "-c", cfg])   # record it
    print(render_summary(summarize(out)))                                  # top hotspots

    python bench/_profile.py PROFILE.json [--top N]   # summarize a speedscope file

py-spy samples every thread of the process (`--threads` names them in the profile; with
`--idle` the samples of threads waiting on a lock, a socket or a sleep are kept too, so the
shares are of wall time across threads rather than of CPU). A profile is a py-spy
speedscope file: per thread, samples of the stack root first.

Percentages are of all samples of all threads. "self" is the function on top of the
stack (where the interpreter was), "total" the function anywhere on the stack (what it
and its callees cost). Time in C (hashing, socket reads) shows as self time of the Python
function that called it.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/_profile.py`, Python puts bench/ first on sys.path, where
# bench/copy.py would shadow the standard library's `copy`: keep bench/ last.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH] + [str(_BENCH)]

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sysconfig  # noqa: E402
from collections import Counter  # noqa: E402
from dataclasses import dataclass  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_RATE = 250  # samples per second per thread
_STDLIB = sysconfig.get_paths()["stdlib"]
NO_PYTHON = ("(no Python frame)", "interpreter start or exit, native code")
_IMPORT_FILES = ("<frozen importlib._bootstrap>", "<frozen importlib._bootstrap_external>")


def find_py_spy() -> str | None:
    """py-spy next to this Python (a venv's `pip install py-spy`), else on PATH."""
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.is_file() else shutil.which("py-spy")


# py-spy's own idle detection counts threads blocked in Condition.wait or a socket read
# as running on this kind of machine, so its default mode is no CPU profile: the GIL
# mode is (C code that releases the GIL, such as hashing big buffers, is not in it).
MODES = {
    "gil": (["--gil"], "the thread holding the GIL (the Python interpreter's own CPU)"),
    "idle": (["--idle"], "every thread, idle samples kept (wall time across threads)"),
}
# Leaves where a thread waits: a wait is put on the first caller outside them, so the
# table of threads says what each one waits in (Future.result in copy_image, ...).
_WAITS = {"Condition.wait", "Event.wait", "Semaphore.acquire", "Future.result", "wait",
          "SocketIO.readinto", "_worker", "Queue.get", "select", "poll", "do_poll",
          "poll_wait_for_socket.<locals>.do_poll", "BaseSelector.select", "sleep"}
# Frames on nearly every stack of a thread; in the "total" table they say nothing.
_PLUMBING = {"<module>", "Thread._bootstrap", "Thread._bootstrap_inner", "Thread.run",
             "_worker", "_WorkItem.run", "_call_with_frames_removed"}


def pyspy_argv(py_spy: str, out: Path, argv: list[str], mode: str = "gil") -> list[str]:
    """`py-spy record` around `argv` (a Python program started by py-spy itself), writing
    a speedscope file `out`; its children are sampled too. `mode`: one of MODES."""
    return [py_spy, "record", "--format", "speedscope", "--output", str(out), "--threads",
            "--rate", str(SAMPLE_RATE), "--subprocesses", *MODES[mode][0], "--", *argv]


def short_file(path: str) -> str:
    """A file name as people read it: the package path inside site-packages, the path in
    the repository, `stdlib/<module>`."""
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    try:
        return str(Path(path).relative_to(REPO_ROOT))
    except ValueError:
        pass
    if path.startswith(_STDLIB):
        return "stdlib/" + path[len(_STDLIB):].lstrip("/")
    return path


def package_of(short: str) -> str:
    """The group a file's samples are counted under: regbot's subpackage (regbot/http,
    regbot/limits.py), an installed package's name, `stdlib/<module>`."""
    parts = short.split("/")
    if parts[0] in ("regbot", "workers", "beat_schedule", "stdlib") and len(parts) > 2:
        return "/".join(parts[:2])
    if parts[0] in ("regbot", "workers", "beat_schedule", "stdlib"):
        return short
    return parts[0]


@dataclass
class Hotspots:
    samples: int
    seconds_per_sample: float
    threads: list[tuple[str, int]]  # (thread name, samples)
    self_by_function: list[tuple[str, str, int]]  # (function, file, samples)
    total_by_function: list[tuple[str, str, int]]
    self_by_package: list[tuple[str, int]]
    imports: int  # samples with the import machinery on the stack
    where_by_thread: dict[str, list[tuple[str, int]]]  # thread -> (where it is, samples)


def summarize(path: Path) -> Hotspots:
    doc = json.loads(Path(path).read_text())
    frames = [(f["name"], short_file(f.get("file") or "?")) for f in doc["shared"]["frames"]]
    pseudo = {i for i, f in enumerate(doc["shared"]["frames"])
              if not f.get("file") and f["name"].startswith(("thread (", "process "))}
    self_count: Counter[tuple[str, str]] = Counter()
    total_count: Counter[tuple[str, str]] = Counter()
    packages: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    where: dict[str, Counter[str]] = {}
    samples = imports = 0
    weight = 0.0
    for profile in doc["profiles"]:
        # 'Process 12 Thread 34 "name"'; the main thread has an empty name.
        name = profile["name"].split('"')[1] if '"' in profile["name"] else profile["name"]
        name = name or "MainThread"
        for stack, w in zip(profile["samples"], profile["weights"], strict=True):
            samples += 1
            weight = w or weight
            threads[name] += 1
            # --threads and --subprocesses add pseudo frames ("thread (12): MainThread",
            # "process 34:...") at the root: they are not code.
            stack = [i for i in stack if i not in pseudo]
            if not stack:
                self_count[NO_PYTHON] += 1
                packages[NO_PYTHON[1]] += 1
                continue
            leaf = frames[stack[-1]]
            where.setdefault(name, Counter())[_where(frames, stack)] += 1
            self_count[leaf] += 1
            packages[package_of(leaf[1])] += 1
            on_stack = {frames[i] for i in stack}
            total_count.update(on_stack)
            if any(file in _IMPORT_FILES for _name, file in on_stack):
                imports += 1
    return Hotspots(
        samples, weight or 1 / SAMPLE_RATE, threads.most_common(),
        [(fn, file, n) for (fn, file), n in self_count.most_common()],
        [(fn, file, n) for (fn, file), n in total_count.most_common()],
        packages.most_common(), imports,
        {name: c.most_common() for name, c in where.items()})


def _where(frames: list[tuple[str, str]], stack: list[int]) -> str:
    """The leaf function, or for a wait the first caller outside the waiting plumbing."""
    leaf = frames[stack[-1]]
    if leaf[0] not in _WAITS:
        return f"{leaf[0]} ({leaf[1]})"
    for i in reversed(stack[:-1]):
        fn, file = frames[i]
        if fn not in _WAITS and not file.startswith(("stdlib/threading", "stdlib/concurrent",
                                                      "stdlib/socket", "urllib3/util/wait")):
            return f"{leaf[0]} <- {fn} ({file})"
    return f"{leaf[0]} ({leaf[1]})"


def render_summary(spots: Hotspots, top: int = 15) -> str:
    from _common import Table

    def pct(n: int) -> str:
        return f"{100 * n / spots.samples:.1f}%" if spots.samples else "-"

    out = [f"{spots.samples} samples ({spots.samples * spots.seconds_per_sample:.2f} s of "
           f"thread time); import machinery on the stack in {pct(spots.imports)}"]
    table = Table(["thread", "share", "where it is most (share of all samples)"])
    for name, n in spots.threads[:top]:
        places = spots.where_by_thread.get(name, [])[:3]
        table.add(name, pct(n), "; ".join(f"{w} {pct(k)}" for w, k in places))
    out += ["", table.render(), ""]
    table = Table(["self: function", "file", "share"])
    for fn, file, n in spots.self_by_function[:top]:
        table.add(fn, file, pct(n))
    out += [table.render(), ""]
    table = Table(["total: function", "file", "share"])
    shown = 0
    for fn, file, n in spots.total_by_function:
        # Frames on (nearly) every stack say nothing: thread bootstraps, main, <module>.
        if n >= 0.97 * spots.samples or file in _IMPORT_FILES or fn in _PLUMBING:
            continue
        table.add(fn, file, pct(n))
        shown += 1
        if shown == top:
            break
    out += [table.render(), ""]
    table = Table(["self by package / module", "share"])
    for pkg, n in spots.self_by_package[:top]:
        table.add(pkg, pct(n))
    out.append(table.render())
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Summarize a py-spy speedscope profile.")
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=15, help="rows per table (default 15)")
    args = parser.parse_args(argv)
    print(render_summary(summarize(args.profile), args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
