"""RegClient: one entry point for registry and OCI-layout operations, picked by scheme."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from regbot import __version__
from regbot.hosts import Host, HostTable
from regbot.limits import Limits
from regbot.scheme.base import BlobReader, BlobSource, Headers, Listing, Scheme
from regbot.scheme.reg import RegScheme
from regbot.types.descriptor import Descriptor
from regbot.types.manifest import Manifest
from regbot.types.ref import Reference

DEFAULT_USER_AGENT = f"regbot/{__version__}"


class RegClient:
    """Holds the per-host settings and the shared limits; thread safe.

    `limits` is shared state (Redis in a cluster, process memory when embedded).
    """

    def __init__(
        self,
        hosts: list[Host] | None = None,
        *,
        limits: Limits | None = None,
        user_agent: str = "",
        skip_docker_config: bool = False,
        blob_limit: int = 0,
    ) -> None:
        self.hosts = HostTable(hosts or [], skip_docker_config=skip_docker_config)
        self.limits = limits or Limits.in_memory()
        self._schemes: dict[str, Scheme] = {
            "reg": RegScheme(
                self.hosts,
                self.limits,
                user_agent=user_agent or DEFAULT_USER_AGENT,
                blob_limit=blob_limit,
            ),
        }
        self._blob_limit = blob_limit
        self._lock = threading.Lock()

    def scheme(self, ref: Reference) -> Scheme:
        scheme = self._schemes.get(ref.scheme)
        if scheme is None:
            scheme = self._ocidir() if ref.scheme == "ocidir" else self._schemes[ref.scheme]
        return scheme

    def _ocidir(self) -> Scheme:
        # Imported on first use: most runs never touch a layout directory.
        from regbot.scheme.ocidir import OCIDirScheme

        with self._lock:
            if "ocidir" not in self._schemes:
                self._schemes["ocidir"] = OCIDirScheme(blob_limit=self._blob_limit)
            return self._schemes["ocidir"]

    def ping(self, ref: Reference) -> None:
        self.scheme(ref).ping(ref)

    def manifest_get(self, ref: Reference) -> Manifest:
        return self.scheme(ref).manifest_get(ref)

    def manifest_head(self, ref: Reference) -> Manifest:
        return self.scheme(ref).manifest_head(ref)

    def manifest_put(self, ref: Reference, manifest: Manifest) -> None:
        self.scheme(ref).manifest_put(ref, manifest)

    def manifest_delete(self, ref: Reference, manifest: Manifest | None = None) -> None:
        self.scheme(ref).manifest_delete(ref, manifest)

    def blob_head(self, ref: Reference, digest: str) -> Descriptor:
        return self.scheme(ref).blob_head(ref, digest)

    def blob_head_with_headers(self, ref: Reference, digest: str) -> tuple[Descriptor, Headers]:
        return self.scheme(ref).blob_head_with_headers(ref, digest)

    def blob_get(self, ref: Reference, digest: str, size: int = -1,
                 urls: Sequence[str] = ()) -> BlobReader:
        return self.scheme(ref).blob_get(ref, digest, size, urls)

    def blob_put(self, ref: Reference, descriptor: Descriptor, source: BlobSource) -> Descriptor:
        return self.scheme(ref).blob_put(ref, descriptor, source)

    def blob_mount(self, ref: Reference, source: Reference, digest: str) -> bool:
        if ref.scheme != source.scheme or ref.host_key != source.host_key:
            return False
        return self.scheme(ref).blob_mount(ref, source, digest)

    def tag_list(self, ref: Reference, limit: int | None = None, last: str | None = None) -> list[str]:
        return self.scheme(ref).tag_list(ref, limit=limit, last=last)

    def tag_listing(self, ref: Reference, limit: int | None = None, last: str | None = None) -> Listing:
        return self.scheme(ref).tag_listing(ref, limit=limit, last=last)

    def tag_delete(self, ref: Reference) -> None:
        self.scheme(ref).tag_delete(ref)

    def repo_list(self, ref: Reference, limit: int | None = None, last: str | None = None) -> list[str]:
        return self.scheme(ref).repo_list(ref, limit=limit, last=last)

    def repo_listing(self, ref: Reference, limit: int | None = None, last: str | None = None) -> Listing:
        return self.scheme(ref).repo_listing(ref, limit=limit, last=last)

    def referrers(self, ref: Reference, artifact_type: str = "") -> list[Descriptor]:
        return self.scheme(ref).referrers(ref, artifact_type)

    def close(self, ref: Reference) -> None:
        self.scheme(ref).close(ref)
