"""Image tar files, as regclient's `regctl image export` / `image import` handle them.

export_tar writes one tar that is at once an OCI image layout and a `docker save` archive:
    oci-layout                 {"imageLayoutVersion": "1.0.0"}
    index.json                 one entry: the exported manifest, annotated with
                               org.opencontainers.image.ref.name=<tag> and
                               io.containerd.image.name=<repo:tag>
    manifest.json              docker's list: [{"Config", "RepoTags", "Layers", "LayerSources"}]
    blobs/<alg>/<hex>          every manifest, config and layer
regclient writes manifest.json only for a single image. For an index we also write it,
with the one entry for the local platform (what `docker save` of a multi-platform image
gives and what the classic `docker load` can use); when the index has no image for the
local platform there is no manifest.json (docker 25+ loads the layout from index.json).

import_tar reads either kind: an OCI layout tar (index.json; preferred when present, as
regclient does) or a docker save tar (manifest.json with `<id>/layer.tar` or blobs/ paths,
from which a Docker schema 2 manifest is built; layers are pushed as they are, an
uncompressed layer with media type ...rootfs.diff.tar). Blobs go first, then child
manifests by digest, then the top manifest to ref's tag, all through `client`, so the
target may be a registry or an OCI layout.

Both stream: blobs pass chunk by chunk between the tar and the client and are checked
against their digests; memory stays flat whatever the layer sizes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import posixpath
import re
import tarfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

from regbot.errors import DigestMismatch, NotFound, RegbotError, RegistryError, TooLarge
from regbot.scheme.base import BlobReader
from regbot.scheme.ocidir.layout import atomic_file
from regbot.types.descriptor import Descriptor, hasher_for
from regbot.types.manifest import (
    IMAGE_TYPES,
    MAX_MANIFEST_SIZE,
    MT_DOCKER_CONFIG,
    MT_DOCKER_MANIFEST,
    MT_OCI_INDEX,
    Manifest,
)
from regbot.types.ref import Reference

if TYPE_CHECKING:
    from regbot.client import RegClient

log = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024
MAX_JSON_SIZE = 16 * 1024 * 1024  # manifest.json / index.json / oci-layout of a tar
OCI_LAYOUT = "oci-layout"
OCI_INDEX = "index.json"
DOCKER_MANIFEST = "manifest.json"
LAYOUT_VERSION = "1.0.0"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"

MT_DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
MT_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MT_DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def blob_name(digest: str) -> str:
    algorithm, _, hex_part = digest.partition(":")
    return f"blobs/{algorithm}/{hex_part}"


def docker_name(ref: Reference) -> str:
    """`repo:tag` for RepoTags: a registry ref as is (without digest); an ocidir ref as
    regclient's ToReg makes it, `localhost/<path, lowercased, [^/a-z0-9] runs as ->`."""
    tag = ref.tag or "latest"
    if ref.is_ocidir:
        repo = posixpath.normpath("/" + ref.path).lstrip("/").lower()
        repo = re.sub(r"[^/a-z0-9]+", "-", repo)
        return f"localhost/{repo}:{tag}"
    return f"{ref.registry}/{ref.repository}:{tag}"


# --------------------------------------------------------------------------- export


class BlobReaderFile:
    """A read()-able file over a BlobReader of known size, for tarfile.addfile.

    It never returns short except at the end, so tarfile's exact-size copy works; a blob
    that ends early or runs long is a DigestMismatch, and finish() drains the reader so
    its digest check (made as the last chunk is read) always runs.
    """

    def __init__(self, ref: Reference, reader: BlobReader, size: int) -> None:
        self.ref = ref
        self.digest = reader.descriptor.digest
        self.size = size
        self._chunks = iter(reader)
        self._chunk = b""
        self._pos = 0
        self._count = 0
        self._done = False

    def _next_chunk(self) -> bool:
        while not self._done:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self._done = True
                break
            if not chunk:
                continue
            self._count += len(chunk)
            if self._count > self.size:
                raise DigestMismatch(self.ref, f"blob {self.digest} is longer than {self.size} bytes")
            self._chunk, self._pos = bytes(chunk), 0
            return True
        if self._count < self.size:
            raise DigestMismatch(
                self.ref, f"blob {self.digest} ended after {self._count} of {self.size} bytes"
            )
        return False

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self.size
        parts: list[bytes] = []
        while n > 0:
            if self._pos >= len(self._chunk) and not self._next_chunk():
                break
            piece = self._chunk[self._pos : self._pos + n]
            self._pos += len(piece)
            n -= len(piece)
            parts.append(piece)
        return b"".join(parts)

    def finish(self) -> None:
        """Read to the end of the blob (verifying it); extra bytes are a mismatch."""
        if self._next_chunk():
            raise DigestMismatch(self.ref, f"blob {self.digest} is longer than {self.size} bytes")


