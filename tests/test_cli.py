"""The command line as a user meets it: exit codes, one-line errors, logs, server loop."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def regbot(*args: str, stdin: str | None = None, cwd: Path | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "regbot", *args], input=stdin,
                          capture_output=True, text=True, timeout=timeout, cwd=cwd or REPO)


def test_version_default_and_format():
    proc = regbot("version")
    assert proc.returncode == 0
    info = json.loads(proc.stdout)
    assert set(info) >= {"VCSRef", "VCSTag"}
    assert not proc.stdout.endswith("\n\n")
    proc = regbot("version", "--format", "{{.VCSTag}}")
    assert proc.stdout.strip() == info["VCSTag"]


def test_config_error_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("version: 1\ndefaults:\n  interval: 60x\nscripts: []\n")
    proc = regbot("once", "-c", str(bad))
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "60x" in lines[0] and "bad.yml" in lines[0]
    assert "Traceback" not in proc.stderr


def test_missing_config_flag_and_file():
    proc = regbot("once")
    assert proc.returncode == 2 and "-c" in proc.stderr and "Traceback" not in proc.stderr
    proc = regbot("once", "-c", "/nonexistent/regbot.yml")
    assert proc.returncode == 2 and "/nonexistent/regbot.yml" in proc.stderr


def test_bad_verbosity_is_usage_error(tmp_path):
    proc = regbot("-v", "loud", "version")
    assert proc.returncode == 2 and "loud" in proc.stderr and "Traceback" not in proc.stderr


FAILING = """\
version: 1
defaults:
  parallel: 2
scripts:
  - name: good
    script: |
      log("all fine")
  - name: broken
    script: |
      log("about to fail")
      error "something went wrong"
"""


def test_failed_script_reports_name_line_and_exit_1():
    proc = regbot("-c", "-", "once", stdin=FAILING)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    summary = proc.stdout.splitlines()
    assert any("script=good" in s and "status=ok" in s for s in summary)
    broken = next(s for s in summary if "script=broken" in s)
    assert "status=failed" in broken and "something went wrong" in broken
    assert "line 2" in broken  # the Lua line of error "..."
    assert "msg=\"all fine\" script=good" in proc.stderr


def test_json_logs_carry_script_name():
    proc = regbot("once", "-c", "-", "--logopt", "json", stdin=FAILING)
    records = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert records, proc.stderr
    hello = [r for r in records if r.get("msg") == "all fine"]
    assert hello and hello[0]["script"] == "good" and hello[0]["level"] == "info"


def test_verbosity_error_hides_info():
    proc = regbot("once", "-c", "-", "-v", "error", stdin=FAILING)
    assert "all fine" not in proc.stderr
    assert "Script failed" in proc.stderr


SERVER = """\
version: 1
defaults:
  parallel: 2
scripts:
  - name: slow
    schedule: "@every 1s"
    script: |
      log("tick")
      local t = os.clock()
      while os.clock() - t < 1.6 do end
  - name: endless
    interval: 1s
    script: |
      while true do end
  - name: unscheduled
    script: |
      log("never from server")
"""


def test_server_runs_on_schedule_and_skips_overlaps(tmp_path):
    cfg = tmp_path / "regbot.yml"
    cfg.write_text(SERVER)
    proc = subprocess.Popen([sys.executable, "-m", "regbot", "server", "-c", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(6.5)
    stopping = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    # the endless run was cancelled at once, not waited for
    assert time.monotonic() - stopping < 3, "the running script was not cancelled"
    assert proc.returncode == 0, err
    assert 'script=endless status=cancelled' in err
    ticks = err.count('msg=tick script=slow')
    assert ticks >= 2, err
    assert "Skipping run, previous run still going" in err
    assert "never from server" not in err
    assert "No schedule or interval found" in err and "unscheduled" in err


def test_once_on_a_terminal_shows_live_progress_and_table(tmp_path):
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    pid, fd = pty.fork()
    if pid == 0:  # child: a terminal on stdin/stdout/stderr
        os.chdir(tmp_path)
        os.environ["COLUMNS"] = "160"
        os.execv(sys.executable, [sys.executable, "-m", "regbot", "once", "-c",
                                  "examples/demo/regbot.yml"])
    output = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    _, status = os.waitpid(pid, 0)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.decode(errors="replace"))  # no colours
    assert os.waitstatus_to_exitcode(status) == 0, text
    # the live display's lines: scripts done of total, blobs done of total
    assert re.search(r"scripts\s.*\b3/3\b", text), text
    assert re.search(r"blobs\s.*\b(\d+)/\1\b", text), text
    assert re.search(r"copies\s.*\b(\d+)/\1\b", text), text  # every image copy ended
    assert "in flight: 0 copies" in text
    assert "regbot summary" in text  # the table title
    assert "mirror minor versions" in text
    assert (tmp_path / "regbot-demo" / "library" / "alpine" / "index.json").exists()


def _layout_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_demo_command_from_readme_then_dry_run_changes_nothing(tmp_path):
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    proc = regbot("once", "-c", "examples/demo/regbot.yml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "regbot-demo"
    index = json.loads((out / "regclient" / "example" / "index.json").read_text())
    tags = {m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]
            if "org.opencontainers.image.ref.name" in m.get("annotations", {})}
    assert tags == {"ci-003", "latest", "stable"}
    before = _layout_files(out)
    # the debian script re-copies the two tags it pruned and prunes them again: all skipped
    dry = regbot("once", "-c", "examples/demo/regbot.yml", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "dry-run=true" in dry.stderr
    assert _layout_files(out) == before


def test_live_display_status_line_counts_copies_and_rate_limits():
    import io

    from regbot.copy.progress import ProgressEvent
    from regbot.display import LiveDisplay
    from regbot.types.ratelimit import RateLimit

    limits = {"docker.io": RateLimit(set=True, limit=100, remain=76), "registry:5000": None}
    display = LiveDisplay(1, io.StringIO(), lambda: limits)
    listener = display.for_script("s")
    for n in range(3):
        listener.copy_started(ProgressEvent.for_copy(str(n), "a", "b"))
    listener.copy_ended(ProgressEvent.for_copy("0", "a", "b"))
    listener.copy_ended(ProgressEvent.for_copy("1", "a", "b", error="copy failed"))
    line = display._status_line()
    assert "in flight: 1 copies" in line and "failed: 1" in line
    assert "rate limit left: docker.io 76/100" in line and "registry:5000" not in line
