"""Tags: listing with pagination, and deleting one tag without touching its siblings."""

from __future__ import annotations

import datetime
import json
import logging
import uuid

from regbot.errors import NotFound, RegistryError
from regbot.http.client import Request
from regbot.http.errors import error_for, parse_error_body
from regbot.scheme.base import Listing
from regbot.scheme.reg.common import ERROR_BODY_LIMIT, RegBase, page_query
from regbot.types.descriptor import Descriptor
from regbot.types.manifest import MT_OCI_EMPTY, MT_OCI_MANIFEST, Manifest
from regbot.types.ref import Reference

log = logging.getLogger(__name__)

EMPTY_BLOB = b"{}"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
# Answers meaning "this registry does not delete by tag" (docker-registry 2.8: 400
# DIGEST_INVALID; others 405 or UNSUPPORTED).
_NO_TAG_DELETE_STATUS = (400, 404, 405, 501)


class TagMixin(RegBase):
    def tag_list(self, ref: Reference, limit: int | None = None, last: str | None = None) -> list[str]:
        return self.tag_listing(ref, limit, last).names

    def tag_listing(self, ref: Reference, limit: int | None = None, last: str | None = None) -> Listing:
        req = Request(
            "GET", ref.registry, ref.repository, "tags/list",
            query=page_query(limit, last), headers={"Accept": "application/json"},
            mirrors=True, ref=ref.name,
        )
        return self._paged(req, "tags", "list tags", limit, last)

    def tag_delete(self, ref: Reference) -> None:
        if not ref.tag:
            raise RegistryError(ref, "delete tag: the reference has no tag")
        tagged = ref.with_tag(ref.tag)
        resp = self._send(Request("DELETE", ref.registry, ref.repository, f"manifests/{ref.tag}", ref=tagged))
        with resp:
            if resp.status in (200, 202, 204):
                return
            body = resp.read_prefix(ERROR_BODY_LIMIT)
        code, _ = parse_error_body(body)
        if resp.status not in _NO_TAG_DELETE_STATUS and code != "UNSUPPORTED":
            raise error_for(resp.status, body, tagged, "delete tag")
        log.debug("%s: registry refused DELETE by tag (HTTP %s %s), replacing the tag", tagged, resp.status, code)
        self._delete_tag_by_replacement(tagged)

    def _delete_tag_by_replacement(self, ref: Reference) -> None:
        """Point the tag at a unique throw-away manifest, then delete that manifest by
        digest: only this tag goes, other tags on the old digest stay."""
        self.manifest_head(ref)  # type: ignore[attr-defined]  # NotFound when no such tag
        try:
            self.blob_head(ref, EMPTY_DIGEST)  # type: ignore[attr-defined]
        except NotFound:
            self.blob_put(ref, Descriptor(MT_OCI_EMPTY, EMPTY_DIGEST, len(EMPTY_BLOB)), EMPTY_BLOB)  # type: ignore[attr-defined]
        empty = {"mediaType": MT_OCI_EMPTY, "digest": EMPTY_DIGEST, "size": len(EMPTY_BLOB)}
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        document = {
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "config": empty,
            "layers": [empty],
            "annotations": {
                "org.opencontainers.image.created": now,
                "io.regbot.delete-tag": ref.tag,
                "io.regbot.delete-id": uuid.uuid4().hex,
            },
        }
        placeholder = Manifest.from_bytes(json.dumps(document).encode(), MT_OCI_MANIFEST)
        self.manifest_put(ref, placeholder)  # type: ignore[attr-defined]
        self.manifest_delete(ref.with_digest(placeholder.digest), placeholder)  # type: ignore[attr-defined]
