"""Referrers: the OCI 1.1 API, or the fallback tag schema where a registry lacks it.

The fallback keeps an OCI index of a subject's referrers under the tag `<alg>-<hex>`;
pushing a manifest with a `subject` to a registry without the API (its PUT answer has no
`OCI-Subject` header) adds the manifest's descriptor there, under a cluster-wide lock so
concurrent pushes do not lose each other's entries.
"""

from __future__ import annotations

import json
import logging
import re

from regbot.errors import NotFound, RegistryError
from regbot.http.client import Request
from regbot.scheme.reg.common import RegBase
from regbot.types.descriptor import Descriptor
from regbot.types.manifest import MAX_MANIFEST_SIZE, MT_OCI_INDEX, Manifest
from regbot.types.ref import Reference

log = logging.getLogger(__name__)

LOCK_TTL = 60.0
LOCK_WAIT = 120.0
_UNSAFE = re.compile(r"[^a-zA-Z0-9._-]")


def fallback_tag(digest: str) -> str:
    """The referrers fallback tag of a digest: `sha256:abc...` -> `sha256-abc...`."""
    algorithm, _, encoded = digest.partition(":")
    return f"{_UNSAFE.sub('-', algorithm)[:32]}-{_UNSAFE.sub('-', encoded)[:64]}"


class ReferrerMixin(RegBase):
    def referrers(self, ref: Reference, artifact_type: str = "") -> list[Descriptor]:
        digest = ref.digest or self.manifest_head(ref).digest  # type: ignore[attr-defined]
        subject = ref.repo_only().with_digest(digest)
        key = (ref.registry, ref.repository)
        if self._referrers_api.get(key, True):
            found = self._referrers_by_api(subject, artifact_type)
            self._referrers_api[key] = found is not None
            if found is not None:
                return found
        return _filtered(self._fallback_index(subject)[1], artifact_type)

    def _referrers_by_api(self, subject: Reference, artifact_type: str) -> list[Descriptor] | None:
        """The referrers from the API, or None when the registry has no such API."""
        query = [("artifactType", artifact_type)] if artifact_type else []
        req = Request(
            "GET", subject.registry, subject.repository, f"referrers/{subject.digest}",
            query=query, headers={"Accept": MT_OCI_INDEX}, ref=subject,
        )
        found: list[Descriptor] = []
        current: Request | None = req
        while current is not None:
            resp = self._send(current)
            with resp:
                if resp.status in (404, 405) and current is req:
                    index = _as_index(resp.read_prefix(MAX_MANIFEST_SIZE))
                    if index is None:
                        return None  # no OCI index in the answer: the API is absent
                else:
                    self._check(resp, (200,), subject, "list referrers")
                    index = _as_index(resp.read(MAX_MANIFEST_SIZE))
                    if index is None:
                        raise RegistryError(subject, "list referrers: the answer is not an OCI index")
                entries = [Descriptor.from_dict(d) for d in index.get("manifests") or []]
                applied = resp.headers.get("OCI-Filters-Applied", "")
                if "artifactType" not in [f.strip() for f in applied.split(",")]:
                    entries = _filtered(entries, artifact_type)
                found.extend(entries)
                current = self._next_page(resp, req)
        return found

    def _fallback_index(self, subject: Reference) -> tuple[dict, list[Descriptor]]:
        """The fallback tag's index document (a new empty one when the tag is absent)."""
        tagged = subject.repo_only().with_tag(fallback_tag(subject.digest))
        try:
            manifest = self._manifest_get(tagged, mirrors=False)  # type: ignore[attr-defined]
        except NotFound:
            return {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": []}, []
        if manifest.media_type != MT_OCI_INDEX:
            raise RegistryError(tagged, f"referrers fallback tag holds a {manifest.media_type}, not an OCI index")
        return dict(manifest.data), manifest.manifests

    def _referrers_fallback_add(self, ref: Reference, manifest: Manifest, subject_digest: str) -> None:
        subject = ref.repo_only().with_digest(subject_digest)
        lock = self.limits.lock(f"referrers:{subject.name}@{subject_digest}", LOCK_TTL)
        if not lock.acquire(blocking=True, timeout=LOCK_WAIT):
            raise RegistryError(ref, f"put manifest: timed out waiting to update the referrers of {subject_digest}")
        try:
            document, entries = self._fallback_index(subject)
            if any(e.digest == manifest.digest for e in entries):
                return
            entry = {"mediaType": manifest.media_type, "digest": manifest.digest, "size": manifest.size}
            if manifest.artifact_type:
                entry["artifactType"] = manifest.artifact_type
            if manifest.annotations:
                entry["annotations"] = manifest.annotations
            document["manifests"] = [*(document.get("manifests") or []), entry]
            document.pop("subject", None)  # the index itself must not refer to anything
            index = Manifest.from_bytes(json.dumps(document, indent=2).encode(), MT_OCI_INDEX)
            self.manifest_put(subject.repo_only().with_tag(fallback_tag(subject_digest)), index)  # type: ignore[attr-defined]
        finally:
            lock.release()


    def _referrers_fallback_remove(self, ref: Reference, subject_digest: str) -> None:
        """Take `ref`'s digest out of the fallback index of `subject_digest`: the tag is
        deleted when nothing is left (an empty index is pushed where the registry cannot
        delete it), else the shorter index is pushed. Nothing to do where the registry
        has the referrers API (it keeps its own list) or the index does not list it."""
        subject = ref.repo_only().with_digest(subject_digest)
        key = (ref.registry, ref.repository)
        if self._referrers_api.get(key, True):
            has_api = self._referrers_by_api(subject, "") is not None
            self._referrers_api[key] = has_api
            if has_api:
                return
        lock = self.limits.lock(f"referrers:{subject.name}@{subject_digest}", LOCK_TTL)
        if not lock.acquire(blocking=True, timeout=LOCK_WAIT):
            raise RegistryError(ref, f"delete manifest: timed out waiting to update the referrers of {subject_digest}")
        try:
            document, entries = self._fallback_index(subject)
            kept = [d for d in document.get("manifests") or [] if d.get("digest") != ref.digest]
            if len(kept) == len(entries):
                return  # not listed (or no fallback tag at all)
            tagged = subject.repo_only().with_tag(fallback_tag(subject_digest))
            if not kept:
                try:
                    self.tag_delete(tagged)  # type: ignore[attr-defined]
                    return
                except RegistryError as exc:
                    log.info("%s: the emptied referrers tag could not be deleted (%s), "
                             "pushing an empty index instead", tagged, exc)
            document["manifests"] = kept
            index = Manifest.from_bytes(json.dumps(document, indent=2).encode(), MT_OCI_INDEX)
            self.manifest_put(tagged, index)  # type: ignore[attr-defined]
        finally:
            lock.release()


def _as_index(body: bytes) -> dict | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    if data.get("mediaType") == MT_OCI_INDEX or isinstance(data.get("manifests"), list):
        return data
    return None


def _filtered(entries: list[Descriptor], artifact_type: str) -> list[Descriptor]:
    return [e for e in entries if e.artifact_type == artifact_type] if artifact_type else entries
