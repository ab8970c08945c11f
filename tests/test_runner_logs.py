"""regbot.logs: key=value and JSON lines, levels (with trace), script names, redaction."""

from __future__ import annotations

import io
import json
import logging

import pytest

from regbot import logs


@pytest.fixture
def restore_logging():
    yield
    root = logging.getLogger(logs.ROOT)
    if logs._handler is not None:
        root.removeHandler(logs._handler)
        logs._handler = None
    root.setLevel(logging.NOTSET)
    root.propagate = True
    logs.clear_secrets()


def _configure(level="trace", json_format=False):
    stream = io.StringIO()
    logs.configure_logging(level, json_format=json_format, stream=stream)
    return stream


def test_key_value_lines(restore_logging):
    stream = _configure("info")
    log = logs.ScriptLogger("mirror minor versions")
    log.info("Copy image", source="docker.io/library/alpine:3.20", dry_run=True, count=3,
             note="two words", empty="")
    log.debug("not shown")
    line = stream.getvalue().strip()
    assert "\n" not in line
    assert line.startswith("time=")
    assert ' level=info msg="Copy image" script="mirror minor versions" ' in line
    assert "source=docker.io/library/alpine:3.20 dry-run=true count=3" in line
    assert 'note="two words" empty=""' in line


def test_json_lines_and_levels(restore_logging):
    stream = _configure("trace", json_format=True)
    log = logs.ScriptLogger("s1")
    log.trace("t")
    log.debug("d")
    log.info("i", n=1)
    log.warn("w")
    log.error("e", error="boom")
    logs.log_fields(logs.get_logger("cli"), logging.INFO, "plain", key="v")
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [r["level"] for r in records] == ["trace", "debug", "info", "warn", "error", "info"]
    assert records[2] == {"time": records[2]["time"], "level": "info", "msg": "i",
                          "script": "s1", "n": 1}
    assert records[4]["error"] == "boom"
    assert records[5]["key"] == "v" and "script" not in records[5]


def test_levels_parse_and_filter(restore_logging):
    assert logs.parse_level("TRACE") == logs.TRACE == 5
    assert logs.parse_level("warn") == logging.WARNING
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        logs.parse_level("loud")
    stream = _configure("warn")
    log = logs.ScriptLogger("s")
    log.info("hidden")
    log.warn("shown")
    assert "hidden" not in stream.getvalue() and "shown" in stream.getvalue()


def test_script_context_tags_other_loggers(restore_logging):
    stream = _configure("debug", json_format=True)
    other = logs.get_logger("regbot.http")
    with logs.script_context("nightly"):
        other.debug("GET something")
    other.debug("outside")
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert records[0]["script"] == "nightly"
    assert "script" not in records[1]


def test_configure_twice_replaces_the_handler(restore_logging):
    first = _configure("info")
    second = _configure("info")
    logs.ScriptLogger("s").info("once")
    assert first.getvalue() == ""
    assert second.getvalue().count("once") == 1


@pytest.mark.parametrize("json_format", [False, True])
def test_secrets_are_redacted_everywhere(restore_logging, json_format):
    stream = _configure("trace", json_format=json_format)
    logs.add_secrets(["hunter2-secret", "", None, "ab"])
    log = logs.ScriptLogger("s")
    log.info("password is hunter2-secret", field="x hunter2-secret y")
    logs.get_logger("http").warning("auth %s failed", "hunter2-secret")
    try:
        raise ValueError("token hunter2-secret rejected")
    except ValueError:
        log.log(logs.TRACE, "failure", exc_info=True)
    log.info("ab is too short to redact")
    text = stream.getvalue()
    assert "hunter2-secret" not in text
    assert text.count(logs.REDACTED) >= 4
    assert "ab is too short" in text