class _TarWriter:
    """Adds files (with their parent directories) to a tar, each name once."""

    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar
        self.names: set[str] = set()

    def _info(self, name: str, size: int, directory: bool = False) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.size = 0 if directory else size
        info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
        info.mode = 0o755 if directory else 0o644
        info.mtime = 0  # reproducible: the same image gives the same tar
        return info

    def _dirs(self, name: str) -> None:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            directory = "/".join(parts[:i]) + "/"
            if directory not in self.names:
                self.names.add(directory)
                self.tar.addfile(self._info(directory, 0, directory=True))

    def add_bytes(self, name: str, data: bytes) -> None:
        if name in self.names:
            return
        self._dirs(name)
        self.names.add(name)
        with contextlib.closing(_BytesFile(data)) as fh:
            self.tar.addfile(self._info(name, len(data)), fh)

    def add_stream(self, name: str, size: int, fh: BlobReaderFile) -> None:
        self._dirs(name)
        self.names.add(name)
        self.tar.addfile(self._info(name, size), fh)
        fh.finish()


class _BytesFile:
    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        end = len(self._data) if n is None or n < 0 else self._pos + n
        out = bytes(self._data[self._pos : end])
        self._pos += len(out)
        return out

    def close(self) -> None:
        self._data.release()


class _Exporter:
    def __init__(self, client: RegClient, ref: Reference, writer: _TarWriter) -> None:
        self.client = client
        self.ref = ref
        self.writer = writer
        self.manifests: dict[str, Manifest] = {}

    def child(self, descriptor: Descriptor) -> Manifest:
        """A child manifest by digest, checked against its descriptor (and cached)."""
        cached = self.manifests.get(descriptor.digest)
        if cached is not None:
            return cached
        child_ref = self.ref.repo_only().with_digest(descriptor.digest)
        manifest = self.client.manifest_get(child_ref)
        if manifest.digest != descriptor.digest:
            raise DigestMismatch(child_ref, f"manifest digest is {manifest.digest}")
        if descriptor.size >= 0 and manifest.size != descriptor.size:
            raise DigestMismatch(child_ref, f"manifest has {manifest.size} bytes, "
                                            f"descriptor says {descriptor.size}")
        self.manifests[descriptor.digest] = manifest
        return manifest

    def docker_entry(self, root: Manifest) -> dict[str, Any] | None:
        image = root
        if root.is_index:
            entry = root.platform_entry()
            if entry is None or entry.media_type not in IMAGE_TYPES:
                return None
            image = self.child(entry)
        config = image.config
        if config is None:
            return None
        layers = image.layers
        out: dict[str, Any] = {
            "Config": blob_name(config.digest),
            "RepoTags": [docker_name(self.ref)],
            "Layers": [blob_name(d.digest) for d in layers],
        }
        if layers:
            out["LayerSources"] = {d.digest: d.to_dict() for d in layers}
        return out

    def manifest(self, manifest: Manifest) -> None:
        name = blob_name(manifest.digest)
        if name in self.writer.names:
            return
        self.writer.add_bytes(name, manifest.raw)
        for descriptor in manifest.manifests:
            self.manifest(self.child(descriptor))
        if manifest.config is not None:
            self.blob(manifest.config)
        for layer in manifest.layers:
            self.blob(layer)

    def blob(self, descriptor: Descriptor) -> None:
        name = blob_name(descriptor.digest)
        if name in self.writer.names:
            return
        size = descriptor.size
        if descriptor.urls or size < 0:
            # A foreign layer is often absent from the registry; v1 layers have no size.
            try:
                size = self.client.blob_head(self.ref, descriptor.digest).size
            except NotFound:
                if not descriptor.urls:
                    raise
                log.info("%s: foreign layer %s not exported (not in the source)",
                         self.ref, descriptor.digest)
                return
        reader = self.client.blob_get(self.ref, descriptor.digest, size)
        try:
            self.writer.add_stream(name, size, BlobReaderFile(self.ref, reader, size))
        finally:
            reader.close()


