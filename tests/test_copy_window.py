"""Copies overlap inside a script (regbot/sandbox/copies.py), and the script still sees
each copy as done when its next call touches the repository: real docker-registry
processes, a FaultFront slowing the target so copies are still in flight."""

from __future__ import annotations

import threading

import pytest

from regbot.config import ConfigError, parse_config
from regbot.copy import LocalExecutor
from regbot.engine import Engine
from regbot.limits import Limits
from regbot.runner import RunOptions, run_script
from tests.sandbox_support import LogCapture
from tests.support import images as im
from tests.support.fronts import FaultFront


class CountingExecutor(LocalExecutor):
    """A LocalExecutor that remembers how many copies ran at the same time."""

    def __init__(self) -> None:
        super().__init__()
        self._guard = threading.Lock()
        self.running = 0
        self.most = 0
        self.copies = 0

    def run(self, units, ctx):
        with self._guard:
            self.running += 1
            self.copies += 1
            self.most = max(self.most, self.running)
        try:
            return super().run(units, ctx)
        finally:
            with self._guard:
                self.running -= 1


@pytest.fixture
def slow_target(registry2):
    """registry2 behind a front that holds every manifest PUT a while."""
    front = FaultFront(registry2)
    front.add("PUT", "/manifests/", "delay", times=-1, seconds=0.3)
    yield front
    front.stop()


def _config(src_host: str, tgt_host: str, script: str, window: int | None = None) -> str:
    extra = f"defaults:\n  copyWindow: {window}\n" if window is not None else ""
    body = "\n".join("      " + line for line in script.strip("\n").splitlines())
    return (
        "version: 1\ncreds:\n"
        f"  - registry: src.test\n    hostname: {src_host}\n    tls: disabled\n"
        f"  - registry: dst.test\n    hostname: {tgt_host}\n    tls: disabled\n"
        f"{extra}scripts:\n  - name: t\n    script: |\n{body}\n"
    )


def _run(text: str, executor=None):
    config = parse_config(text)
    engine = Engine(config, Limits.in_memory(), executor)
    return run_script(engine, config.scripts[0], RunOptions())


def _push_tags(host: str, repo: str, count: int, seed: int) -> list[im.Image]:
    out = []
    for n in range(count):
        img = im.build_image(seed=seed + n, layers=1, layer_size=512)
        im.push_image(host, repo, img, tag=f"v{n}")
        out.append(img)
    return out


MIRROR = """
for _, t in ipairs(tag.ls("src.test/{repo}")) do
  image.copy("src.test/{repo}:" .. t, "dst.test/{repo}:" .. t)
end
"""


@pytest.mark.parametrize("window,most", [(4, 4), (1, 1)])
def test_copies_of_a_loop_overlap_up_to_the_window(registry, slow_target, repo, window, most):
    _push_tags(registry.host, repo, 6, seed=500)
    executor = CountingExecutor()
    result = _run(_config(registry.host, slow_target.host, MIRROR.format(repo=repo), window),
                  executor)
    assert result.status == "ok", result.error
    assert result.images_copied == 6 and executor.copies == 6
    # with copyWindow 1 copies run one after another (the Go regbot's way); above, they
    # overlap, never more than the window
    assert executor.most == most if window == 1 else 1 < executor.most <= window
    assert sorted(im.list_tags(slow_target.host, repo)) == [f"v{n}" for n in range(6)]


def test_a_read_of_the_target_waits_for_the_copies_into_it(registry, slow_target, repo):
    _push_tags(registry.host, repo, 3, seed=510)
    script = MIRROR.format(repo=repo) + f"""
local tags = tag.ls("dst.test/{repo}")
table.sort(tags)
log("target has " .. table.concat(tags, ","))
local m = manifest.head("dst.test/{repo}:v2")
log("v2 is " .. m:descriptor().Digest)
"""
    cap = LogCapture("info")
    try:
        result = _run(_config(registry.host, slow_target.host, script, 8))
    finally:
        cap.close()
    assert result.status == "ok", result.error
    messages = [r["msg"] for r in cap.records if r.get("script") == "t"]
    assert "target has v0,v1,v2" in messages
    assert any(m.startswith("v2 is sha256:") for m in messages)


