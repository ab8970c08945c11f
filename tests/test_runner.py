"""run_script: results, statuses, error lines, counts, logs, and the quick-start scripts."""

from __future__ import annotations

import json

import pytest

from regbot.config import Config, Defaults, ScriptConfig, parse_config
from regbot.engine import Engine
from regbot.hosts import Host
from regbot.runner import RunOptions, ScriptResult, run_script
from tests.sandbox_support import LogCapture
from tests.support import images as im
from tests.support.quickstart import scripts_text


@pytest.fixture
def logcap():
    cap = LogCapture("debug")
    yield cap
    cap.close()


def _config(*registries, scripts=(), parallel=1, creds=()):
    hosts = [Host(name=r.host, tls="disabled") for r in registries] + list(creds)
    return Config(version=1, creds=hosts, defaults=Defaults(parallel=parallel),
                  scripts=list(scripts), source="regbot.yml")


def test_ok_result_counts_and_serialises(registry, registry2, repo, logcap):
    img = im.build_image(seed=21)
    im.push_image(registry.host, repo, img, tag="v1")
    im.push_image(registry.host, repo, img, tag="old")
    script = ScriptConfig(name="copy and prune", script=f"""
        image.copy("{registry.host}/{repo}:v1", "{registry2.host}/{repo}:v1")
        tag.delete("{registry.host}/{repo}:old")
        log("done")
    """)
    result = run_script(Engine.embedded(_config(registry, registry2, scripts=[script])), script, RunOptions())
    assert result.status == "ok" and result.error == ""
    assert result.images_copied == 1
    assert result.blobs_copied == len(img.blobs)
    assert result.bytes_copied == sum(len(b) for b in img.blobs.values())
    assert result.tags_deleted == 1
    assert result.duration > 0
    assert ScriptResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    assert im.list_tags(registry.host, repo) == ["v1"]
    # every line of the run names the script, including the client's own lines
    lines = logcap.records
    assert any(r["msg"] == "done" for r in lines)
    assert lines and all(r.get("script") == "copy and prune" for r in lines)
    # a second run of the same script transfers nothing
    again = run_script(Engine.embedded(_config(registry, registry2, scripts=[script])), script, RunOptions())
    assert again.status == "failed"  # the "old" tag is gone now
    assert again.images_copied == 0 and again.blobs_copied == 0
    assert "tag.delete" in again.error and "line 3" in again.error


def test_failed_result_names_script_lua_and_yaml_lines(registry, logcap):
    text = f"""version: 1
creds:
  - registry: {registry.host}
    tls: disabled
scripts:
  - name: broken
    script: |
      log("starting")
      local tags = tag.ls("{registry.host}/does/not/exist")
"""
    config = parse_config(text, source="conf/regbot.yml")
    script = config.scripts[0]
    result = run_script(Engine.embedded(config), script, RunOptions())
    assert result.status == "failed"
    assert "\n" not in result.error
    assert result.error.startswith("script 'broken' line 2 (conf/regbot.yml line 9): tag.ls: ")
    assert "does/not/exist" in result.error
    errors = logcap.messages(level="error")
    assert errors and errors[-1]["script"] == "broken" and errors[-1]["error"] == result.error
    assert "Traceback" not in logcap.text


def test_lua_error_and_timeout_statuses():
    script = ScriptConfig(name="err", script='local x = 1\nerror "Timed out waiting on rate limit"')
    result = run_script(Engine.embedded(_config(scripts=[script])), script, RunOptions())
    assert (result.status, result.error) == (
        "failed", "script 'err' line 2: Timed out waiting on rate limit")

    loop = ScriptConfig(name="spin", script="while true do end", timeout=0.5)
    result = run_script(Engine.embedded(_config(scripts=[loop])), loop, RunOptions())
    assert result.status == "timeout"
    assert result.error == "script 'spin': timed out after 500ms"
    assert 0.45 < result.duration < 1.5


def test_internal_errors_never_show_tracebacks(monkeypatch):
    cap = LogCapture("trace")
    try:
        def explode(*_, **__):
            raise RuntimeError("unexpected\nstate")

        monkeypatch.setattr("regbot.runner.Sandbox", explode)
        script = ScriptConfig(name="bad client", script="log('never')")
        result = run_script(Engine.embedded(_config(scripts=[script])), script, RunOptions())
        assert result.status == "failed"
        assert result.error == "script 'bad client': internal error: RuntimeError: unexpected state"
        assert not cap.messages(msg="never")
        traces = [r for r in cap.records if "exception" in r]
        assert traces and all(r["level"] == "trace" for r in traces)
        assert "Traceback" in traces[0]["exception"]
        assert all("Traceback" not in r["msg"] and "Traceback" not in r.get("error", "")
                   for r in cap.records if r["level"] != "trace")
    finally:
        cap.close()