def export_tar(client: RegClient, ref: Reference, path: str, *, compress: bool = False) -> None:
    """Write the image (or whole index) named by ref to the tar file at path (gzipped
    with `compress`).

    The tar is written to a temp file beside path and renamed into place when complete,
    so a failure (e.g. a blob failing its digest check) leaves no partial tar.
    """
    root = _export_root(client, ref)
    target = os.path.abspath(path)
    try:
        with atomic_file(os.path.dirname(target), target) as out:
            _write_tar(client, ref, root, out.fh, "w:gz" if compress else "w")
    except FileNotFoundError as exc:
        raise NotFound(ref, f"cannot write {path}: {exc.strerror}") from None
    except PermissionError as exc:
        raise RegistryError(ref, f"cannot write {path}: {exc.strerror}") from None
    log.debug("%s: exported to %s", ref, path)


def export_tar_stream(client: RegClient, ref: Reference, stream: BinaryIO, *,
                      compress: bool = False) -> None:
    """export_tar to a stream that cannot seek (standard output); a failure part way
    leaves the stream cut short."""
    root = _export_root(client, ref)
    _write_tar(client, ref, root, stream, "w|gz" if compress else "w|")
    log.debug("%s: exported to a stream", ref)


def _export_root(client: RegClient, ref: Reference) -> Manifest:
    root = client.manifest_get(ref)
    if not root.raw:
        raise RegistryError(ref, "manifest has no body")
    return root


def _write_tar(client: RegClient, ref: Reference, root: Manifest, fh: BinaryIO, mode: str) -> None:
    index_entry = root.descriptor().to_dict()
    index_entry["annotations"] = {
        ANNOTATION_IMAGE_NAME: docker_name(ref),
        ANNOTATION_REF_NAME: ref.tag or "latest",
    }
    index = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": [index_entry]}
    with tarfile.open(fileobj=fh, mode=mode, format=tarfile.PAX_FORMAT) as tar:
        tar.copybufsize = CHUNK_SIZE
        writer = _TarWriter(tar)
        exporter = _Exporter(client, ref, writer)
        writer.add_bytes(OCI_LAYOUT, json.dumps({"imageLayoutVersion": LAYOUT_VERSION}).encode())
        writer.add_bytes(OCI_INDEX, json.dumps(index).encode())
        entry = exporter.docker_entry(root)
        if entry is not None:
            writer.add_bytes(DOCKER_MANIFEST, json.dumps([entry]).encode())
        exporter.manifest(root)


# --------------------------------------------------------------------------- import


class _TarMembers:
    """The members of an image tar by normalised name, read with random access."""

    def __init__(self, tar: tarfile.TarFile, ref: Reference, path: str) -> None:
        self.tar = tar
        self.ref = ref
        self.path = path
        self.members: dict[str, tarfile.TarInfo] = {}
        for info in tar:
            self.members[self.normalize(info.name)] = info  # later entries win, as on extract

    @staticmethod
    def normalize(name: str) -> str:
        return posixpath.normpath("/" + name.replace("\\", "/")).lstrip("/")

    def has(self, name: str) -> bool:
        return self.normalize(name) in self.members

    def resolve(self, name: str) -> tarfile.TarInfo:
        """The regular file `name` is, following hard and symbolic links inside the tar."""
        current = self.normalize(name)
        for _ in range(32):
            info = self.members.get(current)
            if info is None:
                raise NotFound(self.ref, f"{self.path}: {name} missing from the tar")
            if info.isreg():
                return info
            if info.issym():
                base = posixpath.dirname(current)
                link = info.linkname
                current = self.normalize(link if link.startswith("/") else posixpath.join(base, link))
            elif info.islnk():
                current = self.normalize(info.linkname)
            else:
                raise RegistryError(self.ref, f"{self.path}: {name} is not a file")
        raise RegistryError(self.ref, f"{self.path}: link loop at {name}")

    def open(self, name: str) -> BinaryIO:
        fh = self.tar.extractfile(self.resolve(name))
        if fh is None:
            raise RegistryError(self.ref, f"{self.path}: {name} is not a file")
        return fh

    def size(self, name: str) -> int:
        return self.resolve(name).size

    def read(self, name: str, limit: int) -> bytes:
        info = self.resolve(name)
        if info.size > limit:
            raise TooLarge(self.ref, f"{self.path}: {name} is larger than {limit} bytes")
        with self.open(name) as fh:
            return fh.read()  # info.size is within limit

    def read_json(self, name: str) -> Any:
        try:
            return json.loads(self.read(name, MAX_JSON_SIZE))
        except ValueError as exc:
            raise RegistryError(self.ref, f"{self.path}: {name} cannot be parsed: {exc}") from None

    def chunks(self, name: str) -> Iterator[bytes]:
        with self.open(name) as fh:
            while chunk := fh.read(CHUNK_SIZE):
                yield chunk


