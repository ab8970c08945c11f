"""Files of one OCI image layout directory: paths, atomic writes and the writer lock.

Layout on disk (OCI image-spec "image-layout"):
    <root>/oci-layout        {"imageLayoutVersion": "1.0.0"}
    <root>/index.json        an OCI index; tags are entries annotated with
                             org.opencontainers.image.ref.name
    <root>/blobs/<alg>/<hex> content addressed files (manifests, configs, layers)
    <root>/.regbot.lock      lock file for index.json writers (ours; other tools ignore it)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

from regbot.errors import Denied, NotFound, RegistryError, Unsupported
from regbot.types.manifest import MT_OCI_INDEX
from regbot.types.ref import Reference

LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
BLOBS_DIR = "blobs"
LOCK_FILE = ".regbot.lock"
LAYOUT_VERSION = "1.0.0"
# Temporary files start with this prefix so they can never be taken for a blob name.
TMP_PREFIX = ".tmp-"
# Largest index.json we are willing to parse (it holds one small entry per tag).
MAX_INDEX_SIZE = 64 * 1024 * 1024

HEX_LENGTH = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")


def check_digest(ref: Reference, digest: str) -> tuple[str, str]:
    """Split a digest into (algorithm, hex), refusing anything that is not one we can
    verify (this also keeps a crafted digest from naming a path outside blobs/)."""
    if not _DIGEST_RE.match(digest or ""):
        algorithm = (digest or "").partition(":")[0]
        if algorithm and algorithm not in HEX_LENGTH and ":" in digest:
            raise Unsupported(ref, f"unsupported digest algorithm in {digest!r}")
        raise RegistryError(ref, f"invalid digest {digest!r}")
    algorithm, _, hex_part = digest.partition(":")
    return algorithm, hex_part


def is_blob_name(algorithm: str, name: str) -> bool:
    length = HEX_LENGTH.get(algorithm)
    return bool(length) and len(name) == length and all(c in "0123456789abcdef" for c in name)


# --- the writer lock: one per layout directory, across threads and processes ---


class _PathLock:
    """A re-entrant lock for one directory: a thread lock, then flock on a lock file.

    flock excludes other processes (and other open files in this one); the RLock keeps
    threads of this process queueing in Python rather than in the kernel and lets one
    operation (manifest put + referrers update) nest without deadlocking itself.
    """

    def __init__(self) -> None:
        self.rlock = threading.RLock()
        self.depth = 0
        self.fd: int | None = None


_LOCKS: dict[str, _PathLock] = {}
_LOCKS_GUARD = threading.Lock()


def _forget_locks_after_fork() -> None:
    """A forked child (Celery prefork) must not inherit locks held by parent threads.
    Its copies of lock fds are closed without LOCK_UN: the parent still holds its lock."""
    global _LOCKS_GUARD
    for path_lock in list(_LOCKS.values()):
        if path_lock.fd is not None:
            with contextlib.suppress(OSError):
                os.close(path_lock.fd)
    _LOCKS.clear()
    _LOCKS_GUARD = threading.Lock()


os.register_at_fork(after_in_child=_forget_locks_after_fork)


@contextlib.contextmanager
def layout_lock(root: str) -> Iterator[None]:
    with _LOCKS_GUARD:
        path_lock = _LOCKS.setdefault(root, _PathLock())
    with path_lock.rlock:
        if path_lock.depth == 0:
            os.makedirs(root, exist_ok=True)
            fd = os.open(os.path.join(root, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
            path_lock.fd = fd
        path_lock.depth += 1
        try:
            yield
        finally:
            path_lock.depth -= 1
            if path_lock.depth == 0 and path_lock.fd is not None:
                fd, path_lock.fd = path_lock.fd, None
                try:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                finally:
                    os.close(fd)


# --- atomic file writes ---


def fsync_dir(path: str) -> None:
    """Persist a rename: fsync the directory (best effort where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_bounded(fh: BinaryIO, limit: int) -> bytes:
    """Read a whole small file, or limit+1 bytes when it is larger (so the caller can
    tell). Never asks read() for the limit itself: that preallocates the full buffer."""
    size = os.fstat(fh.fileno()).st_size
    if size > limit:
        return fh.read(limit + 1)
    data = fh.read()
    return data if len(data) <= limit else data[: limit + 1]


def _umask() -> int:
    """The process umask, read without changing it where /proc allows."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()


class TempFile:
    """An open temp file and the name it will take; `target` may be set while writing
    (a blob's name is only known once its content has been hashed)."""

    def __init__(self, fh: BinaryIO, target: str) -> None:
        self.fh = fh
        self.target = target

    def write(self, data: bytes) -> None:
        self.fh.write(data)


@contextlib.contextmanager
def atomic_file(directory: str, target: str = "") -> Iterator[TempFile]:
    """Write through a temp file in `directory`: fsync, then os.replace onto the target.

    On any error (including a caller's DigestMismatch) the temp file is removed and the
    target is left as it was, so readers never see a partial file.
    """
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=TMP_PREFIX)
    try:
        os.fchmod(fd, FILE_MODE)  # mkstemp makes 0600; layouts are shared like any file
        with os.fdopen(fd, "wb") as fh:
            out = TempFile(fh, target)
            yield out
            fh.flush()
            os.fsync(fh.fileno())
        if not out.target:
            raise RuntimeError("atomic_file: no target name was set")
        os.replace(tmp, out.target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def write_atomic(target: str, chunks: bytes | Iterable[bytes]) -> None:
    with atomic_file(os.path.dirname(target), target) as out:
        if isinstance(chunks, bytes | bytearray | memoryview):
            out.write(bytes(chunks))
        else:
            for chunk in chunks:
                out.write(chunk)


# --- the layout ---


class Layout:
    """One layout directory, named by an `ocidir://` reference (used in error messages)."""

    def __init__(self, ref: Reference) -> None:
        if not ref.is_ocidir:
            raise RegistryError(ref, "not an ocidir reference")
        self.ref = ref
        self.root = os.path.abspath(ref.path)

    # paths
    @property
    def layout_path(self) -> str:
        return os.path.join(self.root, LAYOUT_FILE)

    @property
    def index_path(self) -> str:
        return os.path.join(self.root, INDEX_FILE)

    @property
    def blobs_dir(self) -> str:
        return os.path.join(self.root, BLOBS_DIR)

    def blob_path(self, digest: str) -> str:
        algorithm, hex_part = check_digest(self.ref, digest)
        return os.path.join(self.root, BLOBS_DIR, algorithm, hex_part)

    def lock(self) -> contextlib.AbstractContextManager[None]:
        return layout_lock(self.root)

    # reading
    def exists(self) -> bool:
        return os.path.isfile(self.layout_path)

    def check(self) -> None:
        """For reads: the layout must exist and be a version we understand."""
        if not os.path.exists(self.root):
            raise NotFound(self.ref, f"OCI layout {self.ref.path} does not exist")
        if not os.path.isdir(self.root):
            raise RegistryError(self.ref, f"{self.ref.path} is not a directory")
        if not os.path.isfile(self.layout_path):
            raise NotFound(self.ref, f"{self.ref.path} is not an OCI layout (no {LAYOUT_FILE})")
        self._check_version()

    def _check_version(self) -> None:
        try:
            with open(self.layout_path, "rb") as fh:
                data = json.loads(read_bounded(fh, 64 * 1024))
        except PermissionError:
            raise Denied(self.ref, f"cannot read {LAYOUT_FILE}") from None
        except (OSError, ValueError) as exc:
            raise RegistryError(self.ref, f"{LAYOUT_FILE} cannot be parsed: {exc}") from None
        version = data.get("imageLayoutVersion") if isinstance(data, dict) else None
        if version != LAYOUT_VERSION:
            raise Unsupported(
                self.ref, f"unsupported OCI layout version {version!r} (want {LAYOUT_VERSION})"
            )

    def read_index(self) -> dict[str, Any]:
        try:
            with open(self.index_path, "rb") as fh:
                raw = read_bounded(fh, MAX_INDEX_SIZE)
        except FileNotFoundError:
            raise NotFound(self.ref, f"{INDEX_FILE} missing in {self.ref.path}") from None
        except PermissionError:
            raise Denied(self.ref, f"cannot read {INDEX_FILE}") from None
        if len(raw) > MAX_INDEX_SIZE:
            raise RegistryError(self.ref, f"{INDEX_FILE} is larger than {MAX_INDEX_SIZE} bytes")
        try:
            index = json.loads(raw)
        except ValueError as exc:
            raise RegistryError(self.ref, f"{INDEX_FILE} cannot be parsed: {exc}") from None
        if not isinstance(index, dict) or not isinstance(index.get("manifests", []), list):
            raise RegistryError(self.ref, f"{INDEX_FILE} is not an OCI index")
        index.setdefault("manifests", [])
        return index

    def open_blob(self, digest: str) -> BinaryIO:
        path = self.blob_path(digest)
        try:
            fh = open(path, "rb")  # noqa: SIM115 - handed to a reader that closes it
        except FileNotFoundError:
            raise NotFound(self.ref, f"blob {digest} not found") from None
        except IsADirectoryError:
            raise NotFound(self.ref, f"blob {digest} not found") from None
        except PermissionError:
            raise Denied(self.ref, f"cannot read blob {digest}") from None
        return fh

    # writing
    def ensure_exists(self) -> None:
        """Make sure the layout exists before a write, creating it under the lock."""
        if os.path.isfile(self.layout_path) and os.path.isfile(self.index_path):
            self._check_version()
            return
        with self.lock():
            self.ensure()

    def ensure(self) -> None:  # the caller holds the lock
        """Create the directory, oci-layout and an empty index.json where missing."""
        try:
            os.makedirs(os.path.join(self.blobs_dir), exist_ok=True)
        except FileExistsError:
            raise RegistryError(self.ref, f"{self.ref.path} is not a directory") from None
        except PermissionError:
            raise Denied(self.ref, f"cannot create {self.ref.path}") from None
        if os.path.isfile(self.layout_path):
            self._check_version()
        else:
            write_atomic(self.layout_path, json.dumps({"imageLayoutVersion": LAYOUT_VERSION}).encode())
        if not os.path.isfile(self.index_path):
            self.write_index(new_index())

    def write_index(self, index: dict[str, Any]) -> None:
        write_atomic(self.index_path, json.dumps(index, indent=2).encode() + b"\n")

    def blob_dir_for(self, algorithm: str) -> str:
        path = os.path.join(self.blobs_dir, algorithm)
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM):
                raise Denied(self.ref, f"cannot create {path}") from None
            raise RegistryError(self.ref, f"cannot create {path}: {exc.strerror}") from None
        return path


def new_index() -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": []}
