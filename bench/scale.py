"""Benchmark: scaling out on Celery; transfer processes against a per-connection cap, and
the per-unit cost of running copy units as Celery tasks.

    python bench/scale.py                          # 8 images x 4 layers of 2 MiB, 4 MB/s
    python bench/scale.py --images 4 --transfers 1,2 --no-overhead
    python bench/scale.py --layout nodes           # K transfer-only nodes of 1 process each

Everything runs on 127.0.0.1 and is stopped at the end (also on Ctrl-C, SIGTERM or an
error): a private redis-server (broker, result backend and shared state; a database of its
own for each run), docker-registry processes (tests/support/registry.py), a FaultFront
(tests/support/fronts.py) in front of the source that caps every connection at
`--bandwidth`, and the worker nodes (`regbot worker`, through tests/support/celery_cluster.py).

1. Scale: N single-platform images of `--layers` layers of `--layer-size` each (all blobs
   distinct) in the source. For each K of `--transfers`, a fresh target registry and a
   fresh cluster with K transfer processes; `regbot once` runs one script that copies the N
   images (image.copy, one after the other) from the capped front into the target. Prints
   throughput (bytes copied / the script's duration on the worker), the share of the cap
   (K x bandwidth) reached and the speed-up against the first K.

   Layout (`--layout`): `node` (default) is one `regbot worker --transfers K` node; `nodes`
   is K `regbot worker --queues transfers --transfers 1` nodes plus one scripts-only node.
   The default is one node because on one machine both put each transfer in a process of
   its own with its own connections (a prefork pool process is one, a node's only pool
   process is another), so the per-connection cap is met the same way; K nodes only add
   K-1 node supervisors and Celery parent processes competing for the same two CPUs.
   `nodes` is there to check that units spread across nodes as well.

   Every registry of the config gets `reqConcurrent: --req-concurrent` (default 16): the
   default (3 requests at a time per registry, cluster-wide) would otherwise cap 4
   transfer processes at 3 source reads.

2. Overhead: one image of `--tiny-layers` tiny layers copied with copy_image twice, each in
   a child process of its own, into fresh target registries: embedded (the LocalExecutor,
   `--overhead-concurrency` threads, as `regbot once` without a broker does) and distributed
   (the CeleryExecutor, each unit a `regbot.transfer` task on a node with
   `--overhead-concurrency` transfer processes, as a script on a worker does). Both use the
   same config (reqConcurrent = that concurrency), both copy a small warm-up image first.
   Prints the executor's time per unit of each, the difference (what distribution costs
   per unit) and the ratio. The source is read directly (no cap): this is about per-unit
   cost, not bandwidth.

Prints numbers and ratios, never asserts timings. Progress goes to stderr, results to stdout.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

# Run as `python bench/scale.py`, Python puts bench/ first on sys.path, where bench/copy.py
# would shadow the standard library's `copy` (which dataclasses imports): keep bench/ last.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH] + [str(_BENCH)]

from dataclasses import dataclass, field  # noqa: E402

from _cluster import Clusters, NodeSpec, interrupted_exit, sigterm_as_interrupt  # noqa: E402
from _common import (  # noqa: E402
    Registries,
    Table,
    bench_parser,
    check_copied,
    ensure_tool,
    human,
    load_note,
    mbps,
    parse_size,
    step,
    verdict,
)
from _overhead import measure_overhead  # noqa: E402
from _regbot import summary_row, write_config  # noqa: E402

from tests.support import images  # noqa: E402

if TYPE_CHECKING:
    from tests.support.celery_cluster import NodeSet

SPEEDUP_GOALS = {2: 1.9, 4: 3.6}  # issue 10: bandwidth-capped speed-up over 1 transfer
SCALE_REPO = "bench/scale"
TINY_REPO = "bench/tiny"
WARM_REPO = "bench/warm"
SCRIPT_NAME = "copy images"
SRC, DST = "src.test", "dst.test"  # registry names in the config, mapped by `creds`


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "Debian's docker-registry and redis-server (installed with apt-get when missing); worker nodes are started by the benchmark")
    parser.add_argument("--images", type=int, default=8, help="images to copy (default 8)")
    parser.add_argument("--layers", type=int, default=4, help="layers per image (default 4)")
    parser.add_argument("--layer-size", default="2MiB", help="size of each layer (default 2MiB)")
    parser.add_argument("--bandwidth", default="4MB",
                        help="cap of each source connection, per second (default 4MB)")
    parser.add_argument("--transfers", default="1,2,4",
                        help="transfer process counts to measure, comma separated (default 1,2,4)")
    parser.add_argument("--layout", choices=("node", "nodes"), default="node",
                        help="node: one node with K transfer processes (default); nodes: K "
                             "transfer-only nodes of one process each")
    parser.add_argument("--req-concurrent", type=int, default=16,
                        help="reqConcurrent of every registry in the scale runs (default 16)")
    parser.add_argument("--tiny-layers", type=int, default=200,
                        help="layers of the overhead image (default 200)")
    parser.add_argument("--tiny-size", default="512", help="size of each tiny layer (default 512)")
    parser.add_argument("--overhead-concurrency", type=int, default=1,
                        help="threads (embedded) and transfer processes (distributed) of the "
                             "overhead copies (default 1: per-unit latency)")
    parser.add_argument("--runs", type=int, default=1,
                        help="measure everything this many times (best counts; all are printed)")
    parser.add_argument("--no-scale", action="store_true", help="skip the scale runs")
    parser.add_argument("--no-overhead", action="store_true", help="skip the overhead runs")
    args = parser.parse_args(argv)
    try:
        ks = [int(k) for k in args.transfers.split(",") if k.strip()]
    except ValueError:
        parser.error(f"--transfers {args.transfers!r}: use numbers like 1,2,4")
    if not ks or min(ks) < 1:
        parser.error("--transfers needs numbers of at least 1")
    for name in ("images", "layers", "tiny_layers", "overhead_concurrency", "runs",
                 "req_concurrent"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    layer_size, tiny_size = parse_size(args.layer_size), parse_size(args.tiny_size)
    bandwidth = parse_size(args.bandwidth)
    if layer_size < 1 or tiny_size < 1 or bandwidth < 1:
        parser.error("sizes and --bandwidth must be positive")
    if not ensure_tool("redis-server", "redis-server"):
        raise SystemExit("redis-server is needed (Debian package redis-server)")

    with sigterm_as_interrupt(), Bench() as bench:
        scale = overhead = None
        if not args.no_scale:
            scale = bench.scale(ks, args.layout, args.images, args.layers, layer_size,
                                bandwidth, args.req_concurrent, args.runs)
        if not args.no_overhead:
            overhead = bench.overhead(args.tiny_layers, tiny_size, args.overhead_concurrency,
                                      args.runs)
    if scale is not None:
        report_scale(scale)
    if overhead is not None:
        report_overhead(overhead)
    print(f"\n{load_note()}")
    return 0


# --- results ----------------------------------------------------------------------------


@dataclass
class ScaleRun:
    transfers: int
    script_seconds: float  # the script's duration, measured on the worker
    once_seconds: float  # `regbot once`, process start to exit
    bytes_copied: int
    blobs_copied: int
    peak_connections: int  # most source requests in flight at once (the front's gauge)
    by_node: dict[str, int]  # transfers each node finished


@dataclass
class Scale:
    layout: str
    images: int
    layers: int
    layer_size: int
    bandwidth: int
    req_concurrent: int
    runs: dict[int, list[ScaleRun]] = field(default_factory=dict)


@dataclass
class OverheadRun:
    units: int
    run_seconds: float  # inside the executor's run()
    copy_seconds: float  # the whole copy_image (planning included)
    blobs_copied: int


@dataclass
class Overhead:
    layers: int
    layer_size: int
    concurrency: int
    runs: dict[str, list[OverheadRun]] = field(default_factory=dict)


# --- the bench --------------------------------------------------------------------------


class Bench:
    """Owns every process the benchmark starts; __exit__ stops them all."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Bench:
        try:
            self.tmp = Path(self._stack.enter_context(
                tempfile.TemporaryDirectory(prefix="regbot-bench-scale-")))
            self.regs = self._stack.enter_context(Registries())
            self.clusters = self._stack.enter_context(Clusters(self.tmp))
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        print("... stopping everything started", file=sys.stderr, flush=True)
        self._stack.close()

    def cluster(self, name: str, config: Path, *, transfers: int,
                layout: str = "node") -> contextlib.AbstractContextManager[NodeSet]:
        """Worker nodes on a fresh Redis database, ready; stopped on the way out."""
        if layout == "node":
            specs = [NodeSpec(name, transfers=transfers)]
        else:
            specs = [NodeSpec(f"{name}-scripts", queues="scripts")] + [
                NodeSpec(f"{name}-t{n + 1}", transfers=1, queues="transfers")
                for n in range(transfers)]
        return self.clusters.nodes(name, config, specs)

    # --- scale ---

    def scale(self, ks: list[int], layout: str, count: int, layers: int, layer_size: int,
              bandwidth: int, req_concurrent: int, runs: int) -> Scale:
        from regbot.durations import parse_duration
        from tests.support.fronts import FaultFront

        out = Scale(layout, count, layers, layer_size, bandwidth, req_concurrent)
        src = self.regs.start()
        with step(f"building and pushing {count} images of {layers} x {human(layer_size)} "
                  f"to {src.host}"):
            tags, expect_blobs = push_scale_images(src.host, count, layers, layer_size)
            total_bytes = count * layers * layer_size + config_bytes(src.host, tags)
        front = FaultFront(src, bandwidth=bandwidth)
        self._stack.callback(front.stop)
        script = "\n".join(f'image.copy("{SRC}/{SCALE_REPO}:{t}", "{DST}/{SCALE_REPO}:{t}")'
                           for t in tags)
        for n in range(runs):
            for k in ks:
                label = f"k{k}-run{n + 1}"
                tgt = self.regs.start()
                config = write_config(self.tmp / f"{label}.yml",
                                      {SRC: front.host, DST: tgt.host}, {SCRIPT_NAME: script},
                                      req_concurrent=req_concurrent)
                what = (f"{k} transfer process{'es' if k > 1 else ''} "
                        f"({'one node' if layout == 'node' else f'{k} nodes'})")
                with contextlib.ExitStack() as stack:
                    with step(f"starting a cluster with {what}"):
                        nodes = stack.enter_context(
                            self.cluster(label, config, transfers=k, layout=layout))
                    front.reset_gauge()
                    with step(f"regbot once: copying {count} images into {tgt.host}"):
                        started = time.perf_counter()
                        proc = nodes.once("-v", "warn", timeout=max(
                            300.0, 4 * count * layers * layer_size / bandwidth))
                        once_seconds = time.perf_counter() - started
                    if proc.returncode != 0:
                        raise RuntimeError(f"regbot once failed ({proc.returncode}):\n"
                                           f"{proc.stdout}\n{proc.stderr[-3000:]}\n"
                                           f"{nodes.logs()}")
                    row = summary_row(proc.stdout, SCRIPT_NAME)
                    by_node = {node.name: node.transfers_done() for node in nodes.nodes
                               if "transfers" in node.queues}
                    peak = front.max_concurrent
                check_copied(src.host, tgt.host, SCALE_REPO, tags)
                if int(row["blobs-copied"]) != expect_blobs:
                    raise RuntimeError(f"copied {row['blobs-copied']} blobs, expected "
                                       f"{expect_blobs}: {proc.stdout}")
                out.runs.setdefault(k, []).append(ScaleRun(
                    k, parse_duration(row["duration"]), once_seconds, total_bytes,
                    int(row["blobs-copied"]), peak, by_node))
                self.regs.stop(tgt)
        return out

    # --- overhead ---

    def overhead(self, layers: int, layer_size: int, concurrency: int, runs: int) -> Overhead:
        out = Overhead(layers, layer_size, concurrency)
        src = self.regs.start()
        with step(f"building and pushing an image of {layers} layers of {human(layer_size)}"):
            tiny = images.build_image(layers=layers, layer_size=layer_size,
                                      seed=images.hash_seed("tiny", layers, layer_size))
            images.push_image(src.host, TINY_REPO, tiny, tag="v1")
            warm = images.build_image(layers=4, layer_size=layer_size,
                                      seed=images.hash_seed("warm", layer_size))
            images.push_image(src.host, WARM_REPO, warm, tag="v1")
        for n in range(runs):
            label = f" (run {n + 1}/{runs})" if runs > 1 else ""
            for mode in ("embedded", "distributed"):
                tgt = self.regs.start()
                config = write_config(self.tmp / f"overhead-{mode}-{n + 1}.yml",
                                      {SRC: src.host, DST: tgt.host}, {},
                                      req_concurrent=concurrency)
                copies = [[f"{SRC}/{WARM_REPO}:v1", f"{DST}/{WARM_REPO}:v1"],
                          [f"{SRC}/{TINY_REPO}:v1", f"{DST}/{TINY_REPO}:v1"]]
                redis_url = None
                with contextlib.ExitStack() as stack:
                    if mode == "distributed":
                        with step(f"starting a node with {concurrency} transfer process"
                                  f"{'es' if concurrency > 1 else ''}"):
                            nodes = stack.enter_context(self.cluster(
                                f"overhead-{n + 1}", config, transfers=concurrency))
                        redis_url = nodes.redis_url
                    with step(f"{mode}: copying {layers} tiny layers into {tgt.host}{label}"):
                        report = measure_overhead(config, copies, mode=mode,
                                                  redis_url=redis_url)
                check_copied(src.host, tgt.host, TINY_REPO, ["v1"])
                timed = report["copies"][-1]
                if timed["blobs_copied"] != len(tiny.blobs):
                    raise RuntimeError(f"{mode}: copied {timed['blobs_copied']} blobs, "
                                       f"expected {len(tiny.blobs)}")
                out.runs.setdefault(mode, []).append(OverheadRun(
                    timed["units"], timed["run_seconds"], timed["copy_seconds"],
                    timed["blobs_copied"]))
                self.regs.stop(tgt)
        return out


