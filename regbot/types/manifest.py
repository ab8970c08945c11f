"""Manifests of the four media types (and Docker v1 signed, read only)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from regbot.errors import RegbotError
from regbot.types.descriptor import Descriptor, digest_of
from regbot.types.platform import Platform, local_platform
from regbot.types.ratelimit import RateLimit

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_V1 = "application/vnd.docker.distribution.manifest.v1+json"
MT_DOCKER_V1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_OCI_EMPTY = "application/vnd.oci.empty.v1+json"

INDEX_TYPES = (MT_OCI_INDEX, MT_DOCKER_LIST)
IMAGE_TYPES = (MT_OCI_MANIFEST, MT_DOCKER_MANIFEST)
V1_TYPES = (MT_DOCKER_V1, MT_DOCKER_V1_SIGNED)
MANIFEST_TYPES = INDEX_TYPES + IMAGE_TYPES + V1_TYPES
# The Accept header for manifest requests, most preferred first.
ACCEPT_MANIFESTS = ", ".join(MANIFEST_TYPES)
MAX_MANIFEST_SIZE = 4 * 1024 * 1024


@dataclass
class Manifest:
    """A manifest as stored (`raw`), with its media type and digest.

    A manifest read by HEAD has `raw == b""` and only the descriptor fields set.
    `ratelimit` holds what the registry said about pull limits on that request, `headers`
    the response headers (Go's http.Header form; empty for an OCI layout).
    """

    media_type: str
    digest: str
    size: int
    raw: bytes = b""
    ratelimit: RateLimit = field(default_factory=RateLimit)
    headers: dict[str, list[str]] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_bytes(cls, raw: bytes, media_type: str = "", digest: str = "") -> Manifest:
        """Parse raw bytes; the media type comes from the body when present, then the header."""
        if len(raw) > MAX_MANIFEST_SIZE:
            raise RegbotError(f"manifest of {len(raw)} bytes exceeds the 4 MiB limit")
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise RegbotError(f"manifest is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise RegbotError("manifest is not a JSON object")
        media_type = data.get("mediaType") or _guess_media_type(data, media_type)
        if media_type not in MANIFEST_TYPES:
            raise RegbotError(f"unsupported manifest media type {media_type!r}")
        if not digest:
            digest = digest_of(_v1_payload(raw) if media_type in V1_TYPES else raw)
        return cls(media_type=media_type, digest=digest, size=len(raw), raw=raw)

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Manifest:
        """Build a manifest from a document (e.g. edited in Lua)."""
        raw = json.dumps(data, indent=2).encode()
        return cls.from_bytes(raw, data.get("mediaType", ""))

    # --- the document ---

    @property
    def has_body(self) -> bool:
        return bool(self.raw)

    @property
    def data(self) -> dict[str, Any]:
        if not self.raw:
            raise RegbotError(f"manifest {self.digest} was read by HEAD and has no body")
        cached = self.__dict__.get("_data")
        if cached is None:
            cached = json.loads(self.raw)
            self.__dict__["_data"] = cached
        return cached

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    @property
    def is_image(self) -> bool:
        return self.media_type in IMAGE_TYPES or self.media_type in V1_TYPES

    def descriptor(self) -> Descriptor:
        return Descriptor(media_type=self.media_type, digest=self.digest, size=self.size)

    @property
    def config(self) -> Descriptor | None:
        if self.media_type in IMAGE_TYPES and self.data.get("config"):
            return Descriptor.from_dict(self.data["config"])
        return None

    @property
    def layers(self) -> list[Descriptor]:
        if self.media_type in IMAGE_TYPES:
            return [Descriptor.from_dict(d) for d in self.data.get("layers") or []]
        if self.media_type in V1_TYPES:
            # v1 lists layers newest first by blobSum; sizes are unknown.
            sums = [layer["blobSum"] for layer in self.data.get("fsLayers") or []]
            return [
                Descriptor(media_type="application/vnd.docker.image.rootfs.diff.tar.gzip",
                           digest=s, size=-1)
                for s in reversed(sums)
            ]
        return []

    @property
    def manifests(self) -> list[Descriptor]:
        if self.is_index:
            return [Descriptor.from_dict(d) for d in self.data.get("manifests") or []]
        return []

    @property
    def subject(self) -> Descriptor | None:
        subject = self.data.get("subject") if self.raw else None
        return Descriptor.from_dict(subject) if subject else None

    @property
    def artifact_type(self) -> str:
        if not self.raw:
            return ""
        if self.data.get("artifactType"):
            return self.data["artifactType"]
        config = self.config
        return config.media_type if config and self.media_type == MT_OCI_MANIFEST else ""

    @property
    def annotations(self) -> dict[str, str]:
        return dict(self.data.get("annotations") or {}) if self.raw else {}

    def children(self) -> list[Descriptor]:
        """Everything this manifest references directly (config, layers, entries)."""
        out = list(self.manifests)
        if self.config is not None:
            out.append(self.config)
        out.extend(self.layers)
        return out

    def platform_entry(self, wanted: Platform | None = None) -> Descriptor | None:
        """The index entry for a platform (the local one by default)."""
        wanted = wanted or local_platform()
        for entry in self.manifests:
            if entry.platform is not None and entry.platform.matches(wanted):
                return entry
        return None

    def pretty_json(self) -> str:
        return json.dumps(self.data, indent=2)


def _guess_media_type(data: dict[str, Any], header_type: str) -> str:
    if header_type in MANIFEST_TYPES:
        return header_type
    if data.get("schemaVersion") == 1:
        return MT_DOCKER_V1_SIGNED if data.get("signatures") else MT_DOCKER_V1
    if "manifests" in data:
        return MT_OCI_INDEX
    if "config" in data:
        return MT_OCI_MANIFEST
    return header_type


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _v1_payload(raw: bytes) -> bytes:
    """The signed payload of a Docker v1 manifest: the bytes its digest is computed on."""
    try:
        signatures = json.loads(raw).get("signatures") or []
        protected = json.loads(_b64url(signatures[0]["protected"]))
        return raw[: protected["formatLength"]] + _b64url(protected["formatTail"])
    except (ValueError, KeyError, IndexError, TypeError):
        return raw