class _Importer:
    def __init__(self, client: RegClient, ref: Reference, members: _TarMembers) -> None:
        self.client = client
        self.ref = ref
        self.members = members
        self.where = members.path

    # --- shared ---

    def has_blob(self, digest: str) -> bool:
        try:
            self.client.blob_head(self.ref, digest)
        except NotFound:
            return False
        return True

    def push_blob(self, descriptor: Descriptor, name: str) -> None:
        """Upload one tar member (streamed; the client checks digest and size)."""
        if self.has_blob(descriptor.digest):
            log.debug("%s: blob %s already present", self.ref, descriptor.digest)
            return
        self.client.blob_put(self.ref, descriptor, lambda: self.members.chunks(name))

    def has_manifest(self, ref: Reference) -> bool:
        try:
            self.client.manifest_head(ref)
        except NotFound:
            return False
        return True

    # --- OCI layout tars ---

    def oci_root(self, index: Any) -> Descriptor:
        """The entry to import, chosen as regclient does: the only one; else ref's digest;
        else the entry whose ref.name is ref's tag (or a full name ending in it)."""
        if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
            raise RegistryError(self.ref, f"{self.where}: {OCI_INDEX} is not an OCI index")
        entries = [Descriptor.from_dict(e) for e in index["manifests"] if isinstance(e, dict)]
        if len(entries) == 1:
            return entries[0]
        if self.ref.digest:
            for entry in entries:
                if entry.digest == self.ref.digest:
                    return entry
            return Descriptor(media_type="", digest=self.ref.digest, size=-1)
        tag = self.ref.tag or "latest"
        for entry in entries:
            if entry.annotations.get(ANNOTATION_REF_NAME) == tag:
                return entry
        for entry in entries:
            if entry.annotations.get(ANNOTATION_REF_NAME, "").endswith(":" + tag):
                return entry
        raise NotFound(self.ref, f"{self.where}: tag {tag} not found in {OCI_INDEX}")

    def read_manifest(self, descriptor: Descriptor) -> Manifest:
        name = blob_name(descriptor.digest)
        raw = self.members.read(name, MAX_MANIFEST_SIZE)
        try:
            parsed = Manifest.from_bytes(raw, descriptor.media_type)
        except RegbotError as exc:
            raise RegistryError(self.ref, f"{self.where}: {name}: {exc}") from None
        hasher = hasher_for(descriptor.digest)
        hasher.update(raw)
        algorithm = descriptor.digest.partition(":")[0]
        computed = parsed.digest if algorithm == "sha256" else f"{algorithm}:{hasher.hexdigest()}"
        if computed != descriptor.digest:
            raise DigestMismatch(self.ref, f"{self.where}: {name} has digest {computed}")
        if descriptor.size >= 0 and descriptor.size != len(raw):
            raise DigestMismatch(self.ref, f"{self.where}: {name} has {len(raw)} bytes, "
                                           f"descriptor says {descriptor.size}")
        return Manifest(media_type=parsed.media_type, digest=descriptor.digest, size=len(raw),
                        raw=raw)

    def import_oci(self) -> None:
        root_desc = self.oci_root(self.members.read_json(OCI_INDEX))
        manifests: list[Manifest] = []  # children before parents
        blobs: dict[str, Descriptor] = {}
        seen: set[str] = set()

        def walk(descriptor: Descriptor) -> None:
            if descriptor.digest in seen:
                return
            seen.add(descriptor.digest)
            manifest = self.read_manifest(descriptor)
            for child in manifest.manifests:
                walk(child)
            for blob in ([manifest.config] if manifest.config else []) + manifest.layers:
                blobs.setdefault(blob.digest, blob)
            manifests.append(manifest)

        walk(root_desc)
        present: list[Descriptor] = []
        for descriptor in blobs.values():  # check the tar is complete before any upload
            name = blob_name(descriptor.digest)
            if self.members.has(name):
                present.append(descriptor)
            elif not descriptor.urls:  # a foreign layer is fetched from its URLs instead
                raise NotFound(self.ref, f"{self.where}: {name} missing from the tar")
        for descriptor in present:
            name = blob_name(descriptor.digest)
            if descriptor.size < 0:
                descriptor = Descriptor(descriptor.media_type, descriptor.digest,
                                        self.members.size(name))
            self.push_blob(descriptor, name)
        for manifest in manifests[:-1]:
            child_ref = self.ref.repo_only().with_digest(manifest.digest)
            if not self.has_manifest(child_ref):
                self.client.manifest_put(child_ref, manifest)
        self.client.manifest_put(self.ref, manifests[-1])

    # --- docker save tars ---

    def docker_entry(self, entries: Any) -> dict[str, Any]:
        """The image to import: the only one, else the first whose RepoTags has ref's
        tag, else the first (regclient takes the first)."""
        if not isinstance(entries, list) or not entries or not all(
            isinstance(e, dict) for e in entries
        ):
            raise RegistryError(self.ref, f"{self.where}: {DOCKER_MANIFEST} lists no images")
        tag = self.ref.tag or "latest"
        for entry in entries:
            for name in entry.get("RepoTags") or []:
                if isinstance(name, str) and name.rpartition(":")[2] == tag:
                    return entry
        return entries[0]

    def scan(self, name: str) -> tuple[str, int, bytes]:
        """Digest, size and first bytes of a member, in one streamed pass."""
        hasher = hasher_for("sha256:")
        size = 0
        head = b""
        for chunk in self.members.chunks(name):
            if len(head) < 4:
                head += chunk[: 4 - len(head)]
            hasher.update(chunk)
            size += len(chunk)
        return f"sha256:{hasher.hexdigest()}", size, head

    def docker_blob(self, name: str, sources: dict[str, Any], config: bool) -> Descriptor:
        digest, size, head = self.scan(name)
        source = sources.get(digest)
        if isinstance(source, dict) and source.get("size") == size:
            descriptor = Descriptor.from_dict(source)
        elif config:
            descriptor = Descriptor(MT_DOCKER_CONFIG, digest, size)
        elif head.startswith(_GZIP_MAGIC):
            descriptor = Descriptor(MT_DOCKER_LAYER_GZIP, digest, size)
        elif head.startswith(_ZSTD_MAGIC):
            descriptor = Descriptor(MT_DOCKER_LAYER_ZSTD, digest, size)
        else:
            descriptor = Descriptor(MT_DOCKER_LAYER_TAR, digest, size)
        self.push_blob(descriptor, name)
        return descriptor

    def import_docker(self) -> None:
        entry = self.docker_entry(self.members.read_json(DOCKER_MANIFEST))
        config_name = entry.get("Config")
        layer_names = entry.get("Layers") or []
        if not isinstance(config_name, str) or not isinstance(layer_names, list):
            raise RegistryError(self.ref, f"{self.where}: {DOCKER_MANIFEST} entry has no Config")
        sources = entry.get("LayerSources") or {}
        sources = sources if isinstance(sources, dict) else {}
        config = self.docker_blob(config_name, sources, config=True)
        layers = [self.docker_blob(str(name), sources, config=False) for name in layer_names]
        document = {
            "schemaVersion": 2,
            "mediaType": MT_DOCKER_MANIFEST,
            "config": config.to_dict(),
            "layers": [layer.to_dict() for layer in layers],
        }
        self.client.manifest_put(self.ref, Manifest.from_data(document))


