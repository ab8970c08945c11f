"""close(): garbage collection of blobs nothing in index.json reaches any more.

As regclient's ocidir does on Close, but only when this scheme instance wrote to the
layout since its last close, and with two guards regclient lacks:
- a file younger than `gc_grace` seconds is kept, so a copy still running (in another
  thread or process) keeps the blobs it pushed before the manifest that will use them;
- when a reachable manifest cannot be read (corrupt file), nothing is deleted, since its
  children cannot be known.
Stale temp files of crashed writers (older than `gc_grace`) are removed too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time

from regbot.errors import DigestMismatch, NotFound, RegbotError
from regbot.scheme.ocidir.layout import HEX_LENGTH, TMP_PREFIX, Layout, is_blob_name
from regbot.types.manifest import MANIFEST_TYPES, MAX_MANIFEST_SIZE
from regbot.types.ref import Reference

log = logging.getLogger(__name__)


class GCAborted(Exception):
    """A reachable manifest could not be read: collecting would risk live blobs."""


class CloseMixin:
    """close(); uses _take_modified (OCIDirScheme) and _read_manifest (ManifestMixin)."""

    gc: bool
    gc_grace: float

    def close(self, ref: Reference) -> None:
        layout = Layout(ref)
        if not self._take_modified(layout) or not self.gc or not layout.exists():
            return
        with layout.lock():
            try:
                keep = self._reachable(layout)
            except GCAborted as exc:
                log.warning("%s: garbage collection skipped: %s", ref.name, exc)
                return
            removed = self._sweep(layout, keep, time.time() - self.gc_grace)
        if removed:
            log.debug("%s: garbage collection removed %d files", ref.name, removed)

    def _reachable(self, layout: Layout) -> set[str]:
        """Every digest reachable from index.json: entries, index children (recursively),
        configs and layers. Referrers are reachable through their fallback tags."""
        ref = layout.ref
        keep: set[str] = set()
        pending = [e for e in layout.read_index().get("manifests") or []
                   if isinstance(e.get("digest"), str)]
        while pending:
            entry = pending.pop()
            digest = entry["digest"]
            if digest in keep:
                continue
            keep.add(digest)
            media_type = entry.get("mediaType") or ""
            if media_type and media_type not in MANIFEST_TYPES:
                continue  # an index.json entry that is a plain blob
            try:
                path = layout.blob_path(digest)
                if not os.path.isfile(path):
                    continue  # sparse copy: nothing stored to protect
                if os.path.getsize(path) > MAX_MANIFEST_SIZE:
                    continue
                manifest = self._read_manifest(layout, ref, {"digest": digest,
                                                             "mediaType": media_type})
            except NotFound:
                continue
            except DigestMismatch as exc:
                raise GCAborted(str(exc)) from None
            except RegbotError as exc:
                if not media_type:
                    continue  # unknown type that does not parse: treat as a blob
                raise GCAborted(str(exc)) from None
            for child in manifest.manifests:
                pending.append({"digest": child.digest, "mediaType": child.media_type})
            for blob in ([manifest.config] if manifest.config else []) + manifest.layers:
                keep.add(blob.digest)
        return keep

    def _sweep(self, layout: Layout, keep: set[str], cutoff: float) -> int:
        removed = 0
        for algorithm in HEX_LENGTH:
            directory = os.path.join(layout.blobs_dir, algorithm)
            try:
                names = os.listdir(directory)
            except FileNotFoundError:
                continue
            for name in names:
                path = os.path.join(directory, name)
                is_tmp = name.startswith(TMP_PREFIX)
                if not is_tmp and (not is_blob_name(algorithm, name)
                                   or f"{algorithm}:{name}" in keep):
                    continue
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    continue
                if st.st_mtime >= cutoff or not os.path.isfile(path):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                    removed += 1
                    log.debug("%s: removed unreferenced %s", layout.ref.name, path)
        return removed

