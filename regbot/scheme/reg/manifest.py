"""Manifests: GET/HEAD (mirrors first), PUT and DELETE (the registry itself)."""

from __future__ import annotations

from regbot import metrics
from regbot.errors import DigestMismatch, NotFound, RegbotError, RegistryError, TooLarge
from regbot.http.client import Request, Response
from regbot.scheme.reg.common import RegBase
from regbot.types.descriptor import digest_of
from regbot.types.manifest import ACCEPT_MANIFESTS, MAX_MANIFEST_SIZE, Manifest
from regbot.types.ratelimit import RateLimit
from regbot.types.ref import Reference


class ManifestMixin(RegBase):
    def manifest_get(self, ref: Reference) -> Manifest:
        return self._manifest_get(ref, mirrors=True)

    def _manifest_get(self, ref: Reference, mirrors: bool) -> Manifest:
        ident = _ident(ref, "get manifest")
        resp = self._send(Request(
            "GET", ref.registry, ref.repository, f"manifests/{ident}",
            headers={"Accept": ACCEPT_MANIFESTS}, mirrors=mirrors, ref=ref,
        ))
        with resp:
            ratelimit = self._record_ratelimit(resp)  # a 429 carries it too
            self._check(resp, (200,), ref, "get manifest")
            try:
                raw = resp.read(MAX_MANIFEST_SIZE)
            except TooLarge:
                raise TooLarge(ref, f"get manifest: larger than the {MAX_MANIFEST_SIZE} byte limit") from None
        content_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        manifest: Manifest | None = None
        try:
            manifest = Manifest.from_bytes(raw, content_type)
        except RegbotError as exc:
            problem = str(exc)
        # The digest first: a corrupted body is a digest mismatch, not a parse error.
        if ref.digest:
            actual = _digest_like(manifest, raw, ref.digest)
            if actual != ref.digest:
                raise DigestMismatch(ref, f"get manifest: the registry sent content with digest {actual}")
        else:
            header = resp.headers.get("Docker-Content-Digest", "").strip()
            if header and _digest_like(manifest, raw, header) != header:
                raise DigestMismatch(
                    ref, f"get manifest: content digest {_digest_like(manifest, raw, 'sha256:')} "
                    f"differs from the registry's {header}"
                )
        if manifest is None:
            raise RegistryError(ref, f"get manifest: {problem}")
        if ref.digest:
            manifest.digest = ref.digest
        manifest.ratelimit = ratelimit
        manifest.headers = resp.header_map()
        return manifest

    def manifest_head(self, ref: Reference) -> Manifest:
        ident = _ident(ref, "head manifest")
        resp = self._send(Request(
            "HEAD", ref.registry, ref.repository, f"manifests/{ident}",
            headers={"Accept": ACCEPT_MANIFESTS}, mirrors=True, ref=ref,
        ))
        with resp:
            ratelimit = self._record_ratelimit(resp)
            self._check(resp, (200,), ref, "head manifest")
        digest = resp.headers.get("Docker-Content-Digest", "").strip()
        if ref.digest and digest and digest != ref.digest:
            raise DigestMismatch(ref, f"head manifest: the registry reports digest {digest}")
        media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        length = resp.headers.get("Content-Length", "")
        if not digest and not ref.digest:
            # Some registries omit the digest on HEAD: read the manifest instead.
            full = self.manifest_get(ref)
            return Manifest(full.media_type, full.digest, full.size, b"", full.ratelimit)
        return Manifest(
            media_type=media_type,
            digest=ref.digest or digest,
            size=int(length) if length.isdigit() else -1,
            raw=b"",
            ratelimit=ratelimit,
            headers=resp.header_map(),
        )

    def manifest_put(self, ref: Reference, manifest: Manifest) -> None:
        if not manifest.raw:
            raise RegistryError(ref, "put manifest: the manifest has no body (it was read by HEAD)")
        if len(manifest.raw) > MAX_MANIFEST_SIZE:
            raise TooLarge(ref, f"put manifest: {len(manifest.raw)} bytes exceeds the {MAX_MANIFEST_SIZE} byte limit")
        if ref.digest and _digest_like(manifest, manifest.raw, ref.digest) != ref.digest:
            raise DigestMismatch(ref, f"put manifest: the manifest's digest is {manifest.digest}")
        ident = ref.tag or ref.digest or manifest.digest
        resp = self._send(Request(
            "PUT", ref.registry, ref.repository, f"manifests/{ident}",
            headers={"Content-Type": manifest.media_type},
            body=manifest.raw, length=len(manifest.raw), ref=ref,
        ))
        with resp:
            self._check(resp, (200, 201, 202, 204), ref, "put manifest")
        header = resp.headers.get("Docker-Content-Digest", "").strip()
        if header and _digest_like(manifest, manifest.raw, header) != header:
            raise DigestMismatch(ref, f"put manifest: the registry stored digest {header}, sent {manifest.digest}")
        subject = manifest.subject
        if subject is not None and subject.digest and resp.headers.get("OCI-Subject", "") != subject.digest:
            # No referrers API here: keep the fallback tag's index up to date ourselves
            # (ReferrerMixin, referrer.py).
            self._referrers_fallback_add(ref, manifest, subject.digest)  # type: ignore[attr-defined]

    def manifest_delete(self, ref: Reference, manifest: Manifest | None = None) -> None:
        """Delete by digest. A manifest with a `subject` is first taken out of its
        subject's referrers fallback index (regclient's referrerDelete), so the index
        never lists a manifest that is gone. `manifest`: the content when the caller has
        it (saves reading it again); else it is read by digest."""
        digest = ref.digest or self.manifest_head(ref).digest
        target = ref.with_digest(digest)
        if manifest is None or not manifest.raw or manifest.digest != digest:
            try:
                manifest = self._manifest_get(target, mirrors=False)
            except NotFound:
                manifest = None  # the DELETE below reports it
        resp = self._send(Request("DELETE", ref.registry, ref.repository, f"manifests/{digest}", ref=target))
        with resp:
            self._check(resp, (200, 202, 204), target, "delete manifest")
        # After the DELETE, not before as regclient: a registry refusing deletes then
        # keeps its referrers index whole.
        if manifest is not None and manifest.subject is not None and manifest.subject.digest:
            self._referrers_fallback_remove(target, manifest.subject.digest)  # type: ignore[attr-defined]

    def ratelimit(self, ref: Reference) -> RateLimit:
        """The rate limit last reported by this registry (any worker, via limits)."""
        return self.limits.last_ratelimit(ref.registry) or RateLimit()

    def _record_ratelimit(self, resp: Response) -> RateLimit:
        ratelimit = RateLimit.from_headers(resp.headers)
        if ratelimit.set or resp.headers.get("RateLimit-Limit"):
            # Only registries that report limits are recorded (no store write otherwise).
            self.limits.record_ratelimit(resp.host.name, ratelimit)
            metrics.rate_limit(resp.host.name, ratelimit.remain, ratelimit.limit)
        return ratelimit


def _ident(ref: Reference, action: str) -> str:
    ident = ref.digest or ref.tag
    if not ident:
        raise RegistryError(ref, f"{action}: the reference has neither tag nor digest")
    return ident


def _digest_like(manifest: Manifest | None, raw: bytes, other: str) -> str:
    """The manifest's digest computed with the algorithm of `other` (over the signed
    payload for Docker v1 manifests, as Manifest.from_bytes does)."""
    algorithm = other.partition(":")[0]
    if manifest is not None and algorithm == manifest.digest.partition(":")[0]:
        return manifest.digest
    try:
        return digest_of(raw, algorithm)
    except ValueError:
        return manifest.digest if manifest is not None else digest_of(raw)
