"""Benchmark: copy many multi-platform images registry to registry; regbot against skopeo.

    python bench/copy.py                        # 20 images, 3 platforms, 2 x 8 MiB layers
    python bench/copy.py --images 5 --no-count

Starts its own docker-registry processes on free 127.0.0.1 ports and stops them at the
end. The source gets N OCI indexes (tags img-00, img-01, ... of one repository), each with
one image per platform; every image has `--layers` layers of `--layer-size`, the first
`--shared` of which are shared by all images of that platform (a common base layer), the
rest its own. Each contender copies every tag, one after the other, into a fresh, empty
target registry:
- regbot: one process calling copy_image for each tag (its default concurrency);
- skopeo: Debian's `skopeo copy --all` once per tag (installed with apt-get if missing).

Prints wall time, MB/s (unique bytes stored in the target / wall time), peak RSS and the
request count of each, and the ratios. Requests are counted in a separate pass through
counting proxies (tests/support/fronts.py FaultFront without faults), so the proxies never
slow down the timed pass. Goals: regbot's wall time at most skopeo's, peak RSS under
150 MB. Never asserts: these are numbers.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

# Run as `python bench/<script>.py`, Python puts bench/ first on sys.path, where copy.py
# would shadow the standard library's `copy`: keep bench/ last instead.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH] + [str(_BENCH)]

from _common import (  # noqa: E402
    MB,
    Measure,
    Registries,
    Table,
    bench_parser,
    best_of,
    check_copied,
    ensure_tool,
    human,
    load_note,
    mbps,
    parse_size,
    run_measured,
    run_python_child,
    self_peak_rss,
    step,
    verdict,
)
from _sets import COPY_PLATFORMS as PLATFORMS  # noqa: E402
from _sets import push_copy_set  # noqa: E402

REPO = "bench/app"
RSS_GOAL = 150 * MB


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "Debian's docker-registry and skopeo (installed with apt-get when missing; --no-skopeo skips it)")
    parser.add_argument("--images", type=int, default=20, help="number of images (default 20)")
    parser.add_argument("--platforms", type=int, default=3, choices=range(1, len(PLATFORMS) + 1),
                        help="platforms per image (default 3)")
    parser.add_argument("--layers", type=int, default=2, help="layers per image (default 2)")
    parser.add_argument("--shared", type=int, default=1,
                        help="of those, layers shared by all images of a platform (default 1)")
    parser.add_argument("--layer-size", default="8MiB", help="size of each layer (default 8MiB)")
    parser.add_argument("--no-count", action="store_true",
                        help="skip the request-counting pass through proxies")
    parser.add_argument("--no-skopeo", action="store_true", help="measure regbot only")
    parser.add_argument("--runs", type=int, default=1,
                        help="time each contender this many times, alternating (best counts)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(json.loads(args.child))
    if args.runs < 1 or args.images < 1:
        parser.error("--runs and --images must be at least 1")
    if not 0 <= args.shared <= args.layers:
        parser.error("--shared must be between 0 and --layers")
    layer_size = parse_size(args.layer_size)
    skopeo = None if args.no_skopeo else ensure_tool("skopeo", "skopeo")
    if not args.no_skopeo and not skopeo:
        print("skopeo is not available: measuring regbot only", file=sys.stderr)

    with Registries() as regs:
        src = regs.start()
        with step(f"building and pushing {args.images} images to {src.host}"):
            tags, unique_bytes, blobs = push_copy_set(
                src.host, REPO, args.images, PLATFORMS[: args.platforms], args.layers,
                args.shared, layer_size)
        contenders = {"regbot": regbot_copy}
        if skopeo:
            contenders["skopeo"] = lambda s, t, tg: skopeo_copy(skopeo, s, t, tg)
        timed: dict[str, list[Measure]] = {}
        for n in range(args.runs):
            label = f" (run {n + 1}/{args.runs})" if args.runs > 1 else ""
            for name, run in contenders.items():
                tgt = regs.start()
                with step(f"{name}: copying {len(tags)} images into {tgt.host}{label}"):
                    timed.setdefault(name, []).append(run(src.host, tgt.host, tags))
                check_copied(src.host, tgt.host, REPO, tags)
                regs.stop(tgt)
        counts: dict[str, collections.Counter] = {}
        if not args.no_count:
            from tests.support.fronts import FaultFront

            for name, run in contenders.items():
                tgt = regs.start()
                src_front, tgt_front = FaultFront(src), FaultFront(tgt)
                try:
                    with step(f"{name}: counting requests through proxies"):
                        run(src_front.host, tgt_front.host, tags)
                    counts[name] = collections.Counter(
                        m for m, _ in [*src_front.requests, *tgt_front.requests])
                finally:
                    src_front.stop()
                    tgt_front.stop()
                regs.stop(tgt)
    report(args, layer_size, len(blobs), unique_bytes, timed, counts)
    return 0


# --- contenders -------------------------------------------------------------------------


def regbot_copy(src: str, tgt: str, tags: list[str]) -> Measure:
    """regbot in a child process: seconds in copy_image, the process's seconds and CPU
    (Python start and imports included), its peak RSS, what it did."""
    proc, report = run_python_child(Path(__file__), {"src": src, "tgt": tgt, "tags": tags})
    note = (f"{report['blobs_copied']} blobs copied, {report['blobs_skipped']} present, "
            f"{human(report['bytes_copied'])}")
    return Measure(report["seconds"], proc.seconds, proc.cpu, proc.peak_rss, note)


def child(payload: dict) -> int:
    """Runs in its own process: copy every tag with copy_image, report JSON on stdout."""
    from regbot.client import RegClient
    from regbot.copy import copy_image
    from regbot.hosts import TLS_DISABLED, Host
    from regbot.types.ref import Reference

    src, tgt = payload["src"], payload["tgt"]
    client = RegClient([Host(name=src, tls=TLS_DISABLED), Host(name=tgt, tls=TLS_DISABLED)],
                       skip_docker_config=True)
    totals = collections.Counter()
    started = time.perf_counter()
    for tag in payload["tags"]:
        result = copy_image(client, Reference.parse(f"{src}/{REPO}:{tag}"),
                            Reference.parse(f"{tgt}/{REPO}:{tag}"))
        totals.update({k: v for k, v in result.to_dict().items() if isinstance(v, int)})
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "peak_rss": self_peak_rss(),
                      "blobs_copied": totals["blobs_copied"],
                      "blobs_skipped": totals["blobs_skipped"],
                      "bytes_copied": totals["bytes_copied"]}))
    return 0


def skopeo_copy(skopeo: str, src: str, tgt: str, tags: list[str]) -> Measure:
    """`skopeo copy --all` per tag; times summed (process starts included: that is how
    it is used), peak RSS the largest of the runs."""
    total, cpu, peak = 0.0, 0.0, 0
    for tag in tags:
        res = run_measured([
            skopeo, "--insecure-policy", "copy", "--all", "--quiet", "--preserve-digests",
            "--src-tls-verify=false", "--dest-tls-verify=false",
            f"docker://{src}/{REPO}:{tag}", f"docker://{tgt}/{REPO}:{tag}",
        ])
        if res.returncode != 0:
            raise RuntimeError(f"skopeo copy of {tag} failed: {res.stderr.decode()[-2000:]}")
        total += res.seconds
        cpu += res.cpu
        peak = max(peak, res.peak_rss)
    return Measure(total, total, cpu, peak, f"{len(tags)} skopeo processes")


# --- report -----------------------------------------------------------------------------


def report(args: argparse.Namespace, layer_size: int, blob_count: int, unique_bytes: int,
           runs: dict[str, list[Measure]],
           counts: dict[str, collections.Counter]) -> None:
    timed = {name: best_of(measures, by="process_seconds") for name, measures in runs.items()}
    print(f"\n{args.images} images x {args.platforms} platforms x {args.layers} layers of "
          f"{human(layer_size)} ({args.shared} shared per platform): {blob_count} distinct "
          f"blobs, {human(unique_bytes)} to store in the target")
    table = Table(["contender", "wall s", "copy s", "MB/s", "CPU s", "peak RSS", "requests",
                   "what it did"])
    for name, m in timed.items():
        requests = str(sum(counts[name].values())) if name in counts else "-"
        table.add(name, f"{m.process_seconds:.2f}", f"{m.seconds:.2f}",
                  f"{mbps(unique_bytes, m.process_seconds):.0f}", f"{m.cpu:.2f}",
                  human(m.peak_rss), requests, m.note)
    print(table.render())
    for name, counter in counts.items():
        print(f"  {name} requests by method: "
              + ", ".join(f"{m} {n}" for m, n in sorted(counter.items())))
    print("  wall s: process start to exit (regbot: one Python process, imports included;"
          " skopeo: the sum of its processes); copy s: regbot's time inside copy_image;"
          " MB/s: target bytes / wall s; CPU s: user + system of the process(es)")
    if any(len(measures) > 1 for measures in runs.values()):
        print("  every run, wall s: " + "; ".join(
            f"{name} " + " ".join(f"{m.process_seconds:.2f}" for m in measures)
            for name, measures in runs.items()))
    print(f"  {load_note()}")
    print()
    ours_time, ours_rss = timed["regbot"].process_seconds, timed["regbot"].peak_rss
    if "skopeo" in timed:
        peer_time, peer_rss = timed["skopeo"].process_seconds, timed["skopeo"].peak_rss
        ratios = [f"wall time regbot/skopeo {ours_time / peer_time:.2f}x",
                  f"peak RSS regbot/skopeo {ours_rss / peer_rss:.2f}x"]
        if "regbot" in counts and "skopeo" in counts:
            ratios.append("requests regbot/skopeo "
                          f"{sum(counts['regbot'].values()) / sum(counts['skopeo'].values()):.2f}x")
        print("ratios: " + ", ".join(ratios))
        print(f"goal wall time <= skopeo's ({ours_time:.2f}s vs {peer_time:.2f}s): "
              f"{verdict(ours_time <= peer_time)}")
    print(f"goal peak RSS < {RSS_GOAL / MB:.0f} MB ({ours_rss / MB:.1f} MB): "
          f"{verdict(ours_rss < RSS_GOAL)}")


if __name__ == "__main__":
    sys.exit(main())
