"""Tags of an OCI layout: the ref.name annotations of index.json entries."""

from __future__ import annotations

import json

from regbot.errors import NotFound, RegistryError
from regbot.scheme.base import Listing
from regbot.scheme.ocidir import index as idx
from regbot.scheme.ocidir.layout import INDEX_FILE, Layout
from regbot.types.ref import Reference


class TagMixin:
    """Tag operations; uses _mark_modified (OCIDirScheme)."""

    def tag_list(self, ref: Reference, limit: int | None = None,
                 last: str | None = None) -> list[str]:
        """Sorted tags; `last` starts after that tag and `limit` caps the count, as the
        registry API's `last` and `n` do."""
        return self.tag_listing(ref, limit, last).names

    def tag_listing(self, ref: Reference, limit: int | None = None,
                    last: str | None = None) -> Listing:
        """tag_list with index.json as the body (what regclient shows as the raw list)."""
        layout = Layout(ref)
        layout.check()
        index = layout.read_index()
        tags = idx.list_tags(index)
        if last:
            tags = [t for t in tags if t > last]
        if limit is not None and limit >= 0:
            tags = tags[:limit]
        return Listing(tags, json.dumps(index, separators=(",", ":")).encode())

    def tag_delete(self, ref: Reference) -> None:
        """Remove the tag's entries from index.json; other tags of the same digest stay.
        The manifest itself becomes garbage when nothing references it any more."""
        if not ref.tag:
            raise RegistryError(ref, "a tag is required to delete a tag")
        layout = Layout(ref)
        layout.check()
        with layout.lock():
            index = layout.read_index()
            if not idx.remove_tag(index, ref.tag):
                raise NotFound(ref, f"tag {ref.tag} not found in {INDEX_FILE}")
            layout.write_index(index)
        self._mark_modified(layout)
