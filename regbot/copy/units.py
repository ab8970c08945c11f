"""The units of work a copy plan is made of: plain, JSON-serialisable data.

A unit names its source and target by reference strings and carries descriptors as
dicts, never credentials, so it can travel in a task message and be run by any worker
that has its own configuration. Every unit is idempotent: running it twice is harmless
(a blob already present is skipped, a manifest put again is the same bytes).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, ClassVar

from regbot.errors import RegbotError

# Manifests up to this size travel inside the unit; larger ones are read again from the
# source (by digest, so verified) when the unit runs.
INLINE_MANIFEST_MAX = 256 * 1024


@dataclass
class Unit:
    """Base of all units. `deps` are ids of units that must have finished first."""

    kind: ClassVar[str] = ""

    id: str
    src: str
    tgt: str
    deps: list[str] = field(default_factory=list)

    @property
    def digest(self) -> str:
        raise NotImplementedError

    @property
    def size(self) -> int:
        raise NotImplementedError

    def describe(self) -> str:
        """One line naming what this unit does, for error messages and logs."""
        src, tgt = _without(self.src, self.digest), _without(self.tgt, self.digest)
        return f"copy {self.kind} {self.digest} from {src} to {tgt}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "src": self.src, "tgt": self.tgt,
                "deps": list(self.deps)}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Unit:
        kind = data.get("kind")
        cls = _UNIT_KINDS.get(kind or "")
        if cls is None:
            raise RegbotError(f"unknown copy unit kind {kind!r}")
        return cls._from_dict(data)

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> Unit:
        raise NotImplementedError


@dataclass
class BlobUnit(Unit):
    """Make the blob `descriptor` present in the target repository.

    `src` and `tgt` are `<repository>@<digest>` reference strings. With `recheck`
    (forceRecursive), the target is looked at even when a transfer of the blob into it
    ended just now: the copy is to repair what went missing since.
    """

    kind: ClassVar[str] = "blob"

    descriptor: dict[str, Any] = field(default_factory=dict)
    recheck: bool = False

    @property
    def digest(self) -> str:
        return str(self.descriptor.get("digest", ""))

    @property
    def size(self) -> int:
        return int(self.descriptor.get("size", -1))

    def to_dict(self) -> dict[str, Any]:
        data = {**super().to_dict(), "descriptor": dict(self.descriptor)}
        if self.recheck:
            data["recheck"] = True
        return data

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> BlobUnit:
        return cls(id=data["id"], src=data["src"], tgt=data["tgt"],
                   deps=list(data.get("deps", [])), descriptor=dict(data["descriptor"]),
                   recheck=bool(data.get("recheck", False)))


@dataclass
class ManifestUnit(Unit):
    """Put the source manifest `digest`, byte for byte, to `tgt` (by digest, or a tag).

    `raw` holds the manifest when it is small (INLINE_MANIFEST_MAX), else None and the
    unit reads `src` (a by-digest reference) again when it runs.
    """

    kind: ClassVar[str] = "manifest"

    manifest_digest: str = ""
    media_type: str = ""
    manifest_size: int = 0
    raw: bytes | None = None
    omitted: int = 0  # index entries left out by the platform filter (for error messages)

    @property
    def digest(self) -> str:
        return self.manifest_digest

    @property
    def size(self) -> int:
        return self.manifest_size

    def to_dict(self) -> dict[str, Any]:
        out = {**super().to_dict(), "digest": self.manifest_digest,
               "media_type": self.media_type, "size": self.manifest_size}
        if self.raw is not None:
            out["raw"] = base64.b64encode(self.raw).decode("ascii")
        if self.omitted:
            out["omitted"] = self.omitted
        return out

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> ManifestUnit:
        raw = data.get("raw")
        return cls(id=data["id"], src=data["src"], tgt=data["tgt"],
                   deps=list(data.get("deps", [])), manifest_digest=data["digest"],
                   media_type=data.get("media_type", ""), manifest_size=int(data.get("size", 0)),
                   raw=base64.b64decode(raw) if raw is not None else None,
                   omitted=int(data.get("omitted", 0)))


@dataclass
class TagUnit(ManifestUnit):
    """Point a tag at a manifest whose content is already in the target: the same put as
    ManifestUnit, kept apart so the tag can be written last (after referrers and digest
    tags) and is not counted as one more manifest copied."""

    kind: ClassVar[str] = "tag"


@dataclass
class BundleUnit(Unit):
    """All the units of one small copy, run together by one node: with `spreadCopies` a
    cluster sends a copy with no blob of `transferMin` or more as one task
    (workers/executor.py), so the nodes share a mirror of many small images and each pays
    one round trip, not one per unit.

    `src` and `tgt` name the repositories; `concurrency` is how many of the units run at
    once (the copy's own). Running it is running each unit, so it is idempotent as they are.
    """

    kind: ClassVar[str] = "units"

    units: list[Unit] = field(default_factory=list)
    concurrency: int = 1

    @property
    def digest(self) -> str:
        return ""

    @property
    def size(self) -> int:
        return sum(max(u.size, 0) for u in self.units if isinstance(u, BlobUnit))

    def describe(self) -> str:
        return f"copy {len(self.units)} units from {self.src} to {self.tgt}"

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "units": [u.to_dict() for u in self.units],
                "concurrency": self.concurrency}

    @classmethod
    def _from_dict(cls, data: dict[str, Any]) -> BundleUnit:
        inner = [Unit.from_dict(d) for d in data.get("units", [])]
        if any(isinstance(u, BundleUnit) for u in inner):
            raise RegbotError("a bundle of copy units cannot hold another bundle")
        return cls(id=data["id"], src=data["src"], tgt=data["tgt"],
                   deps=list(data.get("deps", [])), units=inner,
                   concurrency=max(1, int(data.get("concurrency", 1))))


def _without(ref: str, digest: str) -> str:
    """A reference string without its `@digest` when that is the digest already named."""
    suffix = "@" + digest
    return ref[: -len(suffix)] if digest and ref.endswith(suffix) else ref


_UNIT_KINDS: dict[str, type[Unit]] = {
    c.kind: c for c in (BlobUnit, ManifestUnit, TagUnit, BundleUnit)}

# Outcomes of a unit.
STATUS_COPIED = "copied"  # blob bytes transferred
STATUS_MOUNTED = "mounted"  # blob mounted from another repository of the same registry
STATUS_SKIPPED = "skipped"  # already present in the target
STATUS_PUSHED = "pushed"  # manifest or tag written


@dataclass
class UnitResult:
    """What running one unit did; `bytes` counts blob bytes transferred. A bundle's
    result holds one result per unit of it in `parts`, in the bundle's order."""

    id: str
    kind: str
    status: str
    digest: str = ""
    bytes: int = 0
    parts: list[UnitResult] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "kind": self.kind, "status": self.status,
                               "digest": self.digest, "bytes": self.bytes}
        if self.parts is not None:
            out["parts"] = [p.to_dict() for p in self.parts]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UnitResult:
        parts = data.get("parts")
        return cls(id=data["id"], kind=data["kind"], status=data["status"],
                   digest=data.get("digest", ""), bytes=int(data.get("bytes", 0)),
                   parts=[cls.from_dict(p) for p in parts] if isinstance(parts, list) else None)

    @classmethod
    def of_bundle(cls, bundle: BundleUnit, parts: list[UnitResult]) -> UnitResult:
        """The result of a bundle whose units gave `parts`."""
        return cls(bundle.id, bundle.kind, STATUS_COPIED, "", sum(p.bytes for p in parts),
                   parts=parts)


def units_to_dicts(units: list[Unit]) -> list[dict[str, Any]]:
    return [u.to_dict() for u in units]


def units_from_dicts(data: list[dict[str, Any]]) -> list[Unit]:
    return [Unit.from_dict(d) for d in data]