# --- content, config, checks --------------------------------------------------------------


def push_scale_images(host: str, count: int, layers: int, layer_size: int
                      ) -> tuple[list[str], int]:
    """Push the scale images (every blob distinct); their tags and blobs per full copy."""
    tags, blobs = [], 0
    for i in range(count):
        image = images.build_image(layers=layers, layer_size=layer_size,
                                   seed=images.hash_seed("scale", i, layers, layer_size),
                                   labels={"bench.image": str(i)})
        tag = f"img-{i:02d}"
        images.push_image(host, SCALE_REPO, image, tag=tag)
        tags.append(tag)
        blobs += len(image.blobs)
    return tags, blobs


def config_bytes(host: str, tags: list[str]) -> int:
    """Bytes of the images' manifests and configs (small next to the layers, but copied)."""
    total = 0
    for tag in tags:
        doc = images.manifest_json(host, SCALE_REPO, tag)
        raw = images.get_manifest(host, SCALE_REPO, tag).content
        total += len(raw) + int(doc["config"]["size"])
    return total


# --- report -----------------------------------------------------------------------------


def report_scale(scale: Scale) -> None:
    best = {k: min(runs, key=lambda r: r.script_seconds) for k, runs in scale.runs.items()}
    base_k = min(best)
    base = best[base_k]
    layout = ("one node, `regbot worker --transfers K`" if scale.layout == "node" else
              "K nodes `regbot worker --queues transfers --transfers 1` + a scripts node")
    print(f"\nscale: {scale.images} images x {scale.layers} layers of {human(scale.layer_size)}"
          f" ({human(base.bytes_copied)}, {base.blobs_copied} blobs) from a source capped at "
          f"{scale.bandwidth / 1e6:g} MB/s per connection; {layout}; reqConcurrent "
          f"{scale.req_concurrent}; one script, images copied one after the other")
    table = Table(["transfers", "script s", "once s", "MB/s", "of cap", "speed-up",
                   "peak src conns", "transfers by node"])
    for k in sorted(best):
        run = best[k]
        rate = mbps(run.bytes_copied, run.script_seconds)
        cap = k * scale.bandwidth / 1e6
        table.add(k, f"{run.script_seconds:.1f}", f"{run.once_seconds:.1f}", f"{rate:.1f}",
                  f"{100 * rate / cap:.0f}%", f"{base.script_seconds / run.script_seconds:.2f}x",
                  run.peak_connections,
                  " ".join(f"{name}:{n}" for name, n in run.by_node.items()))
    print(table.render())
    print("  script s: the script's duration on the worker (summary, 0.1 s steps); once s: "
          "`regbot once` start to exit; MB/s: bytes copied / script s; of cap: MB/s / "
          "(transfers x cap); speed-up: script s at "
          f"{base_k} / script s; peak src conns: most source requests in flight at once")
    if any(len(r) > 1 for r in scale.runs.values()):
        print("  every run, script s: " + "; ".join(
            f"{k}: " + " ".join(f"{r.script_seconds:.1f}" for r in runs)
            for k, runs in sorted(scale.runs.items())))
    for k, goal in SPEEDUP_GOALS.items():
        if k in best and base_k == 1:
            speedup = base.script_seconds / best[k].script_seconds
            print(f"goal speed-up at {k} transfer processes >= {goal}x (issue 10): "
                  f"{speedup:.2f}x {verdict(speedup >= goal)}")


