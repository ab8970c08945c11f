"""The `log(msg)` global: one info line tagged with the script name."""

from __future__ import annotations

from typing import Any

from regbot.sandbox.runtime import Sandbox


def setup(sb: Sandbox) -> None:
    def log(msg: Any = None, *_: Any) -> None:
        sb.log.info(sb.text(msg, "log"))

    sb.register_global("log", log)
