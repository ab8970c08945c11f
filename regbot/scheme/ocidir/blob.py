"""Blobs of an OCI layout: head, streamed verified get, streamed verified put, mount."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import BinaryIO

from regbot.errors import DigestMismatch, NotFound, TooLarge
from regbot.scheme.base import BlobSource, Headers
from regbot.scheme.ocidir.layout import Layout, atomic_file, check_digest
from regbot.types.descriptor import Descriptor
from regbot.types.ref import Reference

CHUNK_SIZE = 1024 * 1024
OCTET_STREAM = "application/octet-stream"


class FileBlobReader:
    """A blob file read in chunks; the digest and size are checked before the last
    chunk is handed out, so a consumer never sees a corrupt blob complete."""

    def __init__(self, ref: Reference, descriptor: Descriptor, fh: BinaryIO,
                 chunk_size: int = CHUNK_SIZE) -> None:
        self.ref = ref
        self.descriptor = descriptor
        self.headers: Headers = {}  # a file has no response headers
        self._fh = fh
        self._chunk_size = chunk_size
        self._started = False

    def __iter__(self) -> Iterator[bytes]:
        if self._started:
            raise ValueError(f"{self.ref}: blob {self.descriptor.digest} was already read")
        self._started = True
        return self._chunks()

    def _chunks(self) -> Iterator[bytes]:
        hasher = hashlib.new(self.descriptor.digest.partition(":")[0])
        count = 0
        try:
            chunk = self._fh.read(self._chunk_size)
            while True:
                # Read one chunk ahead so the check happens before the last one is yielded.
                following = self._fh.read(self._chunk_size) if chunk else b""
                hasher.update(chunk)
                count += len(chunk)
                if not following:
                    self._verify(hasher, count)
                if chunk:
                    yield chunk
                if not following:
                    return
                chunk = following
        finally:
            self.close()

    def _verify(self, hasher: hashlib._Hash, count: int) -> None:
        algorithm = self.descriptor.digest.partition(":")[0]
        computed = f"{algorithm}:{hasher.hexdigest()}"
        if computed != self.descriptor.digest:
            raise DigestMismatch(
                self.ref, f"blob {self.descriptor.digest} content has digest {computed}"
            )
        if self.descriptor.size >= 0 and count != self.descriptor.size:
            raise DigestMismatch(
                self.ref,
                f"blob {self.descriptor.digest} has {count} bytes, expected {self.descriptor.size}",
            )

    def read_all(self) -> bytes:
        return b"".join(self)

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> FileBlobReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def source_chunks(source: BlobSource) -> Iterable[bytes]:
    if isinstance(source, bytes | bytearray | memoryview):
        return [bytes(source)]
    return source()


class BlobMixin:
    """Blob operations; uses _mark_modified (OCIDirScheme)."""

    blob_limit: int

    def _check_limit(self, ref: Reference, digest: str, size: int) -> None:
        if self.blob_limit and size > self.blob_limit:
            raise TooLarge(
                ref, f"blob {digest or '(new)'} of {size} bytes exceeds the limit of "
                f"{self.blob_limit} bytes"
            )

    def blob_head_with_headers(self, ref: Reference, digest: str) -> tuple[Descriptor, Headers]:
        return self.blob_head(ref, digest), {}

    def blob_head(self, ref: Reference, digest: str) -> Descriptor:
        layout = Layout(ref)
        path = layout.blob_path(digest)
        layout.check()
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise NotFound(ref, f"blob {digest} not found") from None
        if not os.path.isfile(path):
            raise NotFound(ref, f"blob {digest} not found")
        return Descriptor(media_type=OCTET_STREAM, digest=digest, size=st.st_size)

    def blob_get(self, ref: Reference, digest: str, size: int = -1,
                 urls: Sequence[str] = ()) -> FileBlobReader:
        # `urls` is not used: as in regclient, only a registry source falls back to them.
        layout = Layout(ref)
        check_digest(ref, digest)
        layout.check()
        fh = layout.open_blob(digest)
        try:
            actual = os.fstat(fh.fileno()).st_size
            if size >= 0 and actual != size:
                raise DigestMismatch(ref, f"blob {digest} has {actual} bytes, expected {size}")
            self._check_limit(ref, digest, actual)
        except BaseException:
            fh.close()
            raise
        return FileBlobReader(ref, Descriptor(media_type=OCTET_STREAM, digest=digest,
                                              size=actual), fh)

    def blob_put(self, ref: Reference, descriptor: Descriptor, source: BlobSource) -> Descriptor:
        """Stream source into blobs/<alg>/<hex> through a temp file, hashing as it goes.

        An empty digest means "unknown": it is computed (sha256) and returned. A size below
        zero (or zero with no digest) is unknown too.
        """
        layout = Layout(ref)
        digest = descriptor.digest
        algorithm = check_digest(ref, digest)[0] if digest else "sha256"
        size = descriptor.size
        size_known = size > 0 or (size == 0 and bool(digest))
        if size_known:
            self._check_limit(ref, digest, size)
        layout.ensure_exists()
        directory = layout.blob_dir_for(algorithm)
        hasher = hashlib.new(algorithm)
        count = 0
        with atomic_file(directory) as out:
            for chunk in source_chunks(source):
                if not chunk:
                    continue
                count += len(chunk)
                self._check_limit(ref, digest, count)
                if size_known and count > size:
                    raise DigestMismatch(
                        ref, f"blob {digest or '(new)'} is longer than {size} bytes"
                    )
                hasher.update(chunk)
                out.write(chunk)
            computed = f"{algorithm}:{hasher.hexdigest()}"
            if digest and computed != digest:
                raise DigestMismatch(ref, f"blob content has digest {computed}, expected {digest}")
            if size_known and count != size:
                raise DigestMismatch(ref, f"blob {computed} has {count} bytes, expected {size}")
            out.target = layout.blob_path(computed)
        self._mark_modified(layout)
        return dataclasses.replace(
            descriptor, media_type=descriptor.media_type or OCTET_STREAM, digest=computed,
            size=count,
        )

    def blob_mount(self, ref: Reference, source: Reference, digest: str) -> bool:
        """Within one layout the blob store is shared: "mounted" when it is already there."""
        if not source.is_ocidir or Layout(source).root != Layout(ref).root:
            return False
        try:
            self.blob_head(ref, digest)
        except NotFound:
            return False
        return True
