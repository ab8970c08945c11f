"""Benchmark: a large mirror, issue 10's; regbot embedded and on clusters of 1, 2 and 4
nodes against the Go regbot.

    python bench/mirror.py                    # 10 repositories x 20 tags (200 copies)
    python bench/mirror.py --large            # 40 x 50 (2,000 copies)
    python bench/mirror.py --contenders embedded,go --runs 3
    python bench/mirror.py --profile /tmp/prof   # plus py-spy profiles of the embedded run
    python bench/mirror.py --req-concurrent 12   # past the default 3 requests in flight per
                                                 # registry (a cluster shares them)
    python bench/mirror.py --spread              # clusters with defaults.spreadCopies: true

The source (a docker-registry on 127.0.0.1) holds R repositories of T tags; every tag is a
single-platform image of its own: a config, a 64 KiB layer shared by every image of its
repository, a unique 4 KiB layer. One ordinary script copies them all, as a new user
writes it: for each repository, `tag.ls` of the source and an `image.copy` of every tag
into the target. Each contender runs it with `once -c FILE` into a fresh, empty target
(cold), then once more (the no-op rerun):
- go        the Go regbot, `../shared/peers/regbot` (or `--go PATH`; skipped with a note
            when absent);
- embedded  `regbot once` without a broker;
- N nodes   `regbot once` on a cluster of N `regbot worker --transfers 2` nodes (scripts
            and transfers queues each) on a private redis-server (a database of its own per
            run); the nodes are started and ready before the clock starts.
Contenders alternate (all of them in turn, `--runs` times); medians are judged.

CPU is counted from /proc for every process involved during each run: the `once` process,
the nodes (every process of each node's session), redis-server, and the two
docker-registry processes. With 2 CPUs, a run cannot take less than the registries' own CPU
seconds / 2 (the "registry floor"): where a contender's wall time comes near it, the
registries' CPU is the limit, not regbot's.

Goals (issue 10): 200 tags cold on 2 nodes <= 0.5x Go; embedded cold <= 1.0x Go; no-op <=
1.0x Go (embedded and every cluster); 2,000 tags (`--large`) on 2 nodes <= 0.5x Go and 4
nodes faster than 2. (bench/scale.py prints the bandwidth-capped speed-up goals.)

Prints numbers, ratios and MET/MISSED; never asserts timings. Progress goes to stderr,
results to stdout.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/mirror.py`, Python puts bench/ first on sys.path, where bench/copy.py
# would shadow the standard library's `copy` (which dataclasses imports): keep bench/ last.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH] + [str(_BENCH)]

import contextlib  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from dataclasses import dataclass  # noqa: E402

from _cluster import Clusters, NodeSpec, interrupted_exit, sigterm_as_interrupt  # noqa: E402
from _common import (  # noqa: E402
    Registries,
    Table,
    bench_parser,
    cpu_seconds,
    human,
    load_note,
    machine_cpu_seconds,
    run_measured,
    session_cpu_seconds,
    step,
    verdict,
)
from _profile import MODES, find_py_spy, pyspy_argv, render_summary, summarize  # noqa: E402
from _regbot import (  # noqa: E402
    GO_HELP,
    GoPeer,
    alternate,
    find_go,
    median,
    regbot_argv,
    regbot_env,
    summary_row,
    write_config,
)
from _sets import MirrorSet, push_mirror_set  # noqa: E402

from tests.support import images  # noqa: E402

SRC, DST = "src.test", "dst.test"  # registry names in the config, mapped by `creds`
SCRIPT = "mirror"
DEFAULT_SIZE = (10, 20)
LARGE_SIZE = (40, 50)
NODE_TRANSFERS = 2
GOAL_CLUSTER_COLD = 0.5  # 2 nodes, cold, x Go
GOAL_EMBEDDED_COLD = 1.0
GOAL_NOOP = 1.0
NEAR_FLOOR = 1.5  # a wall time within this factor of the registry floor is registry-bound
SATURATED = 0.85  # the machine's CPUs busy at least this share of a run's wall time
ONE_CORE = 0.6  # a multi-threaded Python process on a CPU this share of the time is
#                 GIL-bound: its threads wait for each other, not for the network


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "Debian's docker-registry and redis-server (installed "
                          "with apt-get when missing), the Go regbot at ../shared/peers/"
                          "regbot or --go (optional), py-spy for --profile (pip install "
                          "py-spy); worker nodes are started by the benchmark")
    parser.add_argument("--repos", type=int, help=f"repositories (default {DEFAULT_SIZE[0]})")
    parser.add_argument("--tags", type=int, help=f"tags per repository (default {DEFAULT_SIZE[1]})")
    parser.add_argument("--large", action="store_true",
                        help=f"{LARGE_SIZE[0]} x {LARGE_SIZE[1]} = "
                             f"{LARGE_SIZE[0] * LARGE_SIZE[1]:,} tags")
    parser.add_argument("--nodes", default="1,2,4",
                        help="cluster sizes to run, comma separated (default 1,2,4; '' none)")
    parser.add_argument("--contenders", default="go,embedded,nodes",
                        help="go, embedded and/or nodes (the --nodes clusters), comma "
                             "separated (default all)")
    parser.add_argument("--runs", type=int, default=1,
                        help="runs of every contender, alternating (default 1; medians count)")
    parser.add_argument("--req-concurrent", type=int, metavar="N",
                        help="reqConcurrent of both registries, for every contender (default: "
                             "unset, 3; on a cluster it caps all nodes together)")
    parser.add_argument("--spread", action="store_true",
                        help="clusters send each small copy whole to a node "
                             "(defaults.spreadCopies: true) instead of running it where the "
                             "script runs")
    parser.add_argument("--go", help=GO_HELP)
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="also profile one cold embedded run with py-spy, files in DIR")
    args = parser.parse_args(argv)
    repos, tags = LARGE_SIZE if args.large else DEFAULT_SIZE
    repos, tags = args.repos or repos, args.tags or tags
    if repos < 1 or tags < 1 or args.runs < 1 or (args.req_concurrent or 1) < 1:
        parser.error("--repos, --tags, --runs and --req-concurrent must be at least 1")
    try:
        sizes = [int(n) for n in args.nodes.split(",") if n.strip()]
    except ValueError:
        parser.error(f"--nodes {args.nodes!r}: use numbers like 1,2,4")
    if any(n < 1 for n in sizes):
        parser.error("--nodes needs numbers of at least 1")
    wanted = {c.strip() for c in args.contenders.split(",") if c.strip()}
    if wanted - {"go", "embedded", "nodes"}:
        parser.error(f"--contenders: unknown {', '.join(sorted(wanted - {'go', 'embedded', 'nodes'}))}")
    go = find_go(args.go)
    contenders = [c for c in ("go", "embedded") if c in wanted and (c != "go" or go)]
    if "nodes" in wanted:
        contenders += [f"{n} node{'s' if n > 1 else ''}" for n in sizes]
    if not contenders:
        parser.error("nothing to run")
    py_spy = None
    if args.profile:
        py_spy = find_py_spy()
        if not py_spy:
            parser.error("--profile needs py-spy: pip install py-spy")
        args.profile.mkdir(parents=True, exist_ok=True)
    if not go and "go" in wanted:
        print(f"... {go.note}", file=sys.stderr, flush=True)

    with sigterm_as_interrupt(), \
            Bench(go, contenders, args.req_concurrent, spread=args.spread) as bench:
        mirror = bench.fill(repos, tags)
        runs = alternate(args.runs, contenders, bench.measure)
        profiles = bench.profile(py_spy, args.profile) if py_spy else []
    report(mirror, runs, go, args.large, args.req_concurrent, spread=args.spread)
    for title, text in profiles:
        print(f"\n== profile: {title}\n{text}")
    return 0


@dataclass
class Pass:
    """One `once` run (cold or no-op) of one contender."""

    wall: float
    once_cpu: float  # the `once` process
    nodes_cpu: float  # every process of the worker nodes (0 embedded and Go)
    redis_cpu: float
    registries_cpu: float  # source and target docker-registry
    machine_cpu: float  # every process of the machine, these and any other
    script_seconds: float | None  # our summary's duration (0.1 s steps); None for Go
    blobs_copied: int | None

    @property
    def cpu(self) -> float:
        return self.once_cpu + self.nodes_cpu + self.redis_cpu + self.registries_cpu


@dataclass
class Run:
    cold: Pass
    noop: Pass


class Bench:
    """Owns every process the benchmark starts; __exit__ stops them all."""

    def __init__(self, go: GoPeer, contenders: list[str], req_concurrent: int | None = None,
                 *, spread: bool = False) -> None:
        self.go = go
        self.contenders = contenders
        self.req_concurrent = req_concurrent
        self.spread = spread
        self._stack = contextlib.ExitStack()
        self.clusters: Clusters | None = None

    def __enter__(self) -> Bench:
        try:
            self.tmp = Path(self._stack.enter_context(
                tempfile.TemporaryDirectory(prefix="regbot-bench-mirror-")))
            self.regs = self._stack.enter_context(Registries())
            if any(c.endswith(("node", "nodes")) for c in self.contenders):
                self.clusters = self._stack.enter_context(Clusters(self.tmp))
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        print("... stopping everything started", file=sys.stderr, flush=True)
        self._stack.close()

    def fill(self, repos: int, tags: int) -> MirrorSet:
        self.src = self.regs.start()
        with step(f"building and pushing {repos} x {tags} images to {self.src.host}"):
            self.mirror = push_mirror_set(self.src.host, repos, tags)
        self.script = mirror_script(list(self.mirror.tags))
        return self.mirror

    def config(self, label: str, target_host: str) -> Path:
        return write_config(self.tmp / f"{label}.yml", {SRC: self.src.host, DST: target_host},
                            {SCRIPT: self.script}, req_concurrent=self.req_concurrent,
                            defaults={"spreadCopies": "true"} if self.spread else None)

    def measure(self, contender: str, n: int) -> Run:
        tgt = self.regs.start()
        label = f"{contender.replace(' ', '-')}-{n}"
        config = self.config(label, tgt.host)
        try:
            with contextlib.ExitStack() as stack:
                nodes = None
                if contender.endswith(("node", "nodes")):
                    count = int(contender.split()[0])
                    with step(f"starting {count} worker node(s), --transfers {NODE_TRANSFERS}"):
                        nodes = stack.enter_context(self.clusters.nodes(label, config, [
                            NodeSpec(f"{label}-n{i + 1}", transfers=NODE_TRANSFERS)
                            for i in range(count)]))
                command = [str(self.go.path)] if contender == "go" else regbot_argv()
                env = nodes.cluster_env() if nodes else regbot_env()
                registries = [self.src.proc.pid, tgt.proc.pid]
                passes = []
                for what in ("cold", "no-op"):
                    with step(f"{contender}: {what} mirror of {self.mirror.images} tags into "
                              f"{tgt.host} (run {n})"):
                        passes.append(self.once(command, config, env, nodes, registries,
                                                ours=contender != "go"))
            check_mirrored(self.src.host, tgt.host, self.mirror)
            cold, noop = passes
            if cold.blobs_copied is not None and cold.blobs_copied != self.mirror.blobs:
                raise RuntimeError(f"{contender} copied {cold.blobs_copied} blobs, expected "
                                   f"{self.mirror.blobs}")
            if noop.blobs_copied:
                raise RuntimeError(f"{contender}'s no-op rerun copied {noop.blobs_copied} blobs")
            return Run(cold, noop)
        finally:
            self.regs.stop(tgt)

    def once(self, command: list[str], config: Path, env: dict[str, str], nodes,
             registries: list[int], *, ours: bool) -> Pass:
        """One measured `once`, with the CPU every other process spent meanwhile."""
        node_sessions = [node.proc.pid for node in nodes.nodes] if nodes else []
        redis_pid = self.clusters.redis.proc.pid if self.clusters else None

        def others() -> tuple[float, float, float, float]:
            return (sum(session_cpu_seconds(s) for s in node_sessions),
                    cpu_seconds(redis_pid) if redis_pid else 0.0,
                    sum(cpu_seconds(p) for p in registries), machine_cpu_seconds())

        before = others()
        res = run_measured([*command, "once", "-c", str(config), "-v", "warn"], env=env,
                           timeout=3600)
        after = others()
        if res.returncode != 0:
            raise RuntimeError(f"{command[0]} once exited with {res.returncode}:\n"
                               + (res.stdout + res.stderr).decode(errors="replace")[-3000:]
                               + (nodes.logs() if nodes else ""))
        script_seconds = blobs = None
        if ours:
            from regbot.durations import parse_duration

            row = summary_row(res.stdout.decode(errors="replace"), SCRIPT)
            script_seconds = parse_duration(row["duration"])
            blobs = int(row["blobs-copied"])
        nodes_cpu, redis_cpu, registries_cpu, machine_cpu = (
            a - b for a, b in zip(after, before, strict=True))
        return Pass(res.seconds, res.cpu, nodes_cpu, redis_cpu, registries_cpu, machine_cpu,
                    script_seconds, blobs)

    def profile(self, py_spy: str, out_dir: Path) -> list[tuple[str, str]]:
        """The embedded cold mirror under py-spy once per mode (bench/_profile.py)."""
        profiles = []
        for mode in MODES:
            tgt = self.regs.start()
            config = self.config(f"profile-{mode}", tgt.host)
            out = out_dir / f"mirror-embedded-cold-{mode}.speedscope.json"
            argv = pyspy_argv(py_spy, out, [*regbot_argv(), "once", "-c", str(config), "-v",
                                            "warn"], mode)
            with step(f"embedded: cold mirror under py-spy ({mode}) into {out}"):
                res = run_measured(argv, env=regbot_env(), timeout=3600)
            self.regs.stop(tgt)
            if res.returncode != 0:
                raise RuntimeError(f"py-spy run failed ({res.returncode}): "
                                   f"{res.stderr.decode(errors='replace')[-2000:]}")
            profiles.append((f"embedded cold mirror, samples of {MODES[mode][1]}: {out}",
                             render_summary(summarize(out))))
        return profiles


def mirror_script(repos: list[str]) -> str:
    """The script a new user writes: every tag of every repository, one image.copy each."""
    names = ", ".join(f'"{r}"' for r in repos)
    return f"""
