"""Referrers in an OCI layout, kept under the OCI 1.1 fallback tag as regclient does:
the referrers of `sha256:<hex>` are the entries of the index tagged `sha256-<hex>`."""

from __future__ import annotations

import json
import re
from typing import Any

from regbot.errors import RegistryError
from regbot.scheme.ocidir import index as idx
from regbot.scheme.ocidir.layout import Layout, check_digest
from regbot.types.descriptor import Descriptor
from regbot.types.manifest import MT_OCI_INDEX, Manifest
from regbot.types.ref import Reference

_UNSAFE = re.compile(r"[^a-zA-Z0-9._-]")


def fallback_tag(digest: str) -> str:
    """`sha256:<hex>` -> `sha256-<hex>` (algorithm cut to 32, hex to 64 characters)."""
    algorithm, _, hex_part = digest.partition(":")
    return f"{_UNSAFE.sub('-', algorithm)[:32]}-{_UNSAFE.sub('-', hex_part)[:64]}"


def referrer_descriptor(manifest: Manifest) -> dict[str, Any]:
    """The entry for a referrer: its descriptor plus artifactType and annotations."""
    out = manifest.descriptor().to_dict()
    if manifest.artifact_type:
        out["artifactType"] = manifest.artifact_type
    if manifest.annotations:
        out["annotations"] = manifest.annotations
    return out


class ReferrerMixin:
    """Referrers; uses _resolve, _read_manifest, _store_manifest (ManifestMixin)."""

    def referrers(self, ref: Reference, artifact_type: str = "") -> list[Descriptor]:
        """Referrers of ref's digest (a tag is resolved first), optionally of one type."""
        layout = Layout(ref)
        layout.check()
        index = layout.read_index()
        digest = self._resolve(layout, ref, index)["digest"]
        tag = fallback_tag(digest)
        entry = idx.find_tag(index, tag)
        if entry is None:
            return []
        listing = self._read_manifest(layout, ref.repo_only().with_tag(tag), entry)
        if not listing.is_index:
            raise RegistryError(ref, f"referrers tag {tag} is not an index")
        found = listing.manifests
        if artifact_type:
            found = [d for d in found if d.artifact_type == artifact_type]
        return found

    def _referrer_update(self, layout: Layout, ref: Reference, manifest: Manifest,
                         add: bool) -> None:
        """Add (or remove) manifest in its subject's fallback index; the caller holds
        the layout lock, so concurrent pushes of referrers cannot lose one another."""
        subject = manifest.subject
        if subject is None:
            return
        check_digest(ref, subject.digest)
        tag = fallback_tag(subject.digest)
        tag_ref = ref.repo_only().with_tag(tag)
        index = layout.read_index()
        entry = idx.find_tag(index, tag)
        doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": []}
        if entry is not None:
            current = self._read_manifest(layout, tag_ref, entry)
            if not current.is_index:
                raise RegistryError(tag_ref, "referrers tag does not hold an index")
            doc = dict(current.data)
        entries = list(doc.get("manifests") or [])
        if add:
            if any(e.get("digest") == manifest.digest for e in entries):
                return
            entries.append(referrer_descriptor(manifest))
        else:
            kept = [e for e in entries if e.get("digest") != manifest.digest]
            if len(kept) == len(entries):
                return
            entries = kept
            if not entries:
                if idx.remove_tag(index, tag):
                    layout.write_index(index)
                return
        doc["manifests"] = entries
        raw = json.dumps(doc, indent=2).encode()
        listing = Manifest.from_bytes(raw, MT_OCI_INDEX)
        self._store_manifest(layout, tag_ref, listing)