def report_overhead(overhead: Overhead) -> None:
    best = {mode: min(runs, key=lambda r: r.run_seconds) for mode, runs in overhead.runs.items()}
    emb, dist = best["embedded"], best["distributed"]
    c = overhead.concurrency
    print(f"\noverhead: one image of {overhead.layers} layers of {human(overhead.layer_size)}"
          f" ({emb.units} units: layers, config, manifest), concurrency {c}, after a "
          "warm-up copy")
    table = Table(["executor", "units", "run s", "ms/unit", "copy s"])
    for name, run in (
            (f"embedded (LocalExecutor, {c} thread{'s' if c > 1 else ''})", emb),
            (f"distributed (CeleryExecutor, {c} transfer process{'es' if c > 1 else ''})",
             dist)):
        table.add(name, run.units, f"{run.run_seconds:.2f}",
                  f"{1000 * run.run_seconds / run.units:.1f}", f"{run.copy_seconds:.2f}")
    print(table.render())
    per_unit = 1000 * (dist.run_seconds / dist.units - emb.run_seconds / emb.units)
    print("  run s: inside the executor's run() (the units, not the planning); ms/unit: "
          "run s / units (with concurrency > 1 an inverse throughput, not a latency); copy s:"
          " all of copy_image")
    if any(len(r) > 1 for r in overhead.runs.values()):
        print("  every run, run s: " + "; ".join(
            f"{mode} " + " ".join(f"{r.run_seconds:.2f}" for r in runs)
            for mode, runs in overhead.runs.items()))
    print(f"per-unit overhead of distribution: {per_unit:.1f} ms "
          f"(distributed {1000 * dist.run_seconds / dist.units:.1f} ms/unit - embedded "
          f"{1000 * emb.run_seconds / emb.units:.1f} ms/unit); "
          f"ratio distributed/embedded {dist.run_seconds / emb.run_seconds:.2f}x")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(interrupted_exit())