repos = {{{names}}}
for _, name in ipairs(repos) do
  local src = reference.new("{SRC}/" .. name)
  local dst = reference.new("{DST}/" .. name)
  for _, t in ipairs(tag.ls(src)) do
    src:tag(t)
    dst:tag(t)
    image.copy(src, dst)
  end
end
"""


def check_mirrored(src: str, tgt: str, mirror: MirrorSet) -> None:
    """Every tag of the source is in the target with the same digest."""
    def check(item: tuple[str, str]) -> None:
        repo, tag = item
        want = images.head_manifest(src, repo, tag).headers.get("Docker-Content-Digest")
        got = images.head_manifest(tgt, repo, tag).headers.get("Docker-Content-Digest")
        if not want or want != got:
            raise RuntimeError(f"{tgt}/{repo}:{tag} is {got}, the source has {want}")

    items = [(repo, tag) for repo, tags in mirror.tags.items() for tag in tags]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(check, items))


# --- report -------------------------------------------------------------------------------


def report(mirror: MirrorSet, runs: dict[str, list[Run]], go: GoPeer, large: bool,
           req_concurrent: int | None = None, *, spread: bool = False) -> None:
    cpus = os.cpu_count() or 1
    repos = len(mirror.tags)
    print(f"\nmirror: {repos} repositories x {mirror.images // repos} tags = {mirror.images} "
          f"images, {mirror.blobs} blobs, {human(mirror.bytes)}; one script (tag.ls + "
          f"image.copy per tag); nodes run `regbot worker --transfers {NODE_TRANSFERS}`; "
          f"reqConcurrent {req_concurrent or '3 (default)'} per registry; small copies "
          f"{'sent whole to the nodes' if spread else 'kept where the script runs'} "
          f"(spreadCopies {str(spread).lower()})")
    go_cold = median([r.cold.wall for r in runs["go"]]) if "go" in runs else None
    go_noop = median([r.noop.wall for r in runs["go"]]) if "go" in runs else None
    for what, pick, peer in (("cold", lambda r: r.cold, go_cold),
                             ("no-op", lambda r: r.noop, go_noop)):
        table = Table(["contender", "wall s", "script s", "vs Go", "once CPU", "nodes CPU",
                       "redis CPU", "registries CPU", "counted busy", "machine busy",
                       "registry floor s"])
        for name, rs in runs.items():
            passes = [pick(r) for r in rs]
            wall = median([p.wall for p in passes])
            script = [p.script_seconds for p in passes if p.script_seconds is not None]
            reg_cpu = median([p.registries_cpu for p in passes])
            table.add(name, f"{wall:.2f}", f"{median(script):.1f}" if script else "-",
                      f"{wall / peer:.2f}x" if peer else "-",
                      f"{median([p.once_cpu for p in passes]):.2f}",
                      f"{median([p.nodes_cpu for p in passes]):.2f}",
                      f"{median([p.redis_cpu for p in passes]):.2f}", f"{reg_cpu:.2f}",
                      f"{100 * median([p.cpu for p in passes]) / (wall * cpus):.0f}%",
                      f"{100 * median([p.machine_cpu for p in passes]) / (wall * cpus):.0f}%",
                      f"{reg_cpu / cpus:.2f}")
        print(f"\n{what} ({mirror.images} copies):")
        print(table.render())
        if any(len(rs) > 1 for rs in runs.values()):
            print("  every run, wall s: " + "; ".join(
                f"{name} " + " ".join(f"{pick(r).wall:.2f}" for r in rs)
                for name, rs in runs.items()))
    print(f"\n  wall s: `once` start to exit (clusters: nodes already running); script s: "
          f"the script's duration in our summary (0.1 s steps); CPU: user + system seconds "
          f"from /proc during the run; counted busy: all those CPU seconds / (wall x "
          f"{cpus} CPUs); machine busy: the same for every process of the machine "
          "(/proc/stat: other work competing for the CPUs shows here); registry floor: the "
          f"registries' CPU / {cpus} CPUs, the shortest wall time the registries alone allow")
    print("\nwhere the registries' CPU is the limit (wall within "
          f"{NEAR_FLOOR}x of the registry floor):")
    for name, rs in runs.items():
        for what, pick in (("cold", lambda r: r.cold), ("no-op", lambda r: r.noop)):
            wall = median([pick(r).wall for r in rs])
            floor = median([pick(r).registries_cpu for r in rs]) / cpus
            busy = median([pick(r).machine_cpu for r in rs]) / (wall * cpus)
            once_share = median([pick(r).once_cpu for r in rs]) / wall
            counted = median([pick(r).cpu for r in rs])
            registries = median([pick(r).registries_cpu for r in rs])
            if wall <= NEAR_FLOOR * floor:
                verdict_text = "registry-bound: the registries' CPU is the limit"
            elif busy >= SATURATED:
                whose = ("the registries' " if registries >= counted / 2 else "regbot's "
                         if counted >= busy * wall * cpus / 2 else "other processes' ")
                verdict_text = f"the CPUs are saturated, mostly by {whose}work"
            elif once_share >= ONE_CORE:
                verdict_text = ("regbot's `once` process is the limit: its own CPU (one "
                                "process, one GIL)")
            else:
                verdict_text = ("the CPUs are not saturated: latency (round trips one after "
                                "another) is the limit")
            times = f"{wall / floor:.1f}x" if floor > 0 else "-"
            print(f"  {name} {what}: wall {wall:.2f} s, floor {floor:.2f} s ({times}), machine "
                  f"{100 * busy:.0f}% busy, `once` on a CPU {100 * once_share:.0f}% of it: "
                  f"{verdict_text}")
    print(f"\n{load_note()}")
    print("\ngoals (medians):")
    if go_cold is None:
        print(f"  {go.note or 'the Go regbot was not run'}: no ratio can be judged")
        return
    cold = {name: median([r.cold.wall for r in rs]) for name, rs in runs.items()}
    noop = {name: median([r.noop.wall for r in rs]) for name, rs in runs.items()}
    size = f"{mirror.images:,} tags"
    if "2 nodes" in cold:
        goal = GOAL_CLUSTER_COLD
        print(f"  {size} cold on 2 nodes <= {goal}x Go: {cold['2 nodes'] / go_cold:.2f}x "
              f"({cold['2 nodes']:.2f} s vs {go_cold:.2f} s) "
              f"{verdict(cold['2 nodes'] <= goal * go_cold)}")
    if "embedded" in cold:
        print(f"  {size} embedded cold <= {GOAL_EMBEDDED_COLD}x Go: "
              f"{cold['embedded'] / go_cold:.2f}x {verdict(cold['embedded'] <= go_cold)}")
    for name, wall in noop.items():
        if name != "go":
            print(f"  {size} no-op {name} <= {GOAL_NOOP}x Go: {wall / go_noop:.2f}x "
                  f"({wall:.2f} s vs {go_noop:.2f} s) {verdict(wall <= GOAL_NOOP * go_noop)}")
    if "2 nodes" in cold and "4 nodes" in cold:
        note = "" if large else " (issue 10 sets it for --large)"
        print(f"  {size} cold: 4 nodes faster than 2{note}: {cold['4 nodes']:.2f} s vs "
              f"{cold['2 nodes']:.2f} s {verdict(cold['4 nodes'] < cold['2 nodes'])}")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(interrupted_exit())
