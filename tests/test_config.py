"""Loading regbot.yml: every key, the defaults inheritance, YAML features, the quick start."""

from __future__ import annotations

import io
import logging
import textwrap
from pathlib import Path

import pytest

from regbot.config import (
    DEFAULT_USER_AGENT,
    Config,
    Defaults,
    ScriptConfig,
    load_config,
    parse_config,
)
from regbot.errors import ConfigError
from regbot.hosts import Host

REPO = Path(__file__).resolve().parent.parent


def cfg(text: str) -> Config:
    return parse_config(textwrap.dedent(text))


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv("HUB_USER", "alice")
    monkeypatch.delenv("UNSET_VAR", raising=False)


# --- the quick start ---------------------------------------------------------------------


def test_quickstart_loads():
    config = load_config(str(REPO / "regbot.yml"))
    assert config.version == 1
    assert config.source == str(REPO / "regbot.yml")
    local, hub = config.creds
    assert local.name == "registry:5000"
    assert local.hostname == "registry:5000"
    assert local.tls == "disabled"
    assert hub.name == "docker.io"
    assert hub.hostname == "registry-1.docker.io"
    assert hub.tls == "enabled"
    assert hub.user == "alice"
    assert hub.password == ""  # /var/run/secrets/hub_token is unreadable here: empty, as Go
    assert config.defaults == Defaults(
        parallel=2, interval=3600.0, schedule="", timeout=600.0, user_agent=DEFAULT_USER_AGENT
    )
    names = [s.name for s in config.scripts]
    assert names == ["mirror minor versions", "debian date stamped mirror", "delete old builds"]
    timeouts = [s.timeout for s in config.scripts]
    assert timeouts == [3540.0, 3540.0, 600.0]  # 59m twice, then the default 600s
    assert all(s.interval == 3600.0 and s.schedule == "" for s in config.scripts)
    assert config.scripts[0].script.startswith('imageList = {"library/alpine", "library/debian"}\n')
    assert "tag.delete(ref)" in config.scripts[2].script


def test_quickstart_script_lines_point_into_the_file():
    lines = (REPO / "regbot.yml").read_text().splitlines()
    for script in load_config(str(REPO / "regbot.yml")).scripts:
        for n, lua_line in enumerate(script.script.splitlines(), start=1):
            assert lines[script.yaml_line(n) - 1].strip() == lua_line.strip()


def test_quickstart_with_a_secret_file(tmp_path):
    token = tmp_path / "hub_token"
    token.write_text("dckr_pat_example\n")
    text = (REPO / "regbot.yml").read_text().replace("/var/run/secrets/hub_token", str(token))
    hub = parse_config(text).creds[1]
    assert (hub.user, hub.password) == ("alice", "dckr_pat_example")
    assert "dckr_pat_example" not in repr(hub)


def test_quickstart_logs_the_deprecated_scheme(caplog):
    with caplog.at_level(logging.WARNING, logger="regbot.config"):
        load_config(str(REPO / "regbot.yml"))
    messages = [r.getMessage() for r in caplog.records]
    assert any("creds[0] (registry:5000): scheme is deprecated" in m for m in messages)
    assert all(r.name == "regbot.config" for r in caplog.records)


# --- Go's own test files (cmd/regbot/testdata) ---------------------------------------------


def test_go_testdata_config1_merge_key():
    config = cfg(
        """\
        version: 1
        creds:
          - registry: registry:5000
            tls: disabled
        defaults:
          parallel: 2
          interval: 60m
          timeout: 600s
        x-anchor: &anchor
          name: this is overridden
          timeout: 1m
        scripts:
          - <<: *anchor
            name: hello world
            script: |
              log("hello world")
          - name: top of the hour
            schedule: "0 * * * *"
            script: |
              log("ding")
        """
    )
    hello, top = config.scripts
    assert (hello.name, hello.timeout, hello.interval, hello.schedule) == (
        "hello world",
        60.0,
        3600.0,
        "",
    )
    assert hello.script == 'log("hello world")\n'
    assert (top.name, top.timeout, top.interval, top.schedule) == (
        "top of the hour",
        600.0,
        None,
        "0 * * * *",
    )


