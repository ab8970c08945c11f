"""Structured logging: `key=value` text or one JSON object per line.

Every regbot logger lives under the "regbot" logger. Fields travel in `extra={"fields": {...}}`
(use `log_fields()` or a `ScriptLogger`), so both formats print them as proper keys. A
filter redacts configured secret values (passwords, tokens) from every line: secrets are
never logged on purpose, this only catches one slipping in through an error message.
"""

from __future__ import annotations

import contextvars
import datetime
import json
import logging
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import IO, Any

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

LEVELS: dict[str, int] = {
    "trace": TRACE,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
_LEVEL_NAMES = {TRACE: "trace", logging.DEBUG: "debug", logging.INFO: "info",
                logging.WARNING: "warn", logging.ERROR: "error", logging.CRITICAL: "error"}

ROOT = "regbot"
REDACTED = "***"
# Secrets shorter than this are not redacted: replacing every "a" in a log line helps nobody.
_MIN_SECRET = 4

_secrets_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()
_handler: logging.Handler | None = None


def get_logger(name: str = ROOT) -> logging.Logger:
    """A logger under "regbot" (`name` may be a dotted module name or a suffix)."""
    if name != ROOT and not name.startswith(ROOT + "."):
        name = f"{ROOT}.{name}"
    return logging.getLogger(name)


def parse_level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    try:
        return LEVELS[level.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}: use trace, debug, info, warn or error") from None


def log_fields(logger: logging.Logger, level: int, msg: str, /, **fields: Any) -> None:
    """Log `msg` with structured fields (`dry_run=True` is printed as `dry-run=true`)."""
    if logger.isEnabledFor(level):
        logger.log(level, msg, extra={"fields": _field_names(fields)})


def _field_names(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {k.replace("_", "-"): v for k, v in fields.items() if v is not None}


class ScriptLogger:
    """Logs on behalf of one script: every line carries `script=<name>`."""

    def __init__(self, script: str, logger: logging.Logger | None = None) -> None:
        self.script = script
        self.logger = logger or get_logger("script")

    def log(self, level: int, msg: str, /, exc_info: Any = None, **fields: Any) -> None:
        if self.logger.isEnabledFor(level):
            merged = {"script": self.script, **_field_names(fields)}
            self.logger.log(level, msg, exc_info=exc_info, extra={"fields": merged})

    def trace(self, msg: str, /, **fields: Any) -> None:
        self.log(TRACE, msg, **fields)

    def debug(self, msg: str, /, **fields: Any) -> None:
        self.log(logging.DEBUG, msg, **fields)

    def info(self, msg: str, /, **fields: Any) -> None:
        self.log(logging.INFO, msg, **fields)

    def warn(self, msg: str, /, **fields: Any) -> None:
        self.log(logging.WARNING, msg, **fields)

    def error(self, msg: str, /, **fields: Any) -> None:
        self.log(logging.ERROR, msg, **fields)

    def is_enabled(self, level: int) -> bool:
        return self.logger.isEnabledFor(level)


# --- the script a line belongs to ---

_current_script: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "regbot_script", default=None)


@contextmanager
def script_context(name: str) -> Iterator[None]:
    """Lines logged in this context (by any regbot module) carry `script=<name>`."""
    token = _current_script.set(name)
    try:
        yield
    finally:
        _current_script.reset(token)


class ScriptFieldFilter(logging.Filter):
    """Adds `script=<name>` from script_context() to lines that do not name one."""

    def filter(self, record: logging.LogRecord) -> bool:
        name = _current_script.get()
        if name is not None:
            fields = getattr(record, "fields", None)
            if not isinstance(fields, dict):
                record.fields = {"script": name}
            elif "script" not in fields:
                record.fields = {"script": name, **fields}
        return True


# --- secrets ---


def add_secrets(values: Iterable[str | None]) -> None:
    """Remember values that must never appear in a log line (process wide, additive)."""
    global _secrets
    new = {v for v in values if v and len(v) >= _MIN_SECRET}
    if new - _secrets:
        with _secrets_lock:
            _secrets = _secrets | new


def clear_secrets() -> None:
    global _secrets
    with _secrets_lock:
        _secrets = frozenset()


def redact(text: str) -> str:
    secrets = _secrets
    if not secrets or not text:
        return text
    # Longest first, so a secret containing another is replaced whole.
    for secret in sorted(secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    return redact(str(value))


class RedactFilter(logging.Filter):
    """Replaces secret values in the message, its arguments, fields and exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not hide the line
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            record.fields = {k: _redact_value(v) for k, v in fields.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


# --- formatters ---


def _timestamp(record: logging.LogRecord) -> str:
    stamp = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _level_name(levelno: int) -> str:
    if levelno in _LEVEL_NAMES:
        return _LEVEL_NAMES[levelno]
    return logging.getLevelName(levelno).lower()


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    if record.exc_info and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)
    return record.exc_text or ""


class KeyValueFormatter(logging.Formatter):
    """`time=... level=info msg="..." script=name key=value` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            f"time={_timestamp(record)}",
            f"level={_level_name(record.levelno)}",
            f"msg={_kv_value(record.getMessage())}",
        ]
        for key, value in (getattr(record, "fields", None) or {}).items():
            parts.append(f"{_kv_key(key)}={_kv_value(value)}")
        exc = _exception_text(self, record)
        if exc:
            parts.append(f"exception={_kv_value(exc)}")
        return redact(" ".join(parts))


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, msg, then the fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _timestamp(record),
            "level": _level_name(record.levelno),
            "msg": record.getMessage(),
        }
        for key, value in (getattr(record, "fields", None) or {}).items():
            out[key if key not in out else f"field.{key}"] = _json_value(value)
        exc = _exception_text(self, record)
        if exc:
            out["exception"] = exc
        return redact(json.dumps(out, ensure_ascii=False))


def _kv_key(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(key)) or "_"


def _kv_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return '""'
    if isinstance(value, (int, float)):
        return str(value)
    if not isinstance(value, str):
        value = json.dumps(_json_value(value), ensure_ascii=False) if isinstance(
            value, (list, tuple, dict)) else str(value)
    if value and all(c.isalnum() or c in "-_./:@+,%" for c in value):
        return value
    return json.dumps(value, ensure_ascii=False)


def _json_value(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    return str(value)


def configure_logging(level: str | int = "info", json_format: bool = False,
                      stream: IO[str] | None = None) -> logging.Handler:
    """Send the "regbot" loggers to `stream` (stderr by default) at `level`.

    Calling it again replaces the handler it installed before (tests, CLI re-entry).
    """
    global _handler
    root = logging.getLogger(ROOT)
    if _handler is not None:
        root.removeHandler(_handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JSONFormatter() if json_format else KeyValueFormatter())
    handler.addFilter(ScriptFieldFilter())
    handler.addFilter(RedactFilter())
    root.addHandler(handler)
    root.setLevel(parse_level(level))
    root.propagate = False
    _handler = handler
    return handler
