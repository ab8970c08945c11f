"""Manifests of an OCI layout: stored as blobs, named by index.json entries."""

from __future__ import annotations

import hashlib
import os
from typing import Any

from regbot.errors import (
    DigestMismatch,
    NotFound,
    RegbotError,
    RegistryError,
    TooLarge,
)
from regbot.scheme.ocidir import index as idx
from regbot.scheme.ocidir.layout import (
    INDEX_FILE,
    Layout,
    check_digest,
    read_bounded,
    write_atomic,
)
from regbot.types.manifest import MAX_MANIFEST_SIZE, Manifest
from regbot.types.ref import Reference


def parse_manifest(ref: Reference, raw: bytes, media_type: str = "", what: str = "manifest"
                   ) -> Manifest:
    """Parse raw bytes, turning a bad document into a RegistryError naming the ref."""
    try:
        return Manifest.from_bytes(raw, media_type)
    except RegbotError as exc:
        raise RegistryError(ref, f"{what}: {exc}") from None


def content_digest(parsed: Manifest, raw: bytes, algorithm: str) -> str:
    """The digest of a manifest's content (a Docker v1 signed manifest is hashed on its
    signed payload, which Manifest.from_bytes knows how to cut out)."""
    if algorithm == "sha256":
        return parsed.digest
    return f"{algorithm}:{hashlib.new(algorithm, raw).hexdigest()}"