def test_go_testdata_config2_default_schedule():
    config = cfg(
        """\
        creds:
          - registry: registry:5000
            tls: disabled
        defaults:
          schedule: "15 3 * * *"
        scripts:
          - name: hello world
            timeout: 1m
            interval: 12h
            script: |
              log("hello world")
          - name: default schedule
            script: |
              log("test")
        """
    )
    assert config.version == 1  # missing means 1
    hello, default = config.scripts
    assert (hello.interval, hello.schedule, hello.timeout) == (43200.0, "", 60.0)
    assert (default.interval, default.schedule, default.timeout) == (None, "15 3 * * *", None)


# --- defaults and inheritance ------------------------------------------------------------


def test_all_default_keys():
    d = cfg(
        """\
        defaults:
          parallel: 4
          interval: 1h30m
          schedule: "@daily"
          timeout: 1.5h
          blobLimit: 1073741824
          skipDockerConfig: true
          userAgent: my-bot/1.0
          copyWindow: 3
          transferMin: 4096
          spreadCopies: true
          sandbox: restricted
        """
    ).defaults
    assert d == Defaults(
        parallel=4,
        interval=5400.0,
        schedule="@daily",
        timeout=5400.0,
        blob_limit=1 << 30,
        skip_docker_config=True,
        user_agent="my-bot/1.0",
        copy_window=3,
        transfer_min=4096,
        spread_copies=True,
        sandbox="restricted",
    )


def test_empty_defaults():
    for text in ("", "defaults:\n", "defaults: {}\n", "version: 0\n", "# only a comment\n"):
        config = parse_config(text)
        assert config.defaults == Defaults()
        assert config.defaults.parallel == 1
        assert config.defaults.user_agent == DEFAULT_USER_AGENT
        assert config.creds == [] and config.scripts == []
        assert config.version == 1


@pytest.mark.parametrize(
    ("value", "expected"), [("0", 1), ("-3", 1), ("1", 1), ("8", 8), ('"3"', 3)]
)
def test_parallel(value, expected):
    assert cfg(f"defaults:\n  parallel: {value}\n").defaults.parallel == expected


@pytest.mark.parametrize(
    ("defaults", "script", "expected"),
    [
        # (defaults, script keys, (interval, schedule, timeout))
        ("interval: 1h", "", (3600.0, "", None)),
        ("schedule: '@hourly'", "", (None, "@hourly", None)),
        ("interval: 1h\n  schedule: '@hourly'", "", (None, "@hourly", None)),  # schedule wins
        ("interval: 1h\n  schedule: '@hourly'", "interval: 5m", (300.0, "", None)),
        ("interval: 1h\n  schedule: '@hourly'", "schedule: '0 3 * * *'", (None, "0 3 * * *", None)),
        ("interval: 1h", "schedule: '0 3 * * *'", (None, "0 3 * * *", None)),
        ("schedule: '@hourly'", "interval: 5m", (300.0, "", None)),
        ("timeout: 10m", "", (None, "", 600.0)),
        ("timeout: 10m", "timeout: 1m", (None, "", 60.0)),
        ("interval: 0s\n  timeout: 0s", "", (None, "", None)),  # zero is unset, as in Go
        ("interval: 1h", "interval: 0s", (3600.0, "", None)),
        ("", "", (None, "", None)),
    ],
)
def test_script_inheritance(defaults, script, expected):
    text = f"defaults:\n  {defaults or '{}'}\nscripts:\n  - name: s\n    script: x\n"
    if script:
        text += f"    {script}\n"
    s = parse_config(text).scripts[0]
    assert (s.interval, s.schedule, s.timeout) == expected


def test_effective_schedule():
    config = cfg(
        """\
        defaults: {interval: 2h}
        scripts:
          - {name: a, script: x}
          - {name: b, script: x, schedule: "*/5 * * * *"}
        """
    )
    a, b = config.scripts
    assert a.effective_schedule().every == 7200.0
    assert b.effective_schedule().text == "*/5 * * * *"
    assert b.effective_schedule().cron_fields[0] == "0,5,10,15,20,25,30,35,40,45,50,55"
    assert ScriptConfig(name="c", script="").effective_schedule() is None
    assert config.script("b") is b
    with pytest.raises(KeyError):
        config.script("nope")


# --- scripts ----------------------------------------------------------------------------


