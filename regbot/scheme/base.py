"""The storage API every scheme (registry, OCI layout directory) implements."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from regbot.types.descriptor import Descriptor
from regbot.types.manifest import Manifest
from regbot.types.ref import Reference

# Content to upload: bytes, or a callable that opens a fresh chunk iterator each time it is
# called, so an upload that failed part way can be sent again from the start.
BlobSource = bytes | Callable[[], Iterable[bytes]]


class VerifiedOpener:
    """A blob source whose every stream is checked against the blob's digest and size as
    it is read (it relays a BlobReader): an upload need not hash those bytes again, so a
    copy hashes each byte once. Subclasses implement `__call__`."""

    def __call__(self) -> Iterable[bytes]:
        raise NotImplementedError

# Response headers as Go's http.Header holds them: canonical names, values in order.
Headers = dict[str, list[str]]


@dataclass
class Listing:
    """A tag or repository list with what the registry sent for its last page: the raw
    body and headers (regctl's `raw`, `body` and `headers` formats show them)."""

    names: list[str]
    body: bytes = b""
    headers: Headers = field(default_factory=dict)


class BlobReader(Protocol):
    """A streamed blob. Iterating yields chunks; the digest (and size, when known) is
    checked as the last chunk is read, and a mismatch raises DigestMismatch before the
    iteration ends, so a consumer never sees a corrupt blob complete."""

    descriptor: Descriptor
    headers: Headers  # of the registry's response; empty for a file

    def __iter__(self) -> Iterator[bytes]: ...

    def read_all(self) -> bytes: ...

    def close(self) -> None: ...

    def __enter__(self) -> BlobReader: ...

    def __exit__(self, *exc: object) -> None: ...


class Scheme(Protocol):
    def ping(self, ref: Reference) -> None: ...

    def manifest_get(self, ref: Reference) -> Manifest:
        """By tag or digest; by-digest reads verified, by-tag compared with the header."""

    def manifest_head(self, ref: Reference) -> Manifest:
        """Descriptor fields and rate limit only (raw is empty)."""

    def manifest_put(self, ref: Reference, manifest: Manifest) -> None:
        """To ref's tag, or by digest when ref has no tag. A manifest with a subject also
        updates the referrers fallback tag where the registry has no referrers API."""

    def manifest_delete(self, ref: Reference, manifest: Manifest | None = None) -> None:
        """Delete by ref's digest (resolving the tag first when only a tag is given); a
        manifest with a subject also leaves its subject's referrers fallback index.
        `manifest`: its content when the caller has it, else it is read as needed."""

    def blob_head(self, ref: Reference, digest: str) -> Descriptor: ...

    def blob_head_with_headers(self, ref: Reference, digest: str) -> tuple[Descriptor, Headers]: ...

    def blob_get(self, ref: Reference, digest: str, size: int = -1,
                 urls: Sequence[str] = ()) -> BlobReader:
        """`urls`: a foreign layer's descriptor URLs, tried when the source lacks it."""

    def blob_put(self, ref: Reference, descriptor: Descriptor, source: BlobSource) -> Descriptor:
        """Upload, verifying the digest of what was sent; returns the stored descriptor."""

    def blob_mount(self, ref: Reference, source: Reference, digest: str) -> bool:
        """Cross-repository mount; False when refused (the caller uploads instead)."""

    def tag_list(self, ref: Reference, limit: int | None = None, last: str | None = None) -> list[str]: ...

    def tag_listing(self, ref: Reference, limit: int | None = None, last: str | None = None) -> Listing:
        """tag_list with the raw body and headers of the last page (index.json for a layout)."""

    def tag_delete(self, ref: Reference) -> None: ...

    def repo_list(self, ref: Reference, limit: int | None = None, last: str | None = None) -> list[str]: ...

    def repo_listing(self, ref: Reference, limit: int | None = None, last: str | None = None) -> Listing: ...

    def referrers(self, ref: Reference, artifact_type: str = "") -> list[Descriptor]: ...

    def close(self, ref: Reference) -> None: ...
