"""The registry client as a script's API calls see it: each call first waits for the
copies in flight that it must not overlap (regbot/sandbox/copies.py), and raises the
failure of one that failed. The copies themselves use the engine's client directly."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from regbot.sandbox.copies import CopyWindow
from regbot.scheme.base import BlobReader, BlobSource, Scheme
from regbot.types.descriptor import Descriptor
from regbot.types.manifest import Manifest
from regbot.types.ref import Reference

if TYPE_CHECKING:
    from regbot.client import RegClient


class ScriptClient:
    """RegClient's interface on `client`, in step with `copies`."""

    def __init__(self, client: RegClient, copies: CopyWindow) -> None:
        self.inner = client
        self.copies = copies
        self.limits = client.limits
        self.hosts = client.hosts

    def scheme(self, ref: Reference) -> Scheme:
        self.copies.before_write(ref)  # whoever takes the scheme may do anything with it
        return self.inner.scheme(ref)

    def ping(self, ref: Reference) -> None:
        self.copies.check()
        self.inner.ping(ref)

    # --- reads ---

    def manifest_get(self, ref: Reference) -> Manifest:
        self.copies.before_read(ref)
        return self.inner.manifest_get(ref)

    def manifest_head(self, ref: Reference) -> Manifest:
        self.copies.before_read(ref)
        return self.inner.manifest_head(ref)

    def blob_head(self, ref: Reference, digest: str) -> Descriptor:
        self.copies.before_read(ref)
        return self.inner.blob_head(ref, digest)

    def blob_get(self, ref: Reference, digest: str, size: int = -1,
                 urls: Sequence[str] = ()) -> BlobReader:
        self.copies.before_read(ref)
        return self.inner.blob_get(ref, digest, size, urls)

    def tag_list(self, ref: Reference, limit: int | None = None, last: str | None = None) -> list[str]:
        self.copies.before_read(ref)
        return self.inner.tag_list(ref, limit=limit, last=last)

    def repo_list(self, ref: Reference, limit: int | None = None, last: str | None = None) -> list[str]:
        self.copies.before_registry_read(ref)
        return self.inner.repo_list(ref, limit=limit, last=last)

    def referrers(self, ref: Reference, artifact_type: str = "") -> list[Descriptor]:
        self.copies.before_read(ref)
        return self.inner.referrers(ref, artifact_type)

    # --- writes ---

    def manifest_put(self, ref: Reference, manifest: Manifest) -> None:
        self.copies.before_write(ref)
        self.inner.manifest_put(ref, manifest)

    def manifest_delete(self, ref: Reference, manifest: Manifest | None = None) -> None:
        self.copies.before_write(ref)
        self.inner.manifest_delete(ref, manifest)

    def blob_put(self, ref: Reference, descriptor: Descriptor, source: BlobSource) -> Descriptor:
        self.copies.before_write(ref)
        return self.inner.blob_put(ref, descriptor, source)

    def blob_mount(self, ref: Reference, source: Reference, digest: str) -> bool:
        self.copies.before_write(ref)
        self.copies.before_read(source)
        return self.inner.blob_mount(ref, source, digest)

    def tag_delete(self, ref: Reference) -> None:
        self.copies.before_write(ref)
        self.inner.tag_delete(ref)

    def close(self, ref: Reference) -> None:
        self.copies.before_write(ref)
        self.inner.close(ref)
