"""The `blob` module and blob objects.

As in regclient, a blob object is a handle on a blob to hand to `blob.put` (which streams
it, however large, into the target); beyond regclient it shows its `digest`, `size` and
`mediaType` (Go names `Digest`, `Size`, `MediaType`), and `tostring(b)` is its digest.
Its content is never loaded into Lua: memory stays flat whatever the blob's size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from regbot.sandbox.image import config_state
from regbot.sandbox.reference import as_reference
from regbot.sandbox.runtime import ArgumentError, Sandbox
from regbot.types.descriptor import Descriptor, digest_of
from regbot.types.ref import Reference

OCTET_STREAM = "application/octet-stream"


@dataclass
class BlobState:
    ref: Reference  # the repository it was read from, pinned to the blob digest
    descriptor: Descriptor
    reader: Any = None  # the stream opened by blob.get, until blob.put consumes it

    def take_reader(self) -> Any:
        reader, self.reader = self.reader, None
        return reader

    def close(self) -> None:
        reader = self.take_reader()
        if reader is not None:
            reader.close()


def _digest_arg(sb: Sandbox, ref: Reference, value: Any, what: str) -> str:
    digest = ref.digest if value is None else sb.text(value, f"{what} digest")
    if not digest:
        raise ArgumentError(f"{what}: a digest is needed (in the reference or as 2nd argument)")
    return digest


def _document(desc: Descriptor) -> dict[str, Any]:
    return {"mediaType": desc.media_type, "digest": desc.digest, "size": desc.size}


def _new_blob(sb: Sandbox, state: BlobState) -> Any:
    return sb.new_object("blob", state, _document(state.descriptor), "BlobDescriptor")


def _source(sb: Sandbox, state: BlobState) -> Any:
    """A re-openable chunk source streaming the blob from where it was read."""
    def open_chunks() -> Iterator[bytes]:
        reader = state.take_reader()
        if reader is None:
            reader = sb.client.blob_get(state.ref, state.descriptor.digest,
                                        state.descriptor.size)
        with reader:
            for chunk in reader:
                sb.check_deadline()
                yield chunk
    return open_chunks


def setup(sb: Sandbox) -> None:
    def get(ref_value: Any = None, digest_value: Any = None, *_: Any) -> Any:
        ref = as_reference(sb, ref_value, "blob.get")
        digest = _digest_arg(sb, ref, digest_value, "blob.get")
        sb.log.debug("Retrieve blob", ref=ref.name, digest=digest)
        reader = sb.client.blob_get(ref, digest)
        state = BlobState(ref.with_tag("").with_digest(digest), reader.descriptor, reader)
        sb.on_close(state.close)
        return _new_blob(sb, state)

    def head(ref_value: Any = None, digest_value: Any = None, *_: Any) -> Any:
        ref = as_reference(sb, ref_value, "blob.head")
        digest = _digest_arg(sb, ref, digest_value, "blob.head")
        sb.log.debug("Retrieve blob", ref=ref.name, digest=digest, head=True)
        desc = sb.client.blob_head(ref, digest)
        return _new_blob(sb, BlobState(ref.with_tag("").with_digest(digest), desc))

    def put(ref_value: Any = None, content: Any = None, *_: Any) -> tuple[str, int]:
        ref = as_reference(sb, ref_value, "blob.put")
        found = sb.lookup(content)
        blob_state: BlobState | None = None
        if isinstance(content, bytes):
            desc = Descriptor(OCTET_STREAM, digest_of(content), len(content))
            source: Any = content
        elif found is not None and found[0] == "blob":
            blob_state = found[1]
            desc = blob_state.descriptor
            source = _source(sb, blob_state)
        elif found is not None and found[0] == "config":
            state = config_state(sb, content, "blob.put")
            desc, source = state.descriptor, state.raw
        else:
            raise ArgumentError("blob.put: content expected (a string, blob object or config "
                                f"object), got {sb.describe(content)}")
        sb.log.info("Put blob", ref=ref.name, digest=desc.digest, size=desc.size,
                    dry_run=sb.dry_run)
        if sb.dry_run:
            return desc.digest, desc.size
        if blob_state is not None and sb.client.blob_mount(ref, blob_state.ref, desc.digest):
            return desc.digest, desc.size
        stored = sb.client.blob_put(ref, desc, source)
        return stored.digest, stored.size

    def tostring(value: Any = None, *_: Any) -> str:
        found = sb.lookup(value)
        if found is None or found[0] != "blob":
            raise ArgumentError("tostring: blob object expected")
        return found[1].descriptor.digest

    sb.register_function("blob", "get", get)
    sb.register_function("blob", "head", head)
    sb.register_function("blob", "put", put)
    sb.register_method("blob", "__tostring", tostring)