def test_secrets_are_redacted_from_log_lines(auth_registry, logcap):
    secret = auth_registry.password
    cred = Host(name=auth_registry.host, tls="disabled", user="alice", password=secret)
    script = ScriptConfig(name="leaky", script=f'log("the password is {secret}")\n'
                                               f'tag.ls("{auth_registry.host}/x/y")')
    result = run_script(Engine.embedded(_config(scripts=[script], creds=[cred])), script, RunOptions())
    assert secret not in logcap.text
    assert any(r["msg"] == "the password is ***" for r in logcap.records)
    assert secret not in result.error


def test_dry_run_option_reaches_the_sandbox(registry, repo, logcap):
    img = im.build_image(seed=22)
    im.push_image(registry.host, repo, img, tag="keep")
    script = ScriptConfig(name="dry", script=f'tag.delete("{registry.host}/{repo}:keep")')
    result = run_script(Engine.embedded(_config(registry, scripts=[script])), script, RunOptions(dry_run=True))
    assert result.status == "ok" and result.tags_deleted == 0
    assert im.list_tags(registry.host, repo) == ["keep"]
    assert logcap.messages(msg="Delete tag")[0]["dry-run"] is True


# ------------------------------------------------------------------ the quick-start


def _quickstart_yaml(docker_host: str, local_host: str) -> str:
    """The repository's regbot.yml (the quick start's), its creds pointed at local registries."""
    creds = (
        "version: 1\n"
        "creds:\n"
        "  - registry: docker.io\n"
        f"    hostname: {docker_host}\n"
        "    tls: disabled\n"
        "  - registry: registry:5000\n"
        f"    hostname: {local_host}\n"
        "    tls: disabled\n"
    )
    return creds + scripts_text()


def _push_tags(host, repo, tags, seed, **kw):
    for i, tag in enumerate(tags):
        im.push_image(host, repo, im.build_image(seed=seed + i, layer_size=256, **kw), tag=tag)


def test_quickstart_scripts_run_unchanged(fresh_registry, registry2, logcap):
    hub, local = fresh_registry, registry2
    _push_tags(hub.host, "library/alpine", ["3.9", "3.18", "3.19", "3.20", "3.21", "edge",
                                            "latest", "3.20.1"], seed=100)
    _push_tags(hub.host, "library/debian", ["11.9", "12.5", "12.6", "bookworm", "testing",
                                            "testing-20240101", "testing-20240201",
                                            "testing-20240301", "testing-20240401",
                                            "testing-20240501"], seed=200)
    # the local registry already holds two older date-stamped debian images
    _push_tags(local.host, "library/debian", ["testing-20230101", "testing-20230201"], seed=300)
    old = im.build_image(seed=400, labels={"org.opencontainers.image.created": "2020-01-01T00:00:00Z"})
    new = im.build_image(seed=401, labels={"org.opencontainers.image.created": "2999-01-01T00:00:00Z"})
    for tag in ("ci-001", "ci-002", "latest", "stable"):
        im.push_image(local.host, "regclient/example", old, tag=tag)
    im.push_image(local.host, "regclient/example", new, tag="ci-003")

    config = parse_config(_quickstart_yaml(hub.host, local.host), source="regbot.yml")
    engine = Engine.embedded(config)  # one per process, as in `once`
    assert [s.name for s in config.scripts] == [
        "mirror minor versions", "debian date stamped mirror", "delete old builds"]

    # a dry run first changes nothing
    before = {repo: sorted(im.list_tags(local.host, repo)) for repo in im.list_catalog(local.host)}
    for script in config.scripts:
        result = run_script(engine, script, RunOptions(dry_run=True))
        assert result.status == "ok", result.error
    assert {repo: sorted(im.list_tags(local.host, repo))
            for repo in im.list_catalog(local.host)} == before

    results = [run_script(engine, script, RunOptions()) for script in config.scripts]
    assert [r.status for r in results] == ["ok", "ok", "ok"], [r.error for r in results]

    # mirror minor versions: the three newest x.y tags of each image
    assert sorted(im.list_tags(local.host, "library/alpine")) == ["3.19", "3.20", "3.21"]
    assert results[0].images_copied == 6  # 3 alpine + 3 debian (12.5, 12.6, 11.9)
    # debian date stamped: three newest copied, the older ones pruned
    debian = sorted(im.list_tags(local.host, "library/debian"))
    assert debian == ["11.9", "12.5", "12.6", "testing-20240301", "testing-20240401",
                      "testing-20240501"]
    assert results[1].tags_deleted == 2
    # delete old builds: ci tags created before the cutoff go, the others stay
    assert sorted(im.list_tags(local.host, "regclient/example")) == ["ci-003", "latest", "stable"]
    assert results[2].tags_deleted == 2
    for tag in ("latest", "stable"):
        head = im.head_manifest(local.host, "regclient/example", tag)
        assert head.headers["Docker-Content-Digest"] == old.digest
    messages = [r["msg"] for r in logcap.records if r.get("script") == "delete old builds"]
    assert any(m.startswith("Searching for images before: ") for m in messages)
    assert "Deleting ci-001 created on 2020-01-01T00:00:00Z" in messages
    assert "Skipping ci-003 created on 2999-01-01T00:00:00Z" in messages
