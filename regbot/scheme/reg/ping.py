"""`GET /v2/`: is the registry there, and do our credentials work."""

from __future__ import annotations

from regbot.http.client import Request
from regbot.scheme.reg.common import RegBase
from regbot.types.ref import Reference


class PingMixin(RegBase):
    def ping(self, ref: Reference) -> None:
        resp = self._send(Request("GET", ref.registry, headers={"Accept": "application/json"}, ref=ref.registry))
        with resp:
            self._check(resp, (200,), ref.registry, "ping")
