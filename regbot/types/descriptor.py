"""OCI content descriptors and digest helpers."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from regbot.errors import RegbotError
from regbot.types.platform import Platform

SUPPORTED_ALGORITHMS = ("sha256", "sha512")


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def hasher_for(digest: str):
    """A fresh hashlib object for the digest's algorithm."""
    algorithm = digest.partition(":")[0]
    if algorithm not in SUPPORTED_ALGORITHMS:
        raise RegbotError(f"unsupported digest algorithm in {digest!r}")
    return hashlib.new(algorithm)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    urls: tuple[str, ...] = ()
    annotations: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    platform: Platform | None = None
    artifact_type: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Descriptor:
        return cls(
            media_type=data.get("mediaType", ""),
            digest=data.get("digest", ""),
            size=int(data.get("size", 0) or 0),
            urls=tuple(data.get("urls", ()) or ()),
            annotations=dict(data.get("annotations", {}) or {}),
            platform=Platform.from_dict(data.get("platform")),
            artifact_type=data.get("artifactType", ""),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_dict()
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        return out
