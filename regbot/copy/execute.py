"""Run one copy unit. This is the only code of the copy engine that changes a target."""

from __future__ import annotations

import itertools
import logging
import random
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from regbot import metrics
from regbot.copy.cancel import CancelToken
from regbot.copy.errors import CopyCancelled, CopyError
from regbot.copy.progress import ProgressEvent, ProgressListener
from regbot.copy.readahead import read_ahead
from regbot.copy.units import (
    STATUS_COPIED,
    STATUS_MOUNTED,
    STATUS_PUSHED,
    STATUS_SKIPPED,
    BlobUnit,
    ManifestUnit,
    Unit,
    UnitResult,
)
from regbot.errors import (
    DigestMismatch,
    LimitError,
    LimitTimeout,
    RegbotError,
    RegistryError,
    TransportError,
)
from regbot.scheme.base import BlobReader, VerifiedOpener
from regbot.types.descriptor import Descriptor, digest_of
from regbot.types.manifest import Manifest
from regbot.types.ref import Reference

if TYPE_CHECKING:
    from regbot.client import RegClient

log = logging.getLogger("regbot.copy")

DEFAULT_PROGRESS_INTERVAL = 0.5  # seconds between two bytes_done events of one blob
UNIT_ATTEMPTS = 3  # tries of a unit failing with a transient error
RETRY_BASE = 2.0  # seconds before the second try; doubled each time
READ_AHEAD_MIN = 4 * 1024 * 1024  # blobs of this size or more are read ahead of their PUT


def execute_unit(
    client: RegClient,
    unit: Unit,
    *,
    progress: ProgressListener | None = None,
    cancel: CancelToken | None = None,
    progress_interval: float = DEFAULT_PROGRESS_INTERVAL,
    attempts: int = UNIT_ATTEMPTS,
    retry_base: float = RETRY_BASE,
) -> UnitResult:
    """Run `unit` against `client`; report to `progress`; stop early when `cancel` is set.

    A transient failure (connection trouble or server errors that outlasted the HTTP
    client's own retries, a blip of the limits store) is tried again, up to `attempts`
    tries with jittered doubling pauses from `retry_base` seconds: every executor, local
    or on workers, retries a unit the same way. Failures are raised as the RegbotError
    they are (DigestMismatch, NotFound, ...), with the message prefixed by what the unit
    was doing; anything else becomes a CopyError.
    """
    progress = progress or ProgressListener()
    cancel = cancel or CancelToken()
    for attempt in itertools.count(1):
        try:
            result = _execute_once(client, unit, progress, cancel, progress_interval)
            metrics.unit_done(unit.kind, result.status, result.bytes)
            return result
        except CopyCancelled:
            raise
        except (TransportError, LimitError) as exc:
            if isinstance(exc, LimitTimeout) or attempt >= attempts:
                metrics.unit_failed(unit.kind)
                raise
            metrics.unit_retried(unit.kind)
            delay = retry_base * 2 ** (attempt - 1) * random.uniform(0.8, 1.2)
            log.warning("%s failed, retrying in %.1fs (attempt %d of %d): %s",
                        unit.describe(), delay, attempt, attempts, " ".join(str(exc).split()))
            cancel.sleep(delay, unit.describe())
        except RegbotError:
            metrics.unit_failed(unit.kind)
            raise
    raise AssertionError("unreachable")


def _execute_once(client: RegClient, unit: Unit, progress: ProgressListener,
                  cancel: CancelToken, progress_interval: float) -> UnitResult:
    cancel.check(unit.describe())
    progress.started(ProgressEvent.for_unit(unit))
    try:
        if isinstance(unit, BlobUnit):
            result = _run_blob(client, unit, progress, cancel, progress_interval)
        elif isinstance(unit, ManifestUnit):
            result = _run_manifest(client, unit, progress)
        else:
            raise CopyError(f"unknown copy unit {unit!r}")
    except CopyCancelled as exc:
        progress.failed(ProgressEvent.for_unit(unit, error=str(exc)))
        raise
    except RegbotError as exc:
        if cancel.cancelled:
            # A failure caused by the cancellation itself (e.g. the stream stopped).
            err: RegbotError = CopyCancelled(f"{unit.describe()}: {cancel.reason}")
            progress.failed(ProgressEvent.for_unit(unit, error=str(err)))
            raise err from exc
        _name_unit(exc, unit)
        progress.failed(ProgressEvent.for_unit(unit, error=str(exc)))
        raise
    except Exception as exc:  # a bug or an unexpected library error: still name the unit
        err = CopyError(f"{unit.describe()}: {type(exc).__name__}: {exc}")
        progress.failed(ProgressEvent.for_unit(unit, error=str(err)))
        raise err from exc
    return result


def _name_unit(exc: RegbotError, unit: Unit) -> None:
    """Prefix the error's one-line message with the unit, keeping its type and fields."""
    if getattr(exc, "copy_unit", None):
        return
    exc.copy_unit = unit.id  # type: ignore[attr-defined]
    exc.args = (f"{unit.describe()}: {exc}",)


# ---------------------------------------------------------------- blobs