def test_script_line_offsets():
    config = cfg(
        """\
        x-body: &body |
          log("from an anchor")
        scripts:
          - name: block
            script: |
              log("one")
              log("two")
          - name: plain
            script: log("plain")
          - name: quoted
            script: "log('quoted')"
          - name: folded
            script: >
              log("folded")
          - name: aliased
            script: *body
          - name: block with comment
            script: |  # a comment
              log("x")
        """
    )
    offsets = {s.name: s.line_offset for s in config.scripts}
    assert offsets == {
        "block": 6,
        "plain": 9,
        "quoted": 11,
        "folded": 14,
        "aliased": 2,
        "block with comment": 19,
    }
    assert config.script("block").yaml_line(2) == 7


def test_script_name_and_body_types():
    config = cfg(
        """\
        scripts:
          - name: 2024
            script: 42
        """
    )
    assert (config.scripts[0].name, config.scripts[0].script) == ("2024", "42")


# --- creds -----------------------------------------------------------------------------


def test_every_cred_key(tmp_path):
    cert = tmp_path / "ca.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    config = cfg(
        f"""\
        creds:
          - registry: registry.example.com
            hostname: 127.0.0.1:5443
            tls: insecure
            user: '{{{{ env "HUB_USER" }}}}'
            pass: p@ss
            token: tok
            credHelper: docker-credential-pass
            credExpire: 10m
            credHost: auth.example.com
            regcert: '{{{{ file "{cert}" }}}}'
            clientCert: CERT
            clientKey: KEY
            pathPrefix: /mirror/hub/
            mirrors: [mirror1.example.com, "mirror2:5000"]
            priority: 5
            repoAuth: true
            blobChunk: 5242880
            blobMax: -1
            reqPerSec: 2.5
            reqConcurrent: 7
            apiOpts:
              disableHead: "true"
        """
    )
    (host,) = config.creds
    assert host == Host(
        name="registry.example.com",
        hostname="127.0.0.1:5443",
        tls="insecure",
        user="alice",
        password="p@ss",
        token="tok",
        cred_helper="docker-credential-pass",
        cred_expire=600.0,
        cred_host="auth.example.com",
        regcert="-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
        client_cert="CERT",
        client_key="KEY",
        path_prefix="mirror/hub",
        mirrors=["mirror1.example.com", "mirror2:5000"],
        priority=5,
        repo_auth=True,
        blob_chunk=5 << 20,
        blob_max=-1,
        req_per_sec=2.5,
        req_concurrent=7,
        api_opts={"disableHead": "true"},
    )
    assert "p@ss" not in repr(host) and "tok" not in repr(host) and "KEY" not in repr(host)


def test_cred_defaults():
    (host,) = cfg("creds:\n  - registry: r.example.com\n").creds
    assert host == Host(name="r.example.com")
    assert (host.tls, host.hostname, host.cred_expire, host.concurrency) == (
        "enabled",
        "r.example.com",
        3600.0,
        3,
    )


@pytest.mark.parametrize(
    ("value", "tls"),
    [("enabled", "enabled"), ("INSECURE", "insecure"), ("Disabled", "disabled"), ('""', "enabled")],
)
def test_tls_values_ignore_case(value, tls):
    assert cfg(f"creds:\n  - registry: r\n    tls: {value}\n").creds[0].tls == tls


def test_deprecated_scheme(caplog):
    with caplog.at_level(logging.WARNING, logger="regbot.config"):
        http, https, both, odd = cfg(
            """\
            creds:
              - {registry: a, scheme: http}
              - {registry: b, scheme: https}
              - {registry: c, scheme: http, tls: enabled}
              - {registry: d, scheme: ftp}
            """
        ).creds
    assert (http.tls, https.tls, both.tls, odd.tls) == ("disabled", "enabled", "enabled", "enabled")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "regbot.yml:2:27: creds[0] (a): scheme is deprecated; http taken as tls: disabled",
        "regbot.yml:3:27: creds[1] (b): scheme is deprecated and ignored (tls: enabled)",
        "regbot.yml:4:27: creds[2] (c): scheme is deprecated and ignored (tls: enabled)",
        'regbot.yml:5:27: creds[3] (d): unknown scheme "ftp" ignored',
    ]


