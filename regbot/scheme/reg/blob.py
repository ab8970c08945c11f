"""Blobs: HEAD, streamed and verified GET (resumed with Range after a short read),
monolithic and chunked uploads verified while sending, cross-repository mount."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import urllib3

from regbot.errors import DigestMismatch, RegbotError, RegistryError, TooLarge, TransportError
from regbot.http.client import Request, Response
from regbot.scheme.base import BlobSource, Headers, VerifiedOpener
from regbot.scheme.reg.common import RegBase
from regbot.types.descriptor import Descriptor, hasher_for
from regbot.types.ref import Reference

log = logging.getLogger(__name__)

OCTET_STREAM = "application/octet-stream"
MAX_RESUMES = 5
CHUNK_MIN_HEADER = "OCI-Chunk-Min-Length"
CHUNK_LIMIT = 1024 * 1024 * 1024  # a registry's minimum chunk is honoured up to this


class RegBlobReader:
    """A blob being downloaded. Iterating yields its chunks; the size and digest are
    checked as the data arrives, and the last chunk is only handed out once the whole
    blob verified, so a consumer never sees a corrupt blob complete. A connection that
    breaks part way is resumed with a Range request."""

    def __init__(self, scheme: BlobMixin, ref: Reference, descriptor: Descriptor, resp: Response) -> None:
        self.descriptor = descriptor
        self.headers = resp.header_map()
        self._scheme = scheme
        self._source = ref
        self._ref = _blob_ref(ref, descriptor.digest)
        self._resp: Response | None = resp
        self._iterated = False

    def __iter__(self) -> Iterator[bytes]:
        if self._iterated:
            raise RegbotError(f"{self._ref}: blob {self.descriptor.digest} can only be read once")
        self._iterated = True
        return self._chunks()

    def _chunks(self) -> Iterator[bytes]:
        digest, size = self.descriptor.digest, self.descriptor.size
        hasher = hasher_for(digest)
        limit = self._scheme.blob_limit
        total, resumes = 0, 0
        held = b""  # the newest chunk, handed out only when the next one (or the end) is checked
        try:
            while True:
                resp = self._resp
                assert resp is not None
                broken: BaseException | None = None
                try:
                    for chunk in resp.iter_available():
                        if not chunk:
                            continue
                        total += len(chunk)
                        if size >= 0 and total > size:
                            raise DigestMismatch(self._ref, f"blob {digest}: more than the expected {size} bytes")
                        if limit > 0 and total > limit:
                            raise TooLarge(self._ref, f"blob {digest}: larger than the {limit} byte blob limit")
                        hasher.update(chunk)
                        if held:
                            yield held
                        held = chunk
                except (urllib3.exceptions.HTTPError, OSError) as exc:
                    broken = exc
                resp.close()
                if size < 0 or total >= size:
                    if broken is not None:
                        raise TransportError(self._ref, f"blob {digest}: reading failed: {broken.__class__.__name__}")
                    break
                # A short body: ask for the rest.
                if resumes >= MAX_RESUMES:
                    raise TransportError(self._ref, f"blob {digest}: body ended after {total} of {size} bytes")
                resumes += 1
                log.info("%s: blob %s ended after %d of %d bytes, resuming", self._ref, digest, total, size)
                self._resp = self._scheme._resume(self._source, resp, total)
            actual = f"{digest.partition(':')[0]}:{hasher.hexdigest()}"
            if actual != digest:
                raise DigestMismatch(self._ref, f"blob {digest}: content has digest {actual}")
            if held:
                yield held
        finally:
            self.close()

    def read_all(self) -> bytes:
        return b"".join(self)

    def close(self) -> None:
        if self._resp is not None:
            self._resp.close()
            self._resp = None

    def __enter__(self) -> RegBlobReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BlobMixin(RegBase):
    def blob_head(self, ref: Reference, digest: str) -> Descriptor:
        return self.blob_head_with_headers(ref, digest)[0]

    def blob_head_with_headers(self, ref: Reference, digest: str) -> tuple[Descriptor, Headers]:
        hasher_for(digest)
        resp = self._send(Request("HEAD", ref.registry, ref.repository, f"blobs/{digest}", mirrors=True, ref=ref))
        with resp:
            self._check(resp, (200,), _blob_ref(ref, digest), "head blob")
        length = resp.headers.get("Content-Length", "")
        descriptor = Descriptor(
            media_type=resp.headers.get("Content-Type", "").split(";")[0].strip() or OCTET_STREAM,
            digest=digest,
            size=int(length) if length.isdigit() else -1,
        )
        return descriptor, resp.header_map()

    def blob_get(self, ref: Reference, digest: str, size: int = -1,
                 urls: Sequence[str] = ()) -> RegBlobReader:
        """Stream the blob; when the registry cannot give it and `urls` (a foreign
        layer's descriptor URLs) are set, each URL is tried in turn as regclient does.
        Whatever answers is checked against the digest and size as it is read."""
        hasher_for(digest)
        where = _blob_ref(ref, digest)
        if self.blob_limit > 0 and size > self.blob_limit:
            raise TooLarge(where, f"get blob: {size} bytes exceeds the {self.blob_limit} byte blob limit")
        try:
            resp = self._send(Request("GET", ref.registry, ref.repository, f"blobs/{digest}",
                                      mirrors=True, ref=where))
            self._check(resp, (200,), where, "get blob")
        except RegistryError as exc:
            if not urls:
                raise
            log.info("%s: not in the registry (%s), trying its external URLs", where, exc)
            resp = self._external_get(ref, where, urls, exc)
        return self._reader(ref, where, digest, size, resp)

    def _external_get(self, ref: Reference, where: Reference, urls: Sequence[str],
                      first: RegistryError) -> Response:
        """The first of `urls` that answers 200. Each URL is another server: it gets the
        host entry of its own address (default TLS, its own slots), not the registry's,
        so neither the registry's credentials nor its client certificate or `tls:
        insecure` reach it (regclient sends it through the registry's entry)."""
        errors = [f"registry: {_reason(first)}"]
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                errors.append(f"{_safe(url)}: not an http(s) URL")
                continue
            try:
                resp = self._send(Request("GET", ref.registry, ref.repository, url=url,
                                          host=parts.netloc, ref=where))
            except RegistryError as exc:
                errors.append(f"{_safe(url)}: {_reason(exc)}")
                continue
            if resp.status == 200:
                return resp
            resp.close()
            errors.append(f"{_safe(url)}: HTTP {resp.status}")
        raise type(first)(where, "get blob: not found in the registry or at its URLs ("
                          + "; ".join(errors) + ")")

    def _reader(self, ref: Reference, where: Reference, digest: str, size: int,
                resp: Response) -> RegBlobReader:
        length = resp.headers.get("Content-Length", "")
        if length.isdigit():
            if size >= 0 and int(length) != size:
                resp.close()
                raise DigestMismatch(where, f"get blob: the registry sends {length} bytes, expected {size}")
            size = int(length)
            if self.blob_limit > 0 and size > self.blob_limit:
                resp.close()
                raise TooLarge(where, f"get blob: {size} bytes exceeds the {self.blob_limit} byte blob limit")
        descriptor = Descriptor(OCTET_STREAM, digest, size)
        return RegBlobReader(self, ref, descriptor, resp)

    def _resume(self, ref: Reference, previous: Response, offset: int) -> Response:
        """The rest of a blob from `offset`: the same URL with a Range header."""
        resp = self._send(Request(
            "GET", ref.registry, ref.repository, url=previous.request_url, host=previous.host.name,
            headers={"Range": f"bytes={offset}-"}, ref=previous.ref,
        ))
        if resp.status == 206 and resp.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
            return resp
        if resp.status == 200:
            # The server ignored Range and sends everything: skip what we already have.
            return _Skipped(resp, offset)
        resp.close()
        raise TransportError(previous.ref, f"resuming the blob download failed (HTTP {resp.status})")

    # --- uploads ---

    def blob_put(self, ref: Reference, descriptor: Descriptor, source: BlobSource) -> Descriptor:
        digest, size = descriptor.digest, descriptor.size
        if isinstance(source, bytes | bytearray):
            data = bytes(source)
            opener: Callable[[], Iterable[bytes]] = lambda: (data,)  # noqa: E731
            size = len(data) if size < 0 else size
        else:
            opener = source
        if digest:
            hasher_for(digest)
        where = _blob_ref(ref, digest) if digest else ref
        if self.blob_limit > 0 and size > self.blob_limit:
            raise TooLarge(where, f"put blob: {size} bytes exceeds the {self.blob_limit} byte blob limit")
        host = self.hosts.get(ref.registry)
        session = _UploadSession(self, ref, where)
        session.start()
        try:
            chunked = size < 0 or not digest or (0 <= host.chunk_above < size)
            if chunked:
                chunk = max(host.chunk_size, min(session.min_chunk, CHUNK_LIMIT))
                stored = session.chunked(opener, digest, size, chunk, descriptor.media_type)
            else:
                stored = session.monolithic(opener, digest, size, descriptor.media_type)
        except BaseException:
            session.cancel()
            raise
        return stored

    def blob_mount(self, ref: Reference, source: Reference, digest: str) -> bool:
        if source.registry != ref.registry:
            return False
        hasher_for(digest)
        where = _blob_ref(ref, digest)
        resp = self._send(Request(
            "POST", ref.registry, ref.repository, "blobs/uploads/",
            query=[("mount", digest)], mount_from=source.repository, length=0, body=b"", ref=where,
        ))
        with resp:
            self._check(resp, (201, 202), where, "mount blob")
        if resp.status == 201:
            return True
        # 202: the registry opened an upload instead of mounting; close that session.
        location = resp.headers.get("Location", "")
        if location:
            _cancel(self, ref, urljoin(resp.url, location))
        return False


class _UploadSession:
    """One upload: POST for a location, then PUT (monolithic) or PATCHes and a PUT,
    following the `Location` the registry gives after each step."""

    def __init__(self, scheme: BlobMixin, ref: Reference, where: object) -> None:
        self.scheme = scheme
        self.ref = ref
        self.where = where
        self.location = ""
        self.min_chunk = 0

    def start(self) -> None:
        resp = self.scheme._send(Request(
            "POST", self.ref.registry, self.ref.repository, "blobs/uploads/",
            body=b"", length=0, ref=self.where,
        ))
        with resp:
            self.scheme._check(resp, (202,), self.where, "start blob upload")
        self._follow(resp)
        if not self.location:
            raise RegistryError(self.where, "start blob upload: the registry sent no Location")
        min_chunk = resp.headers.get(CHUNK_MIN_HEADER, "").strip()
        self.min_chunk = int(min_chunk) if min_chunk.isdigit() else 0

    def _follow(self, resp: Response) -> None:
        location = resp.headers.get("Location", "")
        if location:
            self.location = urljoin(resp.url, location)

    def _send(self, method: str, extra: list[tuple[str, str]], body, length: int | None,
              headers: dict[str, str]) -> Response:
        url = self.location
        if extra:
            url += ("&" if urlsplit(url).query else "?") + urlencode(extra)
        return self.scheme._send(Request(
            method, self.ref.registry, self.ref.repository, url=url,
            headers=headers, body=body, length=length, ref=self.where,
        ))

    def monolithic(self, opener: Callable[[], Iterable[bytes]], digest: str, size: int,
                   media_type: str) -> Descriptor:
        where = self.where

        def body() -> Iterator[bytes]:
            # Open the source now, before the PUT takes its request slot: a source on the
            # same registry needs a slot of its own (a deadlock at reqConcurrent: 1).
            return verified(opener())

        # A source that checks its own digest as it is read (a copy relaying a verified
        # GET) is not hashed again; its size is still counted here.
        hasher = None if isinstance(opener, VerifiedOpener) else hasher_for(digest)

        def verified(source: Iterable[bytes]) -> Iterator[bytes]:
            # Verified as it is sent: a wrong size or digest aborts the PUT before it ends.
            sent = 0
            for chunk in source:
                sent += len(chunk)
                if sent > size:
                    raise DigestMismatch(where, f"put blob: the source has more than the expected {size} bytes")
                if hasher is not None:
                    hasher.update(chunk)
                yield chunk
            if sent != size:
                raise DigestMismatch(where, f"put blob: the source has {sent} bytes, expected {size}")
            if hasher is not None:
                actual = f"{digest.partition(':')[0]}:{hasher.hexdigest()}"
                if actual != digest:
                    raise DigestMismatch(where, f"put blob: the source has digest {actual}")

        resp = self._send("PUT", [("digest", digest)], body, size, {"Content-Type": OCTET_STREAM})
        with resp:
            self.scheme._check(resp, (201, 204), where, "put blob")
        self.location = ""
        _check_stored(resp, digest, where)
        return Descriptor(media_type or OCTET_STREAM, digest, size)

    def chunked(self, opener: Callable[[], Iterable[bytes]], digest: str, size: int,
                chunk_size: int, media_type: str) -> Descriptor:
        # Hashed here unless the digest is known and the source checks it as it is read.
        hasher = None if digest and isinstance(opener, VerifiedOpener) else hasher_for(digest or "sha256:")
        offset = 0
        pending = bytearray()
        for piece in opener():
            pending += piece
            while len(pending) >= chunk_size:
                chunk = bytes(pending[:chunk_size])
                del pending[:chunk_size]
                if hasher is not None:
                    hasher.update(chunk)
                offset = self._patch(chunk, offset)
            if size >= 0 and offset + len(pending) > size:
                raise DigestMismatch(self.where, f"put blob: the source has more than the expected {size} bytes")
        if pending:
            if hasher is not None:
                hasher.update(bytes(pending))
            offset = self._patch(bytes(pending), offset)
        actual = digest if hasher is None else f"{(digest or 'sha256:').partition(':')[0]}:{hasher.hexdigest()}"
        if size >= 0 and offset != size:
            raise DigestMismatch(self.where, f"put blob: the source has {offset} bytes, expected {size}")
        if digest and actual != digest:
            raise DigestMismatch(self.where, f"put blob: the source has digest {actual}")
        resp = self._send("PUT", [("digest", actual)], b"", 0, {"Content-Type": OCTET_STREAM})
        with resp:
            self.scheme._check(resp, (201, 204), self.where, "finish chunked blob upload")
        self.location = ""
        _check_stored(resp, actual, self.where)
        return Descriptor(media_type or OCTET_STREAM, actual, offset)

    def _patch(self, chunk: bytes, offset: int) -> int:
        end = offset + len(chunk) - 1
        resp = self._send("PATCH", [], chunk, len(chunk), {
            "Content-Type": OCTET_STREAM,
            "Content-Range": f"{offset}-{end}",
        })
        with resp:
            self.scheme._check(resp, (202, 204), self.where, "send blob chunk")
        self._follow(resp)
        received = resp.headers.get("Range", "")
        if received:
            last = received.rpartition("-")[2]
            if last.isdigit() and int(last) != end:
                raise TransportError(self.where, f"send blob chunk: the registry has bytes {received}, expected 0-{end}")
        return end + 1

    def cancel(self) -> None:
        if self.location:
            _cancel(self.scheme, self.ref, self.location)
            self.location = ""


def _cancel(scheme: BlobMixin, ref: Reference, location: str) -> None:
    """Best effort DELETE of an upload session (nothing to do if it fails)."""
    try:
        resp = scheme._send(Request("DELETE", ref.registry, ref.repository, url=location, ref=ref))
        resp.close()
    except RegistryError as exc:
        log.debug("%s: cancelling an upload failed: %s", ref, exc)


def _check_stored(resp: Response, digest: str, where: object) -> None:
    stored = resp.headers.get("Docker-Content-Digest", "").strip()
    if stored and stored != digest:
        raise DigestMismatch(where, f"put blob: the registry stored digest {stored}")


def _safe(url: str) -> str:
    """A URL without its query (signed storage URLs carry secrets there), for messages."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _reason(exc: RegistryError) -> str:
    """An error's message without the reference it starts with."""
    return str(exc).removeprefix(f"{exc.ref}: ")


def _blob_ref(ref: Reference, digest: str) -> str:
    return f"{ref.name}@{digest}"


class _Skipped(Response):
    """A full (200) answer to a Range request, with the first `offset` bytes dropped."""

    def __init__(self, resp: Response, offset: int) -> None:
        super().__init__(resp.raw, resp.host, resp.request_url, resp.ref, resp.url)
        self._skip = offset

    def iter_available(self) -> Iterator[bytes]:
        for chunk in super().iter_available():
            if self._skip:
                drop = min(self._skip, len(chunk))
                self._skip -= drop
                chunk = chunk[drop:]
            if chunk:
                yield chunk