def _run_blob(
    client: RegClient,
    unit: BlobUnit,
    progress: ProgressListener,
    cancel: CancelToken,
    interval: float,
) -> UnitResult:
    src = Reference.parse(unit.src)
    tgt = Reference.parse(unit.tgt)
    desc = Descriptor.from_dict(unit.descriptor)
    digest = desc.digest

    def done(status: str, sent: int = 0) -> UnitResult:
        event = ProgressEvent.for_unit(unit, bytes_done=sent)
        if status == STATUS_SKIPPED:
            progress.skipped(event)
        elif status == STATUS_MOUNTED:
            progress.mounted(event)
        else:
            progress.finished(event)
        return UnitResult(unit.id, unit.kind, status, digest, sent)

    # One look at and transfer of a digest into a repository at a time, across threads,
    # scripts and nodes. A claim left done (a transfer of it, or a look that found it,
    # ended just now: a layer shared by the images of a mirror) saves the HEAD, unless
    # the copy is to repair the target (forceRecursive).
    with _claim(client, tgt, digest, cancel) as claim:
        if (claim.done and not unit.recheck) or blob_present(client, tgt, digest):
            return done(STATUS_SKIPPED)
        cancel.check(unit.describe())
        if src.scheme == tgt.scheme and src.host_key == tgt.host_key:
            try:
                if client.blob_mount(tgt, src, digest):
                    return done(STATUS_MOUNTED)
            except RegistryError as exc:
                log.debug("mount of %s into %s refused, copying instead: %s", digest, tgt, exc)
        size = desc.size
        if size < 0:  # Docker v1 manifests do not record layer sizes
            size = client.blob_head(src, digest).size
        put_desc = Descriptor(media_type=desc.media_type, digest=digest, size=size)
        source = _Source(client, unit, src, put_desc, desc.urls, progress, cancel, interval)
        try:
            stored = client.blob_put(tgt, put_desc, source)
        finally:
            source.close()
    sent = stored.size if stored is not None and stored.size >= 0 else size
    return done(STATUS_COPIED, sent)


def _claim(client: RegClient, tgt: Reference, digest: str, cancel: CancelToken):
    """The cluster-wide claim on (target repository, digest); waiting for it ends with
    the cancel token's deadline, if it has one."""
    left = cancel.remaining()
    if left is None:
        return client.limits.blob_claim(tgt.name, digest)
    return client.limits.blob_claim(tgt.name, digest, timeout=max(left, 0.001))


def blob_present(client: RegClient, tgt: Reference, digest: str) -> bool:
    """Whether the target repository has the blob (a HEAD; doubt counts as absent)."""
    try:
        client.blob_head(tgt, digest)
    except RegistryError as exc:
        # Absent, or not answerable by HEAD: the transfer that follows reports real trouble.
        log.debug("blob %s not confirmed in %s: %s", digest, tgt, exc)
        return False
    return True


class _Source(VerifiedOpener):
    """The upload's source: a callable opening a fresh, verified stream of the source blob
    at each call, so an upload retried by the scheme reads the blob again from the start.

    The first stream is opened before the upload starts: the GET then takes its request
    slot and gives it back before the PUT holds one on the target, so a copy within one
    registry never waits for a second slot while holding the first.
    """

    def __init__(self, client: RegClient, unit: BlobUnit, src: Reference, desc: Descriptor,
                 urls: Sequence[str], progress: ProgressListener, cancel: CancelToken,
                 interval: float) -> None:
        self.client, self.unit, self.src, self.desc = client, unit, src, desc
        self.urls = urls  # a foreign layer's: where to read it when the source lacks it
        self.progress, self.cancel, self.interval = progress, cancel, interval
        self._first: BlobReader | None = client.blob_get(src, desc.digest, desc.size, urls)

    def __call__(self) -> Iterator[bytes]:
        self.cancel.check(self.unit.describe())
        reader, self._first = self._first, None
        if reader is None:
            reader = self.client.blob_get(self.src, self.desc.digest, self.desc.size,
                                          self.urls)
        if self.desc.size >= READ_AHEAD_MIN:
            return read_ahead(self._relay(reader))  # the GET and the PUT overlap
        return self._relay(reader)

    def _relay(self, reader: BlobReader) -> Iterator[bytes]:
        what = self.unit.describe()
        sent = 0
        last = time.monotonic()
        try:
            for chunk in reader:
                self.cancel.check(what)
                sent += len(chunk)
                now = time.monotonic()
                if now - last >= self.interval:
                    last = now
                    self.progress.bytes_done(ProgressEvent.for_unit(self.unit, bytes_done=sent))
                yield chunk
        finally:
            reader.close()

    def close(self) -> None:
        """Close the first stream if the upload never read it."""
        if self._first is not None:
            self._first.close()
            self._first = None


# ---------------------------------------------------------------- manifests


def _run_manifest(client: RegClient, unit: ManifestUnit, progress: ProgressListener) -> UnitResult:
    raw = unit.raw
    if raw is None:
        # Too large to travel in the unit: read again by digest (the read is verified).
        raw = client.manifest_get(Reference.parse(unit.src)).raw
    media_type = unit.media_type or Manifest.from_bytes(raw).media_type
    actual = _manifest_digest(raw, media_type, unit.digest)
    if actual != unit.digest:
        raise DigestMismatch(unit.src, f"manifest content is {actual}, expected {unit.digest}")
    manifest = Manifest(media_type=media_type, digest=unit.digest, size=len(raw), raw=raw)
    try:
        client.manifest_put(Reference.parse(unit.tgt), manifest)
    except RegistryError as exc:
        if unit.omitted:
            # The usual cause: this registry wants every entry of an index present.
            exc.args = (f"{exc}; the index lists {unit.omitted} entries left out by the "
                        "platforms option, and this registry may require them",)
        raise
    progress.finished(ProgressEvent.for_unit(unit))
    return UnitResult(unit.id, unit.kind, STATUS_PUSHED, unit.digest, 0)


def _manifest_digest(raw: bytes, media_type: str, expected: str) -> str:
    algorithm = expected.partition(":")[0] or "sha256"
    if algorithm != "sha256":
        return digest_of(raw, algorithm)
    # from_bytes knows the Docker v1 signed payload rule.
    return Manifest.from_bytes(raw, media_type).digest