def test_a_tag_delete_waits_for_the_copy_it_would_race(registry, slow_target, repo):
    _push_tags(registry.host, repo, 2, seed=520)
    script = f"""
image.copy("src.test/{repo}:v0", "dst.test/{repo}:v0")
image.copy("src.test/{repo}:v1", "dst.test/{repo}:v1")
tag.delete("dst.test/{repo}:v0")
"""
    result = _run(_config(registry.host, slow_target.host, script, 8))
    assert result.status == "ok", result.error
    assert im.list_tags(slow_target.host, repo) == ["v1"]


FAILING = """
image.copy("src.test/{repo}:v0", "dst.test/{repo}:v0")
image.copy("src.test/{repo}:missing", "dst.test/{repo}:missing")
local n = 0
while true do
  n = n + 1
  image.copy("src.test/{repo}:v0", "dst.test/{repo}:again" .. n)
end
"""


@pytest.mark.parametrize("window", [8, 1])
def test_a_failed_copy_fails_the_script_at_the_next_point_naming_its_line(
        registry, slow_target, repo, window):
    _push_tags(registry.host, repo, 1, seed=530)
    cap = LogCapture("info")
    try:
        result = _run(_config(registry.host, slow_target.host, FAILING.format(repo=repo),
                              window))
    finally:
        cap.close()
    assert result.status == "failed"
    # the line of the image.copy that failed, and the copy's own error, whatever the window
    assert result.error.startswith("script 't' line 2 (regbot.yml line 15): image.copy: "), result.error
    assert "missing" in result.error and ("not found" in result.error.lower()
                                          or "unknown" in result.error.lower())
    # the loop after it stopped: a copy failing is noticed by the next image.copy at the
    # latest once it ends, and nothing is started after that
    started = [r for r in cap.records if r.get("msg") == "Copy image"]
    assert len(started) < 2 + window + 2


def test_a_copy_failing_last_fails_the_script_at_its_end(registry, slow_target, repo):
    _push_tags(registry.host, repo, 1, seed=540)
    script = f"""
image.copy("src.test/{repo}:v0", "dst.test/{repo}:v0")
log("done with the loop")
image.copy("src.test/{repo}:nope", "dst.test/{repo}:nope")
"""
    result = _run(_config(registry.host, slow_target.host, script, 8))
    assert result.status == "failed"
    assert result.error.startswith("script 't' line 3 (regbot.yml line 16): image.copy: "), result.error
    assert "nope" in result.error
    # what was started before the failure still finished
    assert im.list_tags(slow_target.host, repo) == ["v0"]


def test_a_timeout_stops_the_copies_in_flight(registry, repo, registry2):
    _push_tags(registry.host, repo, 4, seed=550)
    front = FaultFront(registry2)
    front.add("PUT", "/manifests/", "delay", times=-1, seconds=3)
    try:
        text = _config(registry.host, front.host, MIRROR.format(repo=repo), 4).replace(
            "  - name: t\n", "  - name: t\n    timeout: 1s\n")
        result = _run(text)
    finally:
        front.stop()
    assert result.status == "timeout", result.error
    assert "timed out after 1s" in result.error


def test_copy_window_settings_are_read_and_checked():
    config = parse_config(
        "version: 1\ndefaults:\n  copyWindow: 3\nscripts:\n"
        "  - name: a\n    script: log('a')\n"
        "  - name: b\n    copyWindow: 1\n    script: log('b')\n")
    assert [s.copy_window for s in config.scripts] == [3, 1]
    assert parse_config("version: 1\nscripts: []\n").defaults.copy_window == 8
    with pytest.raises(ConfigError, match=r"regbot.yml:3:.*copyWindow"):
        parse_config("version: 1\ndefaults:\n  copyWindow: 0\nscripts: []\n")