def _layout_version_ok(members: _TarMembers) -> bool:
    try:
        data = members.read_json(OCI_LAYOUT)
    except RegistryError:
        return False
    if isinstance(data, dict) and data.get("imageLayoutVersion") == LAYOUT_VERSION:
        return True
    log.warning("%s: unsupported oci-layout in %s, ignored", members.ref, members.path)
    return False


def import_tar(client: RegClient, ref: Reference, path: str) -> None:
    """Push the image in the tar at path (OCI layout or docker save) to ref."""
    try:
        tar = tarfile.open(path, "r:*")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        raise NotFound(ref, f"tar file {path} not found") from None
    except IsADirectoryError:
        raise RegistryError(ref, f"{path} is a directory, not a tar file") from None
    except PermissionError:
        raise RegistryError(ref, f"cannot read {path}") from None
    except tarfile.TarError as exc:
        raise RegistryError(ref, f"{path} is not a tar file: {exc}") from None
    with tar:
        try:
            members = _TarMembers(tar, ref, path)
            importer = _Importer(client, ref, members)
            if members.has(OCI_LAYOUT) and members.has(OCI_INDEX) and _layout_version_ok(members):
                importer.import_oci()
            elif members.has(DOCKER_MANIFEST):
                importer.import_docker()
            else:
                raise RegistryError(
                    ref, f"{path} is neither an OCI layout nor a docker save tar "
                    f"(no {OCI_INDEX} or {DOCKER_MANIFEST})"
                )
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise RegistryError(ref, f"{path}: cannot read the tar: {exc}") from None
    log.debug("%s: imported from %s", ref, path)
