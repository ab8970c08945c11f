"""Every configuration mistake: one ConfigError, one line, naming the file, line and key."""

from __future__ import annotations

import logging
import textwrap

import pytest

from regbot.config import parse_config
from regbot.errors import ConfigError


def message(text: str, source: str = "regbot.yml") -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), source)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(source + ":")
    return text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # YAML syntax: file, line and column
        (
            "defaults:\n  parallel: 2\n scripts: []\n",
            "regbot.yml:3:2: invalid YAML: while parsing a block mapping: "
            "expected <block end>, but found '<block mapping start>'",
        ),
        (
            "creds: [a, b\n",
            "regbot.yml:2:1: invalid YAML: while parsing a flow sequence: "
            "expected ',' or ']', but got '<stream end>'",
        ),
        (
            "defaults:\n\tparallel: 2\n",
            "regbot.yml:2:1: invalid YAML: while scanning for the next token: "
            "found character '\\t' that cannot start any token",
        ),
        ("defaults: *nowhere\n", "regbot.yml:1:11: invalid YAML: found undefined alias 'nowhere'"),
        ("a: b\nc: \x01\n", "regbot.yml:2:4: invalid YAML: character #x0001 is not allowed"),
        # structure
        ("- a\n- b\n", "regbot.yml:1:1: top level: expected a mapping, got a list"),
        ("just text\n", 'regbot.yml:1:1: top level: expected a mapping, got "just text"'),
        ("scripts:\n  name: a\n", "regbot.yml:2:3: scripts: expected a list, got a mapping"),
        ("creds: docker.io\n", 'regbot.yml:1:8: creds: expected a list, got "docker.io"'),
        ("defaults: [1]\n", "regbot.yml:1:11: defaults: expected a mapping, got a list"),
        (
            "scripts:\n  - just a name\n",
            'regbot.yml:2:5: scripts[0]: expected a mapping, got "just a name"',
        ),
        ("scripts:\n  - &a\n    <<: *a\n", "regbot.yml:2:5: scripts[0]: recursive merge key"),
        (
            "scripts:\n  - <<: 5\n",
            "regbot.yml:2:9: scripts[0]: a merge key (<<) takes a mapping or a list of mappings",
        ),
        # version
        ("version: 2\n", "regbot.yml:1:10: unsupported config version 2"),
        ("version: two\n", 'regbot.yml:1:10: version: expected an integer, got "two"'),
        # defaults: types
        (
            "defaults:\n  parallel: two\n",
            'regbot.yml:2:13: defaults.parallel: expected an integer, got "two"',
        ),
        (
            "defaults:\n  parallel: 2.5\n",
            "regbot.yml:2:13: defaults.parallel: expected an integer, got 2.5",
        ),
        (
            "defaults:\n  parallel: true\n",
            "regbot.yml:2:13: defaults.parallel: expected an integer, got true",
        ),
        (
            "defaults:\n  parallel: [2]\n",
            "regbot.yml:2:13: defaults.parallel: expected an integer, got a list",
        ),
        (
            "defaults:\n  parallel: 99999999999999999999\n",
            "regbot.yml:2:13: defaults.parallel: 99999999999999999999 is out of range",
        ),
        (
            "defaults:\n  blobLimit: -1\n",
            "regbot.yml:2:14: defaults.blobLimit: expected an integer of at least 0, got -1",
        ),
        (
            "defaults:\n  skipDockerConfig: yes\n",
            'regbot.yml:2:21: defaults.skipDockerConfig: expected true or false, got "yes"',
        ),
        (
            "defaults:\n  spreadCopies: sometimes\n",
            'regbot.yml:2:17: defaults.spreadCopies: expected true or false, got "sometimes"',
        ),
        (
            "defaults:\n  userAgent: {a: b}\n",
            "regbot.yml:2:14: defaults.userAgent: expected a string, got a mapping",
        ),
        # defaults: durations and schedules
        (
            "defaults:\n  interval: 60x\n",
            'regbot.yml:2:13: defaults.interval "60x": unknown unit "x"',
        ),
        (
            "defaults:\n  interval: 1h 30m\n",
            'regbot.yml:2:13: defaults.interval "1h 30m": unknown unit "h "',
        ),
        (
            "defaults:\n  timeout: 10\n",
            'regbot.yml:2:12: defaults.timeout: expected a duration such as "60m", got 10',
        ),
        (
            "defaults:\n  timeout: -5m\n",
            'regbot.yml:2:12: defaults.timeout "-5m": must not be negative',
        ),
        (
            "defaults:\n  timeout: abc\n",
            'regbot.yml:2:12: defaults.timeout "abc": invalid duration',
        ),
        (
            "defaults:\n  schedule: '* * *'\n",
            'regbot.yml:2:13: defaults.schedule "* * *": expected exactly 5 fields, found 3: [* * *]',
        ),
        (
            "defaults:\n  schedule: '@fortnightly'\n",
            'regbot.yml:2:13: defaults.schedule "@fortnightly": unrecognized descriptor: @fortnightly',
        ),
        # scripts
        (
            """\
            scripts:
              - name: mirror
                interval: 60x
                script: x
            """,
            'regbot.yml:3:15: scripts[0] "mirror": interval "60x": unknown unit "x"',
        ),
        (
            """\
            scripts:
              - name: ok
                script: x
              - name: mirror
                schedule: "61 * * * *"
                script: x
            """,
            'regbot.yml:5:15: scripts[1] "mirror": schedule "61 * * * *": '
            "end of range (61) above maximum (59): 61",
        ),
        (
            """\
            scripts:
              - name: mirror
                timeout: forever
                script: x
            """,
            'regbot.yml:3:14: scripts[0] "mirror": timeout "forever": invalid duration',
        ),
        (
            """\
            scripts:
              - name: mirror
                script: [a]
            """,
            'regbot.yml:3:13: scripts[0] "mirror": script: expected a string, got a list',
        ),
        ("scripts:\n  - script: x\n", "regbot.yml:2:5: scripts[0]: missing name"),
        ("scripts:\n  - name: ''\n    script: x\n", "regbot.yml:2:11: scripts[0]: missing name"),
        (
            """\
            scripts:
              - name: a
                script: x
              - name: b
                script: x
              - name: a
                script: y
            """,
            'regbot.yml:6:11: scripts[2] "a": duplicate script name (also scripts[0], line 2)',
        ),
        # creds
        (
            "creds:\n  - registry: r:5000\n    tls: maybe\n",
            'regbot.yml:3:10: creds[0] (r:5000): unknown tls value "maybe" '
            "(expected enabled, insecure or disabled)",
        ),
        (
            "creds:\n  - registry: r\n    tls: true\n",
            'regbot.yml:3:10: creds[0] (r): unknown tls value "true" (expected enabled, insecure or disabled)',
        ),
        (
            "creds:\n  - registry: r\n    mirrors: m\n",
            'regbot.yml:3:14: creds[0] (r) mirrors: expected a list of strings, got "m"',
        ),
        (
            "creds:\n  - registry: r\n    mirrors: [[a]]\n",
            "regbot.yml:3:15: creds[0] (r) mirrors[0]: expected a string, got a list",
        ),
        (
            "creds:\n  - registry: r\n    priority: -1\n",
            "regbot.yml:3:15: creds[0] (r) priority: expected an integer of at least 0, got -1",
        ),
        (
            "creds:\n  - registry: r\n    reqPerSec: fast\n",
            'regbot.yml:3:16: creds[0] (r) reqPerSec: expected a number, got "fast"',
        ),
        (
            "creds:\n  - registry: r\n    repoAuth: 1\n",
            "regbot.yml:3:15: creds[0] (r) repoAuth: expected true or false, got 1",
        ),
        (
            "creds:\n  - registry: r\n    credExpire: 1x\n",
            'regbot.yml:3:17: creds[0] (r) credExpire "1x": unknown unit "x"',
        ),
        (
            "creds:\n  - registry: r\n    apiOpts: [a]\n",
            "regbot.yml:3:14: creds[0] (r) apiOpts: expected a mapping, got a list",
        ),
        (
            "creds:\n  - registry: [r]\n",
            "regbot.yml:2:15: creds[0] registry: expected a string, got a list",
        ),
        # templates: entry, field and problem
        (
            "creds:\n  - registry: docker.io\n    user: '{{ env \"X\" | nope }}'\n",
            'regbot.yml:3:11: creds[0] (docker.io) user: template 1:14: function "nope" not defined',
        ),
        (
            "creds:\n  - registry: a\n  - registry: docker.io\n    regcert: '{{ file }}'\n",
            "regbot.yml:4:14: creds[1] (docker.io) regcert: template 1:4: "
            "wrong number of args for file: want 1 got 0",
        ),
        (
            "creds:\n  - registry: a\n    clientCert: '{{ if 1 }}'\n",
            "regbot.yml:3:17: creds[0] (a) clientCert: template 1:4: "
            "unexpected EOF (missing {{end}} for {{if}})",
        ),
    ],
)
def test_error_messages(text, expected):
    assert message(text) == expected


