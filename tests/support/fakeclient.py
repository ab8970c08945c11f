"""An in-memory stand-in for RegClient, for unit tests of the copy engine's logic.

It keeps repositories (by `Reference.name`) of manifests, tags and blobs, verifies
digests the way the real schemes promise to, counts every call in `calls`
(`(operation, str(ref))` tuples) and can be told to corrupt a blob (`corrupt`), refuse
index entries that are absent (`strict_index`) or fail an operation (`fail`).
Integration tests use the real client against real registries; this is for planning.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from regbot.errors import DigestMismatch, NotFound, RegistryError
from regbot.hosts import Host
from regbot.types.descriptor import Descriptor, digest_of
from regbot.types.manifest import Manifest
from regbot.types.ref import Reference

CHUNK = 4096


@dataclass
class FakeRepo:
    manifests: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # digest -> (mt, raw)
    tags: dict[str, str] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)


class FakeReader:
    def __init__(self, data: bytes, digest: str, ref: Reference) -> None:
        self.data, self.ref = data, ref
        self.descriptor = Descriptor("application/octet-stream", digest, len(data))
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        h = hashlib.sha256()
        for i in range(0, len(self.data), CHUNK):
            piece = self.data[i:i + CHUNK]
            h.update(piece)
            if i + CHUNK >= len(self.data) and "sha256:" + h.hexdigest() != self.descriptor.digest:
                raise DigestMismatch(self.ref, f"blob {self.descriptor.digest} content differs")
            yield piece
        if not self.data and digest_of(b"") != self.descriptor.digest:
            raise DigestMismatch(self.ref, "empty blob")

    def read_all(self) -> bytes:
        return b"".join(self)

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> FakeReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FakeClaim:
    def __init__(self) -> None:
        self.waited = False
        self.done = False  # FakeLimits keeps no done marks: every claimant looks


class FakeLimits:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[tuple[str, str], threading.Lock] = {}
        self.claims: list[tuple[str, str]] = []

    @contextlib.contextmanager
    def blob_claim(self, repo_key: str, digest: str, ttl: float = 300,
                   timeout: float | None = None) -> Iterator[FakeClaim]:
        with self._lock:
            lock = self._held.setdefault((repo_key, digest), threading.Lock())
            self.claims.append((repo_key, digest))
        claim = FakeClaim()
        if not lock.acquire(blocking=False):
            claim.waited = True
            lock.acquire()
        try:
            yield claim
        finally:
            lock.release()


class FakeHosts:
    def get(self, name: str) -> Host:
        return Host(name=name)


class FakeClient:
    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.calls: Counter[tuple[str, str]] = Counter()
        self.log: list[tuple[str, str]] = []
        self.limits = FakeLimits()
        self.hosts = FakeHosts()
        self.corrupt: set[str] = set()  # blob digests served with a flipped byte
        self.strict_index = False  # refuse an index whose entries are absent
        self.fail: dict[str, Exception] = {}  # operation -> error raised once
        self._lock = threading.Lock()

    # --- setup and inspection ---

    def repo(self, ref: Reference | str) -> FakeRepo:
        if isinstance(ref, str):
            ref = Reference.parse(ref)
        with self._lock:
            return self.repos.setdefault(ref.repo_only().name, FakeRepo())

    def add_blob(self, ref: str, data: bytes) -> Descriptor:
        digest = digest_of(data)
        self.repo(ref).blobs[digest] = data
        return Descriptor("application/octet-stream", digest, len(data))

    def add_manifest(self, ref: str, raw: bytes, media_type: str, tag: str | None = None) -> str:
        digest = Manifest.from_bytes(raw, media_type).digest
        repo = self.repo(ref)
        repo.manifests[digest] = (media_type, raw)
        if tag:
            repo.tags[tag] = digest
        return digest

    def count(self, op: str) -> int:
        return sum(n for (o, _), n in self.calls.items() if o == op)

    def _note(self, op: str, ref: Reference) -> None:
        with self._lock:
            self.calls[(op, str(ref))] += 1
            self.log.append((op, str(ref)))
            err = self.fail.pop(op, None)
        if err is not None:
            raise err

    def _resolve(self, ref: Reference) -> tuple[str, bytes]:
        repo = self.repo(ref)
        digest = ref.digest or repo.tags.get(ref.tag, "")
        if digest not in repo.manifests:
            raise NotFound(ref, "manifest unknown")
        mt, raw = repo.manifests[digest]
        return digest, raw

    # --- the RegClient surface the copy engine uses ---

    def manifest_head(self, ref: Reference) -> Manifest:
        self._note("manifest_head", ref)
        digest, raw = self._resolve(ref)
        mt = self.repo(ref).manifests[digest][0]
        return Manifest(media_type=mt, digest=digest, size=len(raw))

    def manifest_get(self, ref: Reference) -> Manifest:
        self._note("manifest_get", ref)
        digest, raw = self._resolve(ref)
        mt = self.repo(ref).manifests[digest][0]
        return Manifest(media_type=mt, digest=digest, size=len(raw), raw=raw)

    def manifest_put(self, ref: Reference, manifest: Manifest) -> None:
        self._note("manifest_put", ref)
        repo = self.repo(ref)
        if ref.digest and ref.digest != manifest.digest:
            raise DigestMismatch(ref, "manifest digest differs from the reference")
        if manifest.raw and manifest.is_index and self.strict_index:
            for entry in manifest.manifests:
                if entry.digest not in repo.manifests:
                    raise RegistryError(ref, "manifest blob unknown", status=400,
                                        code="MANIFEST_BLOB_UNKNOWN")
        elif manifest.raw and manifest.is_image:
            for child in manifest.children():
                if child.digest not in repo.blobs and not child.urls:
                    raise RegistryError(ref, f"blob unknown {child.digest}", status=400,
                                        code="BLOB_UNKNOWN")
        repo.manifests[manifest.digest] = (manifest.media_type, manifest.raw)
        if ref.tag:
            repo.tags[ref.tag] = manifest.digest

    def blob_head(self, ref: Reference, digest: str) -> Descriptor:
        self._note("blob_head", ref.with_digest(digest))
        data = self.repo(ref).blobs.get(digest)
        if data is None:
            raise NotFound(ref, f"blob {digest} unknown")
        return Descriptor("application/octet-stream", digest, len(data))

    def blob_get(self, ref: Reference, digest: str, size: int = -1,
                 urls: Sequence[str] = ()) -> FakeReader:
        self._note("blob_get", ref.with_digest(digest))
        data = self.repo(ref).blobs.get(digest)
        if data is None:
            raise NotFound(ref, f"blob {digest} unknown")
        if digest in self.corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        return FakeReader(data, digest, ref.with_digest(digest))

    def blob_put(self, ref: Reference, descriptor: Descriptor, source: Any) -> Descriptor:
        self._note("blob_put", ref.with_digest(descriptor.digest))
        data = source if isinstance(source, bytes) else b"".join(source())
        if digest_of(data) != descriptor.digest:
            raise DigestMismatch(ref, f"uploaded content is not {descriptor.digest}")
        self.repo(ref).blobs[descriptor.digest] = data
        return Descriptor(descriptor.media_type, descriptor.digest, len(data))

    def blob_mount(self, ref: Reference, source: Reference, digest: str) -> bool:
        self._note("blob_mount", ref.with_digest(digest))
        if ref.host_key != source.host_key:
            return False
        data = self.repo(source).blobs.get(digest)
        if data is None:
            return False
        self.repo(ref).blobs[digest] = data
        return True

    def tag_list(self, ref: Reference, limit: int | None = None, last: str | None = None) -> list[str]:
        self._note("tag_list", ref)
        return sorted(self.repo(ref).tags)

    def referrers(self, ref: Reference, artifact_type: str = "") -> list[Descriptor]:
        self._note("referrers", ref)
        out = []
        for digest, (mt, raw) in sorted(self.repo(ref).manifests.items()):
            try:
                data = json.loads(raw)
            except ValueError:
                continue
            if (data.get("subject") or {}).get("digest") == ref.digest:
                out.append(Descriptor(mt, digest, len(raw),
                                      artifact_type=data.get("artifactType", "")))
        return out
