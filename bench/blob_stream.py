"""Benchmark: stream one large blob registry to registry; regbot against curl.

    python bench/blob_stream.py                 # 1 GiB, both regbot modes
    python bench/blob_stream.py --size 256MiB --mode blob

Starts its own docker-registry processes on free 127.0.0.1 ports (a source holding the
blob, and a fresh, empty target for each contender) and stops them at the end.

Contenders, each in a process of its own so its peak RSS is its alone:
- curl: `curl GET | curl -T - -X PUT <upload location>?digest=...` after a POST for the
  location (no verification on the client side; the registry checks the digest);
- regbot blob: the copy engine's unit for one blob (execute_unit on a BlobUnit: HEAD on
  the target, then blob_get streamed into blob_put, digest verified on the way);
- regbot image: copy_image of an image whose single layer is that blob.

Prints MB/s and peak RSS of each, the regbot/curl time ratio, and whether the goals hold:
peak RSS under 100 MB, throughput within 1.5x of curl's. Never asserts: these are numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from urllib.parse import urljoin

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
    ensure_tool,
    human,
    load_note,
    mbps,
    parse_size,
    run_pipeline,
    run_python_child,
    self_peak_rss,
    step,
    verdict,
)

from tests.support import images  # noqa: E402

REPO = "bench/blob"
TAG = "big"
SEED = 1
RSS_GOAL = 100 * MB
SPEED_GOAL = 1.5  # regbot may take at most this many times curl's time


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, "Debian's docker-registry and curl (installed with apt-get when missing)")
    parser.add_argument("--size", default="1GiB", help="blob size (default 1GiB)")
    parser.add_argument("--mode", choices=("blob", "image", "both"), default="both",
                        help="regbot path to measure: one blob unit, copy_image, or both")
    parser.add_argument("--runs", type=int, default=1,
                        help="measure each contender this many times (best time counts)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(json.loads(args.child))
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    size = parse_size(args.size)
    if not ensure_tool("curl", "curl"):
        raise SystemExit("curl is needed for the comparison (Debian package curl)")
    modes = ["blob", "image"] if args.mode == "both" else [args.mode]

    with Registries() as regs:
        src = regs.start()
        with step(f"pushing a {human(size)} blob to the source registry {src.host}"):
            digest = images.push_blob_stream(src.host, REPO, size, seed=SEED)
            if "image" in modes:
                push_image_of(src.host, digest, size)
        results: dict[str, list[Measure]] = {}
        for run in range(args.runs):
            label = f" (run {run + 1}/{args.runs})" if args.runs > 1 else ""
            tgt = regs.start()
            with step(f"curl GET | curl PUT into {tgt.host}{label}"):
                results.setdefault("curl", []).append(curl_copy(src.host, tgt.host, digest, size))
            regs.stop(tgt)
            for mode in modes:
                tgt = regs.start()
                with step(f"regbot {mode} copy into {tgt.host}{label}"):
                    results.setdefault(f"regbot {mode}", []).append(
                        regbot_copy(mode, src.host, tgt.host, digest, size))
                regs.stop(tgt)
    report(results, size, digest)
    return 0


# --- source content ---------------------------------------------------------------------


def push_image_of(host: str, digest: str, size: int) -> str:
    """An OCI image whose one layer is the big blob, tagged TAG."""
    config = images.make_config("linux/amd64", diff_ids=[digest])
    images.push_blob(host, REPO, config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": images.MT_OCI_MANIFEST,
        "config": {"mediaType": images.MT_OCI_CONFIG, "digest": images.sha256(config),
                   "size": len(config)},
        "layers": [{"mediaType": images.MT_OCI_LAYER, "digest": digest, "size": size}],
    }
    raw = json.dumps(manifest, indent=2).encode()
    images.push_manifest(host, REPO, TAG, raw, images.MT_OCI_MANIFEST)
    return images.sha256(raw)


# --- contenders -------------------------------------------------------------------------


def curl_copy(src: str, tgt: str, digest: str, size: int) -> Measure:
    """The curl pipeline (its transfer time is its processes' time; CPU is both curls',
    peak RSS the bigger one's); checks that the upload landed."""
    sess = images.session()
    start_url = f"http://{tgt}/v2/{REPO}/blobs/uploads/"
    resp = sess.post(start_url, timeout=30)
    if resp.status_code != 202:
        raise RuntimeError(f"POST {start_url}: HTTP {resp.status_code}")
    location = urljoin(start_url, resp.headers["Location"])
    put_url = location + ("&" if "?" in location else "?") + f"digest={digest}"
    get_cmd = ["curl", "-sS", "-f", f"http://{src}/v2/{REPO}/blobs/{digest}"]
    put_cmd = ["curl", "-sS", "-f", "-T", "-", "-X", "PUT",
               "-H", "Content-Type: application/octet-stream",
               "-o", "/dev/null", "-w", "%{http_code}", put_url]
    started = time.perf_counter()
    got, put = run_pipeline([get_cmd, put_cmd])
    seconds = time.perf_counter() - started
    if got.returncode or put.returncode or put.stdout.strip() != b"201":
        raise RuntimeError(
            f"curl pipeline failed: GET exit {got.returncode} {got.stderr.decode()!r}, "
            f"PUT exit {put.returncode} status {put.stdout.decode()!r} {put.stderr.decode()!r}")
    check_landed(tgt, digest, size)
    return Measure(seconds, seconds, got.cpu + put.cpu, max(got.peak_rss, put.peak_rss))


def regbot_copy(mode: str, src: str, tgt: str, digest: str, size: int) -> Measure:
    """regbot in a child process: the transfer's seconds, the process's seconds and CPU
    (Python start and imports included), its peak RSS."""
    payload = {"mode": mode, "src": src, "tgt": tgt, "digest": digest, "size": size}
    proc, report = run_python_child(Path(__file__), payload)
    if not size <= report["bytes"] < size + 64 * 1024:  # the image mode adds its config
        raise RuntimeError(f"regbot {mode} copied {report['bytes']} bytes, expected {size}")
    check_landed(tgt, digest, size)
    return Measure(report["seconds"], proc.seconds, proc.cpu, proc.peak_rss)


def check_landed(host: str, digest: str, size: int) -> None:
    resp = images.session().head(f"http://{host}/v2/{REPO}/blobs/{digest}", timeout=30)
    length = resp.headers.get("Content-Length", "")
    if resp.status_code != 200 or length != str(size):
        raise RuntimeError(f"the blob did not land in {host}: HTTP {resp.status_code}, "
                           f"Content-Length {length!r}")


def child(payload: dict) -> int:
    """Runs in its own process: one copy with regbot, then a JSON report on stdout."""
    from regbot.client import RegClient
    from regbot.copy import BlobUnit, copy_image, execute_unit
    from regbot.hosts import TLS_DISABLED, Host
    from regbot.types.ref import Reference

    src, tgt, digest, size = payload["src"], payload["tgt"], payload["digest"], payload["size"]
    client = RegClient([Host(name=src, tls=TLS_DISABLED), Host(name=tgt, tls=TLS_DISABLED)],
                       skip_docker_config=True)
    started = time.perf_counter()
    if payload["mode"] == "blob":
        unit = BlobUnit(
            id="bench-blob", src=f"{src}/{REPO}@{digest}", tgt=f"{tgt}/{REPO}@{digest}",
            descriptor={"mediaType": images.MT_OCI_LAYER, "digest": digest, "size": size},
        )
        result = execute_unit(client, unit)
        copied = result.bytes if result.status == "copied" else 0
    else:
        counted = copy_image(client, Reference.parse(f"{src}/{REPO}:{TAG}"),
                             Reference.parse(f"{tgt}/{REPO}:{TAG}"))
        copied = counted.bytes_copied  # the layer and the small config
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "bytes": copied, "peak_rss": self_peak_rss()}))
    return 0