def test_docker_hub_names():
    hosts = cfg(
        """\
        creds:
          - {registry: registry-1.docker.io, user: a}
          - {registry: quay.io}
        """
    ).creds
    assert [(h.name, h.hostname) for h in hosts] == [
        ("docker.io", "registry-1.docker.io"),
        ("quay.io", "quay.io"),
    ]
    (hub,) = cfg(
        "creds:\n  - {registry: docker.io, hostname: 'https://index.docker.io/v1/'}\n"
    ).creds
    assert hub.hostname == "registry-1.docker.io"
    (mirror,) = cfg("creds:\n  - {registry: docker.io, hostname: mirror.local:5000}\n").creds
    assert mirror.hostname == "mirror.local:5000"


def test_cred_expire_forms():
    hosts = cfg(
        """\
        creds:
          - {registry: a, credExpire: 90s}
          - {registry: b, credExpire: 120000000000}
          - {registry: c, credExpire: 0}
          - {registry: d}
        """
    ).creds
    assert [h.cred_expire for h in hosts] == [90.0, 120.0, 3600.0, 3600.0]


def test_duplicate_registries_merge_like_go(caplog):
    with caplog.at_level(logging.WARNING, logger="regbot.config"):
        hosts = cfg(
            """\
            creds:
              - {registry: r, user: u1, pass: p1, tls: disabled, apiOpts: {a: "1"}, priority: 3}
              - {registry: other}
              - {registry: r, pass: p2, reqConcurrent: 9, apiOpts: {b: "2"}}
              - {registry: h, credHelper: helper1}
              - {registry: h, user: x, pass: y}
              - {registry: k, user: x, pass: y}
              - {registry: k, credHelper: helper2}
            """
        ).creds
    r, other, h, k = hosts
    assert (r.user, r.password, r.tls, r.req_concurrent, r.priority) == (
        "u1",
        "p2",
        "disabled",
        9,
        3,
    )
    assert r.api_opts == {"a": "1", "b": "2"}
    assert other.name == "other"
    assert (h.cred_helper, h.user, h.password) == ("", "x", "y")  # a login replaces the helper
    assert (k.cred_helper, k.user, k.password) == ("helper2", "", "")  # a helper replaces the login
    text = caplog.text
    assert "registry r is configured more than once" in text
    assert "p1" not in text and "p2" not in text


def test_entry_without_registry_is_ignored(caplog):
    with caplog.at_level(logging.WARNING, logger="regbot.config"):
        hosts = cfg("creds:\n  - {user: u, pass: hidden-pass}\n  - {registry: r}\n").creds
    assert [h.name for h in hosts] == ["r"]
    assert "creds[0]: no registry name, entry ignored" in caplog.text
    assert "hidden-pass" not in caplog.text


def test_api_opts(caplog):
    with caplog.at_level(logging.DEBUG, logger="regbot.config"):
        (host,) = cfg(
            """\
            creds:
              - registry: r
                apiOpts:
                  disableHead: maybe
                  somethingNew: 5
            """
        ).creds
    assert host.api_opts == {"disableHead": "maybe", "somethingNew": "5"}
    by_level = {(r.levelno, r.getMessage()) for r in caplog.records}
    assert (
        logging.WARNING,
        'regbot.yml:4:20: creds[0] (r) apiOpts.disableHead: expected true or false, got "maybe"',
    ) in by_level
    assert (
        logging.DEBUG,
        'regbot.yml:5:21: creds[0] (r) apiOpts: unknown option "somethingNew" ignored',
    ) in by_level


def test_deprecated_api_key(caplog):
    with caplog.at_level(logging.WARNING, logger="regbot.config"):
        cfg("creds:\n  - {registry: r, api: docker}\n")
    assert "creds[0] (r): api is deprecated and ignored" in caplog.text


# --- YAML features ---------------------------------------------------------------------


def test_anchors_aliases_and_merges():
    config = cfg(
        """\
        x-login: &login
          user: shared
          pass: '{{ env "HUB_USER" }}-pw'
        x-limits: &limits {reqPerSec: 1, reqConcurrent: 2}
        x-more: &more {reqConcurrent: 5, priority: 9}
        x-mirrors: &mirrors [m1, m2]
        creds:
          - registry: a
            <<: *login
          - registry: b
            <<: [*limits, *more]
            mirrors: *mirrors
          - <<: *login
            registry: c
            user: own
          - registry: d
            user: own
            <<: *login
        """
    )
    a, b, c, d = config.creds
    assert (a.user, a.password) == ("shared", "alice-pw")
    assert (b.req_per_sec, b.req_concurrent, b.priority, b.mirrors) == (1.0, 2, 9, ["m1", "m2"])
    assert c.user == "own"  # a key after the merge overrides it
    assert d.user == "shared"  # go-yaml applies keys in order: the later merge wins


