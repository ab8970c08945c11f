"""Noticing that the beat's config file changed, cheaply enough to ask on every tick."""

from __future__ import annotations

import hashlib
import logging
import os

from regbot.errors import ConfigError
from regbot.logs import get_logger, log_fields

log = get_logger("regbot.beat")


class ConfigWatcher:
    """Tells when a config file's content changed: a stat on each check, and a hash of the
    content only when the stat moved (or when forced, as after SIGHUP)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._stat: tuple[int, int, int] | None = None
        self._digest: str | None = None
        self._unreadable = False

    def read(self) -> str:
        """The current content (and remember it as seen). Raises ConfigError."""
        try:
            stat = os.stat(self.path)
            with open(self.path, "rb") as handle:
                data = handle.read()
        except OSError as err:
            raise ConfigError(f"{self.path}: cannot read config: {err.strerror or err}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ConfigError(f"{self.path}: cannot read config: not UTF-8 text (byte {err.start})") from None
        self._stat = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        self._digest = hashlib.sha256(data).hexdigest()
        return text

    def changed(self, force: bool = False) -> str | None:
        """The new content when it differs from what was last read (or `force`), else None.
        A file that vanished for a moment (an editor or a ConfigMap swapping it) is not a
        change: the last content stays in force."""
        try:
            stat = os.stat(self.path)
        except OSError as err:
            if not self._unreadable:
                log_fields(log, logging.WARNING, "Config file unreadable, keeping the schedule",
                           file=self.path, error=err.strerror or str(err))
            self._unreadable = True
            return None
        self._unreadable = False
        if not force and (stat.st_mtime_ns, stat.st_size, stat.st_ino) == self._stat:
            return None
        before = self._digest
        try:
            text = self.read()
        except ConfigError as err:
            log_fields(log, logging.WARNING, "Config file unreadable, keeping the schedule",
                       error=str(err))
            return None
        if not force and self._digest == before:
            return None  # touched, same content
        return text