# --- report -----------------------------------------------------------------------------


def report(results: dict[str, list[Measure]], size: int, digest: str) -> None:
    best = {name: best_of(runs) for name, runs in results.items()}
    curl_time = best["curl"].seconds
    table = Table(["contender", "transfer s", "process s", "MB/s", "CPU s", "peak RSS",
                   "time vs curl"])
    for name, m in best.items():
        table.add(name, f"{m.seconds:.2f}", f"{m.process_seconds:.2f}",
                  f"{mbps(size, m.seconds):.0f}", f"{m.cpu:.2f}", human(m.peak_rss),
                  f"{m.seconds / curl_time:.2f}x")
    print(f"\nblob {digest[:19]}..., {human(size)} ({size} bytes), registry to registry "
          "over 127.0.0.1")
    print(table.render())
    print("transfer s: regbot's time inside the copy call (curl: its pipeline); process s:"
          " start to exit, Python start and imports included; MB/s and ratios use transfer s;"
          " CPU s: user + system of the process(es), start to exit")
    if any(len(runs) > 1 for runs in results.values()):
        print("every run, transfer s: " + "; ".join(
            f"{name} " + " ".join(f"{m.seconds:.2f}" for m in runs) for name, runs in results.items()))
    print(load_note())
    print()
    for name, m in best.items():
        if name == "curl":
            continue
        seconds, rss = m.seconds, m.peak_rss
        ratio = seconds / curl_time
        print(f"{name}: peak RSS {rss / MB:.1f} MB < {RSS_GOAL / MB:.0f} MB: "
              f"{verdict(rss < RSS_GOAL)}; throughput {mbps(size, seconds):.0f} MB/s vs curl "
              f"{mbps(size, curl_time):.0f} MB/s (time ratio {ratio:.2f}x <= {SPEED_GOAL}x): "
              f"{verdict(ratio <= SPEED_GOAL)}")
    print("(curl's peak RSS is the larger of its two processes; best of the runs shown)")


if __name__ == "__main__":
    sys.exit(main())
