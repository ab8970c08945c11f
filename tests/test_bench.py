"""The benchmarks run end to end on tiny sizes (real registries, redis-server, a worker
node), and their helpers compute what they claim. No timing is asserted: the benchmarks
print numbers, these tests check that they run, verify their copies and judge goals.
The Go regbot is never needed: it is pointed at a path that does not exist."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support.processes import REPO_ROOT, regbot_env

BENCH = REPO_ROOT / "bench"


def run_bench(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH / script), *args], cwd="/",
                          env=regbot_env(), capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def bench_modules(monkeypatch):
    # bench/ goes last, as the scripts put it: bench/copy.py must not shadow `copy`.
    monkeypatch.setattr(sys, "path", [*sys.path, str(BENCH)])


def test_vs_go_runs_every_section_without_the_go_regbot(tmp_path):
    proc = run_bench("vs_go.py", "--runs", "1", "--go", str(tmp_path / "no-regbot"),
                     "--images", "1", "--image-layer-size", "4KiB", "--layer-size", "1MiB",
                     "--small-layer", "256KiB", "--tiny-layers", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert f"Go regbot column skipped: no executable at {tmp_path / 'no-regbot'}" in out
    for section in ("regbot version", "cold copy:", "one layer of 1.0 MiB", "the quick start",
                    "per copy unit"):
        assert f"== {section}" in out
    goals = out[out.index("== goals"):]
    for goal in ("`regbot version` wall", "cold copy wall", "no-op resync wall",
                 "1.0 MiB layer wall vs curl", "peak RSS of a copy",
                 "quick start no-op: total requests", "quick start no-op: 401 requests",
                 "per copy unit"):
        assert goal in goals
    # Absolute goals are judged without the peer; ratios to Go are not.
    assert "<= 150 ms" in goals and ("MET" in goals or "MISSED" in goals)
    cold_row = next(line for line in goals.splitlines() if line.startswith("cold copy wall"))
    assert cold_row.split()[-1] == "-"


def test_mirror_runs_embedded_and_on_a_one_node_cluster(tmp_path):
    proc = run_bench("mirror.py", "--repos", "2", "--tags", "2", "--nodes", "1",
                     "--req-concurrent", "5", "--spread", "--go", str(tmp_path / "no-regbot"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "2 repositories x 2 tags = 4 images, 10 blobs" in out
    assert "reqConcurrent 5 per registry; small copies sent whole to the nodes" in out
    for what in ("cold (4 copies):", "no-op (4 copies):"):
        table = out[out.index(what):].split("\n\n")[0]
        assert "\nembedded " in table and "\n1 node " in table
    assert "embedded cold: wall" in out and "1 node no-op: wall" in out
    assert "Go regbot column skipped" in out


def test_mirror_set_and_script(bench_modules, fresh_registry):
    from _sets import push_mirror_set
    from mirror import mirror_script

    from tests.support import images

    mirror = push_mirror_set(fresh_registry.host, repos=2, tags=3)
    assert mirror.images == 6
    assert mirror.blobs == 2 * (1 + 3 * 2)  # per repository: the shared layer; per tag a
    #                                         config and its own layer
    for repo, tags in mirror.tags.items():
        assert sorted(images.list_tags(fresh_registry.host, repo)) == tags
        first, second = (images.manifest_json(fresh_registry.host, repo, t) for t in tags[:2])
        assert first["layers"][0] == second["layers"][0]  # shared within the repository
        assert first["layers"][1] != second["layers"][1]
        assert [layer["size"] for layer in first["layers"]] == [64 * 1024, 4 * 1024]
    script = mirror_script(list(mirror.tags))
    assert 'tag.ls(src)' in script and "image.copy(src, dst)" in script


def test_config_both_regbots_read_loads_here(bench_modules, tmp_path):
    from _regbot import summary_row, write_config

    from regbot.config import load_config

    path = write_config(tmp_path / "regbot.yml", {"src.test": "127.0.0.1:5000"},
                        {"copy": 'image.copy("a", "b")\nlog("x")'}, req_concurrent=7)
    config = load_config(str(path))
    host = next(h for h in config.creds if h.name == "src.test")
    assert host.hostname == "127.0.0.1:5000" and host.concurrency == 7
    assert [s.name for s in config.scripts] == ["copy"]
    assert 'log("x")' in config.scripts[0].script
    row = summary_row('noise\nsummary script=copy status=ok duration=1.2s bytes="3 KiB"\n',
                      "copy")
    assert row == {"script": "copy", "status": "ok", "duration": "1.2s", "bytes": "3 KiB"}
    with pytest.raises(RuntimeError, match="did not succeed"):
        summary_row("summary script=copy status=failed\n", "copy")


def test_go_peer_is_found_next_to_the_repository_or_given(bench_modules, tmp_path):
    from _regbot import GO_DEFAULT, find_go

    assert REPO_ROOT.parent / "shared" / "peers" / "regbot" == GO_DEFAULT
    missing = find_go(str(tmp_path / "nothing"))
    assert not missing and "--go PATH" in missing.note
    peer = tmp_path / "regbot"
    peer.write_text("#!/bin/sh\n")
    peer.chmod(0o755)
    found = find_go(str(peer))
    assert found and found.path == str(peer) and not found.note


def test_request_kinds(bench_modules):
    from vs_go import request_kind

    assert request_kind("GET", "/token?scope=repository%3Aa%3Apull") == "token"
    assert request_kind("GET", "/v2/") == "ping /v2/"
    assert request_kind("GET", "/v2/library/alpine/tags/list?n=100") == "tag list"
    assert request_kind("HEAD", "/v2/library/alpine/manifests/3.20") == "manifest HEAD"
    assert request_kind("PUT", "/v2/a/blobs/uploads/x?digest=sha256:1") == "blob PUT"


def test_profile_summary_counts_threads_leaves_and_waits(bench_modules, tmp_path):
    from _profile import render_summary, summarize

    repo_file = str(REPO_ROOT / "regbot" / "limits.py")
    frames = [
        {"name": "thread (1): MainThread", "file": None, "line": 0},  # py-spy's pseudo frame
        {"name": "main", "file": str(REPO_ROOT / "regbot" / "cli.py"), "line": 1},
        {"name": "Limits.request_slot", "file": repo_file, "line": 2},
        {"name": "Condition.wait", "file": os.path.join(os.path.dirname(os.__file__),
                                                        "threading.py"), "line": 3},
        {"name": "_find_and_load", "file": "<frozen importlib._bootstrap>", "line": 4},
    ]
    doc = {"shared": {"frames": frames}, "profiles": [
        {"name": 'Process 1 Thread 1 ""', "samples": [[0, 1, 2], [0, 1, 2], [0, 1, 3]],
         "weights": [0.004] * 3},
        {"name": 'Process 1 Thread 2 "worker"', "samples": [[4], []], "weights": [0.004] * 2},
    ]}
    path = tmp_path / "p.json"
    path.write_text(json.dumps(doc))
    spots = summarize(path)
    assert spots.samples == 5 and spots.imports == 1
    assert dict(spots.threads) == {"MainThread": 3, "worker": 2}
    assert spots.self_by_function[0] == ("Limits.request_slot", "regbot/limits.py", 2)
    assert ("main", "regbot/cli.py", 3) in spots.total_by_function
    assert not any(fn.startswith("thread (") for fn, _f, _n in spots.total_by_function)
    # A wait is put on the code that waits.
    assert ("Condition.wait <- main (regbot/cli.py)", 1) in spots.where_by_thread["MainThread"]
    text = render_summary(spots)
    assert "Limits.request_slot" in text and "40.0%" in text


def test_cpu_counters_read_proc(bench_modules):
    from _common import cpu_seconds, machine_cpu_seconds, session_cpu_seconds

    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE, start_new_session=True)
    try:
        assert cpu_seconds(os.getpid()) > 0
        assert session_cpu_seconds(os.getsid(0)) >= cpu_seconds(os.getpid())
        assert session_cpu_seconds(child.pid) == pytest.approx(cpu_seconds(child.pid))
        assert machine_cpu_seconds() > 0
    finally:
        child.communicate(b"")
    assert cpu_seconds(child.pid) == 0.0  # gone
