"""OCIDirScheme: the Scheme API on an OCI image layout directory (`ocidir://path:tag`).

Reads need no lock: index.json and blobs are only ever replaced whole (temp file,
fsync, rename). Writers of index.json take the layout lock (a thread lock plus flock on
`.regbot.lock`) around each read-modify-write. See close.py for garbage collection.
"""

from __future__ import annotations

import os
import threading

from regbot.errors import Denied, RegistryError, Unsupported
from regbot.scheme.ocidir.blob import BlobMixin
from regbot.scheme.ocidir.close import CloseMixin
from regbot.scheme.ocidir.layout import Layout
from regbot.scheme.ocidir.manifest import ManifestMixin
from regbot.scheme.ocidir.referrer import ReferrerMixin
from regbot.scheme.ocidir.tag import TagMixin
from regbot.types.ref import Reference

# Files younger than this survive a garbage collection (see close.py).
DEFAULT_GC_GRACE = 3600.0


class OCIDirScheme(BlobMixin, ManifestMixin, TagMixin, ReferrerMixin, CloseMixin):
    """Thread safe; any number of instances and processes may share a layout.

    `blob_limit` (bytes, 0 for none) refuses larger blobs with TooLarge. `gc` runs the
    garbage collection on close() of a layout this instance wrote to; files younger
    than `gc_grace` seconds are kept.
    """

    def __init__(self, blob_limit: int = 0, *, gc: bool = True,
                 gc_grace: float = DEFAULT_GC_GRACE) -> None:
        self.blob_limit = blob_limit
        self.gc = gc
        self.gc_grace = gc_grace
        self._modified: set[str] = set()
        self._state_lock = threading.Lock()

    def _mark_modified(self, layout: Layout) -> None:
        with self._state_lock:
            self._modified.add(layout.root)

    def _take_modified(self, layout: Layout) -> bool:
        with self._state_lock:
            if layout.root in self._modified:
                self._modified.discard(layout.root)
                return True
            return False

    def ping(self, ref: Reference) -> None:
        """A missing directory is fine (the first write creates it); an existing one must
        be a readable directory and, when it has an oci-layout file, a known version."""
        layout = Layout(ref)
        if not os.path.exists(layout.root):
            return
        if not os.path.isdir(layout.root):
            raise RegistryError(ref, f"{ref.path} is not a directory")
        if not os.access(layout.root, os.R_OK | os.X_OK):
            raise Denied(ref, f"cannot read {ref.path}")
        if layout.exists():
            layout.check()

    def repo_list(self, ref: Reference, limit: int | None = None,
                  last: str | None = None) -> list[str]:
        raise Unsupported(ref, "an OCI layout has no repository list")
