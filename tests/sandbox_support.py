"""Helpers for the sandbox and runner tests: run Lua against real clients, read the logs."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterable
from typing import Any

from regbot import logs
from regbot.client import RegClient
from regbot.hosts import Host
from regbot.sandbox.runtime import Sandbox


class RecordingClient(RegClient):
    """A real RegClient that also records the write calls and closes it was asked for."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.calls: list[tuple[str, str]] = []

    def _record(self, name: str, ref: Any) -> None:
        self.calls.append((name, str(ref)))

    def close(self, ref):  # type: ignore[override]
        self._record("close", ref)
        return super().close(ref)

    def manifest_put(self, ref, manifest):  # type: ignore[override]
        self._record("manifest_put", ref)
        return super().manifest_put(ref, manifest)

    def manifest_delete(self, ref, manifest=None):  # type: ignore[override]
        self._record("manifest_delete", ref)
        return super().manifest_delete(ref, manifest)

    def blob_put(self, ref, descriptor, source):  # type: ignore[override]
        self._record("blob_put", ref)
        return super().blob_put(ref, descriptor, source)

    def blob_mount(self, ref, source, digest):  # type: ignore[override]
        self._record("blob_mount", ref)
        return super().blob_mount(ref, source, digest)

    def tag_delete(self, ref):  # type: ignore[override]
        self._record("tag_delete", ref)
        return super().tag_delete(ref)

    def writes(self) -> list[tuple[str, str]]:
        return [c for c in self.calls if c[0] != "close"]


def client_for(*registries: Any, hosts: Iterable[Host] = ()) -> RecordingClient:
    """A client speaking plain http to each test registry (by its 127.0.0.1:PORT name)."""
    entries = [Host(name=r.host, tls="disabled") for r in registries]
    return RecordingClient(entries + list(hosts))


def run_lua(source: str, client: Any = None, *, name: str = "test", **kw: Any) -> Sandbox:
    """Run `source` in a fresh sandbox (raising ScriptError on failure); returns it."""
    sb = Sandbox(name, client if client is not None else RecordingClient([]), **kw)
    try:
        sb.run(source)
    finally:
        sb.close()
    return sb


class LogCapture:
    """Captures the "regbot" loggers as JSON lines through logs.configure_logging."""

    def __init__(self, level: str = "trace") -> None:
        self.stream = io.StringIO()
        self.handler = logs.configure_logging(level, json_format=True, stream=self.stream)

    @property
    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines() if line]

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def messages(self, **match: Any) -> list[dict[str, Any]]:
        return [r for r in self.records if all(r.get(k) == v for k, v in match.items())]

    def close(self) -> None:
        root = logging.getLogger(logs.ROOT)
        root.removeHandler(self.handler)
        root.setLevel(logging.NOTSET)
        root.propagate = True
        logs._handler = None