def test_odd_text_stays_on_one_line():
    assert message('defaults:\n  schedule: "@daily\\n"\n') == (
        'regbot.yml:2:13: defaults.schedule "@daily\\n": unrecognized descriptor: @daily'
    )
    assert message('creds:\n  - registry: "a\\nb"\n    tls: x\n') == (
        'regbot.yml:3:10: creds[0] ("a\\nb"): unknown tls value "x" (expected enabled, insecure or disabled)'
    )


def test_source_name_leads_every_message():
    assert message("version: 3\n", source="/etc/regbot/bot.yml") == (
        "/etc/regbot/bot.yml:1:10: unsupported config version 3"
    )


@pytest.mark.parametrize("field", ["pass", "clientKey"])
def test_secret_template_errors_hide_the_text(field):
    text = f"creds:\n  - registry: docker.io\n    {field}: '{{{{hunter2}}}}'\n"
    got = message(text)
    assert got.endswith(
        f"creds[0] (docker.io) {field}: template 1:3: function <hidden> not defined"
    )
    assert "hunter2" not in got


def test_expanded_secrets_never_reach_messages_or_logs(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("REG_PASS", "very-secret-password")
    with caplog.at_level(logging.DEBUG, logger="regbot.config"):
        got = message(
            """\
            creds:
              - registry: r
                pass: '{{ env "REG_PASS" }}'
                token: also-secret-token
                pasword: typo
              - registry: r
                pass: '{{ index (env "REG_PASS") 999 }}'
            """
        )
    assert got == (
        "regbot.yml:7:11: creds[1] (r) pass: template 1:4: error calling index: index out of range: 999"
    )
    for secret in ("very-secret-password", "also-secret-token"):
        assert secret not in got
        assert secret not in caplog.text


def test_first_error_stops_loading():
    # One mistake, one message: the bad version is reported before the bad defaults.
    assert (
        message("version: 9\ndefaults:\n  parallel: x\n")
        == "regbot.yml:1:10: unsupported config version 9"
    )
