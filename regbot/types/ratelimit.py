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
        """Parse `RateLimit-Limit: 100;w=21600`, `RateLimit-Remaining: 76;w=21600`,
        `RateLimit-Reset: 3600` (a header value may list several comma-separated
        entries: the first gives the number, every one is kept as a policy)."""
        limit_header = _get(headers, "RateLimit-Limit")
        remain_header = _get(headers, "RateLimit-Remaining")
        reset_header = _get(headers, "RateLimit-Reset")
        out = cls()
        if limit_header:
            entries = [e.strip() for e in limit_header.split(",") if e.strip()]
            out.limit = _leading_int(entries[0]) if entries else 0
            out.policies = entries
            out.set = True
        if remain_header:
            out.remain = _leading_int(remain_header.split(",")[0])
            out.set = True
        if reset_header:
            out.reset = _leading_int(reset_header)
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
    if value is None:
        lowered = name.lower()
        for key, item in headers.items():
            if key.lower() == lowered:
                return item
    return value or ""


def _leading_int(text: str) -> int:
    head = text.split(";", 1)[0].strip()
    try:
        return int(head)
    except ValueError:
        return 0