class ManifestMixin:
    """Manifest operations; uses _mark_modified (OCIDirScheme) and _referrer_update
    (ReferrerMixin)."""

    # --- reading ---

    def _resolve(self, layout: Layout, ref: Reference,
                 index: dict[str, Any] | None = None) -> dict[str, Any]:
        """The index.json entry for ref (a bare {"digest"} for a digest with no entry:
        children of an index are stored without one)."""
        if index is None:
            index = layout.read_index()
        if ref.digest:
            check_digest(ref, ref.digest)
            return idx.find_digest(index, ref.digest) or {"digest": ref.digest}
        tag = ref.tag or "latest"
        entry = idx.find_tag(index, tag)
        if entry is None:
            raise NotFound(ref, f"tag {tag} not found in {INDEX_FILE}")
        digest = entry.get("digest")
        if not isinstance(digest, str):
            raise RegistryError(ref, f"{INDEX_FILE} entry for {tag} has no digest")
        check_digest(ref, digest)
        return entry

    def _read_manifest(self, layout: Layout, ref: Reference, entry: dict[str, Any]) -> Manifest:
        """Read a manifest blob and check it against the entry's digest and size."""
        digest = entry["digest"]
        algorithm = check_digest(ref, digest)[0]
        expected = entry.get("size")
        expected = expected if isinstance(expected, int) and expected > 0 else -1
        if expected > MAX_MANIFEST_SIZE:
            raise TooLarge(ref, f"manifest {digest} of {expected} bytes exceeds "
                                f"{MAX_MANIFEST_SIZE} bytes")
        try:
            fh = layout.open_blob(digest)
        except NotFound:
            raise NotFound(ref, f"manifest {digest} not found") from None
        with fh:
            raw = read_bounded(fh, MAX_MANIFEST_SIZE)
        if len(raw) > MAX_MANIFEST_SIZE:
            raise TooLarge(ref, f"manifest {digest} exceeds {MAX_MANIFEST_SIZE} bytes")
        try:
            parsed = Manifest.from_bytes(raw, entry.get("mediaType") or "")
        except RegbotError as exc:
            # Not a manifest we can parse: either corrupt or some other blob.
            computed = f"{algorithm}:{hashlib.new(algorithm, raw).hexdigest()}"
            if computed != digest:
                raise DigestMismatch(ref, f"manifest {digest} content has digest {computed}"
                                     ) from None
            raise RegistryError(ref, f"manifest {digest}: {exc}") from None
        computed = content_digest(parsed, raw, algorithm)
        if computed != digest:
            raise DigestMismatch(ref, f"manifest {digest} content has digest {computed}")
        if expected >= 0 and expected != len(raw):
            raise DigestMismatch(ref, f"manifest {digest} has {len(raw)} bytes, "
                                      f"{INDEX_FILE} says {expected}")
        return Manifest(media_type=parsed.media_type, digest=digest, size=len(raw), raw=raw)

    def manifest_get(self, ref: Reference) -> Manifest:
        layout = Layout(ref)
        layout.check()
        return self._read_manifest(layout, ref, self._resolve(layout, ref))

    def manifest_head(self, ref: Reference) -> Manifest:
        layout = Layout(ref)
        layout.check()
        entry = self._resolve(layout, ref)
        digest = entry["digest"]
        path = layout.blob_path(digest)
        if not os.path.isfile(path):
            raise NotFound(ref, f"manifest {digest} not found")
        media_type = entry.get("mediaType") or ""
        size = entry.get("size") if isinstance(entry.get("size"), int) else -1
        if not media_type or size is None or size < 0:
            # No descriptor to trust (a child stored by digest): look at the file.
            full = self._read_manifest(layout, ref, entry)
            media_type, size = full.media_type, full.size
        return Manifest(media_type=media_type, digest=digest, size=size)

    # --- writing ---

    def manifest_put(self, ref: Reference, manifest: Manifest) -> None:
        """Store the manifest blob, then point ref's tag at it in index.json (or record
        an untagged entry when ref has only a digest). A manifest with a subject is also
        added to the referrers fallback tag of its subject."""
        raw = manifest.raw
        if not raw:
            raise RegistryError(ref, "manifest has no body (it was read by HEAD)")
        if len(raw) > MAX_MANIFEST_SIZE:
            raise TooLarge(ref, f"manifest of {len(raw)} bytes exceeds {MAX_MANIFEST_SIZE} bytes")
        parsed = parse_manifest(ref, raw, manifest.media_type)
        digest = ref.digest or manifest.digest or parsed.digest
        algorithm = check_digest(ref, digest)[0]
        computed = content_digest(parsed, raw, algorithm)
        if computed != digest:
            raise DigestMismatch(ref, f"manifest content has digest {computed}, not {digest}")
        stored = Manifest(media_type=parsed.media_type, digest=digest, size=len(raw), raw=raw)
        layout = Layout(ref)
        with layout.lock():
            layout.ensure()
            self._store_manifest(layout, ref, stored)
            if stored.subject is not None:
                self._referrer_update(layout, ref, stored, add=True)
        self._mark_modified(layout)

    def _store_manifest(self, layout: Layout, ref: Reference, manifest: Manifest) -> None:
        """Write the blob and its index.json entry; the caller holds the layout lock."""
        algorithm = check_digest(ref, manifest.digest)[0]
        layout.blob_dir_for(algorithm)
        write_atomic(layout.blob_path(manifest.digest), manifest.raw)
        index = layout.read_index()
        descriptor = {"mediaType": manifest.media_type, "digest": manifest.digest,
                      "size": manifest.size}
        if not ref.tag and manifest.subject is not None and manifest.subject.digest:
            # A referrer by digest gets no index.json entry of its own (regclient pushes
            # it as a child): its subject's fallback tag, updated next, lists it.
            changed = idx.prune_untagged(index, {manifest.digest})
        else:
            changed = idx.set_entry(index, ref.tag, descriptor)
        if manifest.is_index:
            children = {d.digest for d in manifest.manifests}
            changed = idx.prune_untagged(index, children) or changed
        if changed:
            layout.write_index(index)

    def manifest_delete(self, ref: Reference, manifest: Manifest | None = None) -> None:
        # `manifest` is not needed: the file is read under the layout lock anyway.
        """Delete by digest (a tag is resolved first): every index.json entry with that
        digest (all its tags) goes, its referrers entry goes, then the blob file."""
        layout = Layout(ref)
        layout.check()
        with layout.lock():
            index = layout.read_index()
            digest = self._resolve(layout, ref, index)["digest"]
            path = layout.blob_path(digest)
            if not os.path.isfile(path):
                raise NotFound(ref, f"manifest {digest} not found")
            listed = idx.find_digest(index, digest) is not None
            manifest: Manifest | None = None
            try:
                manifest = self._read_manifest(layout, ref, {"digest": digest})
            except DigestMismatch:
                manifest = None  # corrupt: still deleted below
            except RegistryError:
                if not listed:
                    raise NotFound(ref, f"manifest {digest} not found") from None
            if manifest is not None and manifest.subject is not None:
                self._referrer_update(layout, ref, manifest, add=False)
                index = layout.read_index()
            if idx.remove_digest(index, digest):
                layout.write_index(index)
            os.unlink(path)
        self._mark_modified(layout)