def test_duplicate_keys_last_wins():
    config = cfg(
        """\
        defaults:
          parallel: 2
          parallel: 3
        scripts:
          - name: first
            name: second
            script: x
        """
    )
    assert config.defaults.parallel == 3
    assert config.scripts[0].name == "second"


def test_duplicate_sections_last_wins():
    config = cfg("defaults: {parallel: 2}\ndefaults: {timeout: 1m}\n")
    assert (config.defaults.parallel, config.defaults.timeout) == (1, 60.0)


def test_unknown_top_level_keys_are_allowed():
    config = cfg(
        """\
        x-anchor: &a {name: n, script: s}
        anything: [1, 2, {deep: true}]
        scripts: [*a]
        """
    )
    assert config.scripts[0].name == "n"


def test_unknown_section_keys_warn(caplog):
    with caplog.at_level(logging.WARNING, logger="regbot.config"):
        config = cfg(
            """\
            defaults:
              intervall: 1h
            scripts:
              - name: a
                script: x
                schedul: "@daily"
            creds:
              - registry: r
                pasword: not-logged
            """
        )
    assert config.defaults.interval is None
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        'regbot.yml:2:3: defaults: unknown key "intervall" ignored',
        'regbot.yml:6:5: scripts[0] "a": unknown key "schedul" ignored',
        'regbot.yml:9:5: creds[0] (r): unknown key "pasword" ignored',
    ]


def test_yaml_1_2_scalars_like_go():
    config = cfg(
        """\
        defaults:
          userAgent: no
          blobLimit: 1e9
        creds:
          - registry: r
            user: yes
            pass: 0x1F
            token: 2024-01-01
            priority: 0o17
            reqConcurrent: "4"
            credHost: 1.50
            clientCert: true
            regcert: 017
        """
    )
    assert config.defaults.user_agent == "no"  # YAML 1.1 would read a boolean
    assert config.defaults.blob_limit == 1_000_000_000
    (h,) = config.creds
    assert (h.user, h.password, h.token) == ("yes", "31", "2024-01-01")
    assert (h.priority, h.req_concurrent, h.cred_host) == (15, 4, "1.5")
    assert (h.client_cert, h.regcert) == ("true", "15")


def test_only_the_first_document_is_read():
    config = parse_config("defaults: {parallel: 2}\n---\nversion: 7\n...\n: : bad\n")
    assert config.defaults.parallel == 2


def test_bom_is_ignored():
    assert parse_config("\ufeffdefaults: {parallel: 2}\n").defaults.parallel == 2


# --- files and stdin ---------------------------------------------------------------------


def test_load_from_stdin(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("defaults:\n  parallel: 5\n"))
    config = load_config("-")
    assert config.defaults.parallel == 5
    assert config.source == "<stdin>"


def test_stdin_errors_name_stdin(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("defaults:\n  parallel: many\n"))
    with pytest.raises(
        ConfigError, match=r'^<stdin>:2:13: defaults.parallel: expected an integer, got "many"$'
    ):
        load_config("-")


def test_load_file(tmp_path):
    path = tmp_path / "bot.yml"
    path.write_text("scripts:\n  - name: a\n    script: |\n      log('x')\n")
    config = load_config(str(path))
    assert config.source == str(path)
    assert config.scripts[0].line_offset == 4


def test_missing_and_unreadable_files(tmp_path):
    missing = tmp_path / "nope.yml"
    with pytest.raises(ConfigError) as info:
        load_config(str(missing))
    assert str(info.value) == f"{missing}: cannot read config: No such file or directory"
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path))
    assert str(info.value) == f"{tmp_path}: cannot read config: Is a directory"
    binary = tmp_path / "bin.yml"
    binary.write_bytes(b"defaults:\n  userAgent: \xff\xfe\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(binary))
    assert str(info.value) == f"{binary}: cannot read config: not UTF-8 text (byte 23)"
