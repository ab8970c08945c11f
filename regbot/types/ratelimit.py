"""Registry pull rate limits, from the `RateLimit-*` response headers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass
class RateLimit:
    """`set` is False when the registry reported no limit."""

    set: bool = False
    limit: int = 0
    remain: int = 0
    reset: int = 0
    policies: list[str] = field(default_factory=list)

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> RateLimit:
        """Parse the headers as regclient does (types/manifest setRateLimit):

        - `RateLimit-Limit: 100;w=21600`: the number before `;` of the first
          comma-separated entry is `limit`; `policies` are all entries when the first has
          a `;w=` part, else the entries after the first (so a bare `100` has none).
        - `RateLimit-Remaining: 76;w=21600`: the number before `;` is `remain`, and only a
          readable remaining count makes `set` true.
        - `RateLimit-Reset: 3600`: an integer, else 0.
        Numbers that do not parse count as 0 (surrounding blanks are tolerated)."""
        limit_header = _get(headers, "RateLimit-Limit")
        remain_header = _get(headers, "RateLimit-Remaining")
        reset_header = _get(headers, "RateLimit-Reset")
        out = cls()
        if limit_header:
            entries = limit_header.split(",")
            first = entries[0].split(";")
            out.limit = _int_or_none(first[0]) or 0
            if len(first) > 1:
                out.policies = [e.strip() for e in entries]
            elif len(entries) > 1:
                out.policies = [e.strip() for e in entries[1:]]
        if remain_header:
            remain = _int_or_none(remain_header.split(";")[0])
            if remain is not None:
                out.remain = remain
                out.set = True
        if reset_header:
            out.reset = _int_or_none(reset_header) or 0
        return out

    def to_dict(self) -> dict:
        return {
            "set": self.set,
            "limit": self.limit,
            "remain": self.remain,
            "reset": self.reset,
            "policies": list(self.policies),
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> RateLimit:
        return cls(
            set=bool(data.get("set")),
            limit=int(data.get("limit", 0)),
            remain=int(data.get("remain", 0)),
            reset=int(data.get("reset", 0)),
            policies=list(data.get("policies", [])),
        )


def _get(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    # A plain dict is searched whatever the case of its keys; response headers (urllib3's
    # HTTPHeaderDict) are case-insensitive already, and looked through for every response.
    if value is None and isinstance(headers, dict):
        lowered = name.lower()
        for key, item in headers.items():
            if key.lower() == lowered:
                return item
    return value or ""


def _int_or_none(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None
