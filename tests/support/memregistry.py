"""An in-memory OCI distribution registry for the cases docker-registry 2.8 cannot produce.

    reg = MemRegistry(referrers_api=True, tag_delete=True, mount=True, delete=True,
                      user="", password="", page_size=0)
    reg.host            # "127.0.0.1:PORT" (plain http), reg.url, reg.stop(), context manager
    reg.manifests       # {repo: {digest: (media_type, raw bytes)}}
    reg.tags            # {repo: {tag: digest}}
    reg.blobs           # {digest: bytes} (content store) ; reg.repo_blobs {repo: {digest}}
    reg.uploads         # open upload sessions ; reg.requests [(method, path)]
    reg.max_concurrent  # most requests handled at once

What it implements (newer-registry behaviour, OCI distribution spec 1.1):
- GET /v2/ (and Basic auth on everything when `user` is set: 401 + `WWW-Authenticate: Basic`).
- Manifests: GET/HEAD by tag or digest (Content-Type, Docker-Content-Digest, Content-Length);
  PUT checks the body's mediaType against Content-Type (MANIFEST_INVALID), the digest in the
  URL (DIGEST_INVALID) and, for images, that config and layers without `urls` are in the
  repository (MANIFEST_BLOB_UNKNOWN); an index whose children are absent is accepted. A PUT
  of a manifest with `subject` answers `OCI-Subject: <subject digest>` (when referrers_api).
  DELETE by digest removes the manifest and its tags; DELETE by tag removes only that tag
  (tag_delete=False: answers like 2.8 does, 400 DIGEST_INVALID; delete=False: 405 UNSUPPORTED).
- GET /v2/<repo>/referrers/<digest>[?artifactType=..]: an OCI index of the manifests whose
  subject is that digest (artifactType = the manifest's artifactType or its config media
  type, annotations copied), `OCI-Filters-Applied: artifactType` when filtered, 200 with an
  empty list for an unknown subject. referrers_api=False: 404 "404 page not found" as 2.8.
- Tags list sorted, paginated by `n` and `last`, with `Link: </v2/<repo>/tags/list?last=T&n=N>;
  rel="next"` while more remain; catalog likewise (`/v2/_catalog?n=&last=`). `page_size=N`:
  at most N names a page, `n` or not (a registry that pages on its own).
- Blobs: GET (with `Range: bytes=a-b` -> 206) / HEAD / DELETE; uploads: POST (session 202,
  `?digest=` monolithic 201, `?mount=&from=` 201 when mounted, else a session 202),
  PATCH (appends; a `Content-Range` whose start is not the current size gets 416), PUT
  `?digest=` (verifies: 400 DIGEST_INVALID), GET status (204 + Range), DELETE (204).

Facts observed on docker-registry 2.8.2 (Debian, /usr/bin/docker-registry, as started by
tests/support/registry.py), for the other engineers:
- DELETE /v2/<repo>/manifests/<tag>: 400 `{"errors":[{"code":"DIGEST_INVALID","message":
  "provided digest did not match uploaded content"}]}`; the tag stays. Only DELETE by digest
  works (202), and it removes every tag pointing at that digest.
- GET /v2/<repo>/tags/list?n=2&last=t3: `n` and `last` are ignored: 200 with ALL tags, no
  Link header. The list is NOT sorted (e.g. ["b","latest","9","B","c","10","a"]).
  Unknown repository: 404 NAME_UNKNOWN.
- GET /v2/_catalog?n=2: paginated and sorted, 200 `{"repositories":["f/a","f/b"]}` with
  `Link: </v2/_catalog?last=f%2Fb&n=2>; rel="next"`; `last` honoured; no Link when the page
  holds the rest (even when exactly n remain).
- PUT of an OCI index or a Docker manifest list whose children are absent: 400 with one
  MANIFEST_BLOB_UNKNOWN error per missing child (detail = child digest). Children first.
- PUT of a manifest with `subject` (and artifactType): 201, stored byte for byte, NO
  `OCI-Subject` header (headers: Docker-Content-Digest, Location, Content-Length: 0).
- GET /v2/<repo>/referrers/<digest> (with or without ?artifactType=): 404, Content-Type
  text/plain, body "404 page not found" (not an OCI error body). Clients must fall back to
  the `sha256-<hex>` tag schema.
- Manifest layers with `urls` (foreign / non-distributable): rejected (500/400
  MANIFEST_BLOB_UNKNOWN, UNKNOWN errors) unless the registry runs with validation disabled
  (start_registry(validation_disabled=True)); the default URL allow-list is empty.
- PUT with a Content-Type that differs from the body's mediaType: 400 MANIFEST_INVALID.
- PATCH upload: Content-Range is not checked; what matters is the `_state` in the latest
  Location (a stale Location -> 404 BLOB_UPLOAD_INVALID). Upload Locations are absolute.
- Blob GET honours `Range` (206, `Content-Range: bytes 2-5/868`). Cross-repo mount of a
  present blob: 201 + Location + Docker-Content-Digest; of an absent one: 202 new session.
- HEAD of an unknown manifest: 404 with Content-Length of the error body but no body.
- Manifest GET/HEAD content negotiation (by tag AND by digest): an OCI manifest or index is
  served only when the Accept header names its media type, otherwise 404 MANIFEST_UNKNOWN
  ("OCI manifest found, but accept header does not support OCI manifests"; `*/*` is not
  enough). A Docker v2 manifest asked without its type in Accept (none, or `*/*`) is
  converted to schema 1 (`application/vnd.docker.distribution.manifest.v1+prettyjws`, a
  different digest); a Docker manifest list asked with only the Docker v2 manifest type is
  answered with its linux/amd64 child. So always send every manifest type in Accept.
  (MemRegistry does no negotiation: it serves the stored bytes whatever Accept says.)
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from tests.support.httpserver import Handler, ThreadedService

MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEX_TYPES = (MT_OCI_INDEX, MT_DOCKER_LIST)
IMAGE_TYPES = (MT_OCI_MANIFEST, MT_DOCKER_MANIFEST)
MAX_MANIFEST = 4 * 1024 * 1024

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_NAME_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST_RE = re.compile(r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")
_ROUTES = [
    ("upload", re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/(?P<id>[^/]*)$")),
    ("blob", re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<ref>[^/]+)$")),
    ("manifest", re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<ref>[^/]+)$")),
    ("tags", re.compile(r"^/v2/(?P<name>.+)/tags/list$")),
    ("referrers", re.compile(r"^/v2/(?P<name>.+)/referrers/(?P<ref>[^/]+)$")),
]
API_HEADER = {"Docker-Distribution-API-Version": "registry/2.0"}


def _digest(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


@dataclass
class _Upload:
    repo: str
    data: bytearray = field(default_factory=bytearray)


class _Reject(Exception):
    """An OCI error answer raised from deep inside a handler."""

    def __init__(self, status: int, code: str, message: str, detail: Any = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(code)
        self.status, self.code, self.message, self.detail = status, code, message, detail
        self.headers = headers or {}


class MemRegistry(ThreadedService):
    def __init__(self, *, referrers_api: bool = True, tag_delete: bool = True,
                 mount: bool = True, delete: bool = True, user: str = "",
                 password: str = "", page_size: int = 0) -> None:
        self.referrers_api = referrers_api
        self.page_size = page_size
        self.tag_delete = tag_delete
        self.mount = mount
        self.delete = delete
        self.user = user
        self._password = password
        self.manifests: dict[str, dict[str, tuple[str, bytes]]] = {}
        self.tags: dict[str, dict[str, str]] = {}
        self.blobs: dict[str, bytes] = {}
        self.repo_blobs: dict[str, set[str]] = {}
        self.uploads: dict[str, _Upload] = {}
        self.requests: list[tuple[str, str]] = []
        self._state = threading.RLock()
        super().__init__()

    def __repr__(self) -> str:
        return f"MemRegistry(host={self.host!r})"

    # ------------------------------------------------------------ dispatch

    def handle(self, h: Handler) -> None:
        with self._lock:
            self.requests.append((h.method, h.path))
        try:
            if self.user and not self._auth_ok(h):
                raise _Reject(401, "UNAUTHORIZED", "authentication required", None,
                              {"WWW-Authenticate": 'Basic realm="memregistry"'})
            self._route(h)
        except _Reject as rej:
            h.send_error_oci(rej.status, rej.code, rej.message, rej.detail,
                             {**API_HEADER, **rej.headers})

    def _auth_ok(self, h: Handler) -> bool:
        auth = h.headers.get("Authorization", "")
        if not auth.lower().startswith("basic "):
            return False
        try:
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        except ValueError:
            return False
        return secrets.compare_digest(user, self.user) and secrets.compare_digest(
            password, self._password)

    def _route(self, h: Handler) -> None:
        route = h.route
        if route in ("/v2", "/v2/"):
            h.send_json(200, {}, API_HEADER)
            return
        if route == "/v2/_catalog":
            self._catalog(h)
            return
        for kind, pattern in _ROUTES:
            m = pattern.match(route)
            if not m:
                continue
            name = m["name"]
            if not _NAME_RE.match(name):
                raise _Reject(400, "NAME_INVALID", "invalid repository name", {"name": name})
            method = getattr(self, f"_{kind}_{h.method.lower()}", None)
            if method is None:
                raise _Reject(405, "UNSUPPORTED", "The operation is unsupported.")
            method(h, name, m.groupdict().get("ref") or m.groupdict().get("id") or "")
            return
        h.send(404, {"Content-Type": "text/plain; charset=utf-8", **API_HEADER},
               b"404 page not found\n")

    # ------------------------------------------------------------ helpers

    def _base(self, h: Handler) -> str:
        return f"http://{h.headers.get('Host') or self.host}"

    def _known_repo(self, name: str) -> bool:
        return bool(self.manifests.get(name) or self.tags.get(name)
                    or self.repo_blobs.get(name))

    def _resolve(self, name: str, ref: str) -> tuple[str, str, bytes]:
        """(digest, media_type, raw) of a manifest by tag or digest, or a 404."""
        with self._state:
            digest = ref if ":" in ref else self.tags.get(name, {}).get(ref, "")
            entry = self.manifests.get(name, {}).get(digest)
        if entry is None:
            detail = {"Revision": ref} if ":" in ref else {"Tag": ref}
            raise _Reject(404, "MANIFEST_UNKNOWN", "manifest unknown", detail)
        return digest, entry[0], entry[1]

    def _page(self, h: Handler, items: list[str], path: str) -> tuple[list[str], dict[str, str]]:
        """Apply ?n=&last= to a sorted list; the Link header when more remain."""
        q = h.query
        last = q.get("last", "")
        if last:
            items = [i for i in items if i > last]
        if "n" not in q or q["n"] == "":
            if not self.page_size:
                return items, {}
            n = self.page_size  # a registry paging on its own, asked or not
        else:
            try:
                n = int(q["n"])
            except ValueError:
                raise _Reject(400, "PAGINATION_NUMBER_INVALID",
                              "invalid number of results requested", {"n": q["n"]}) from None
            if n < 0:
                raise _Reject(400, "PAGINATION_NUMBER_INVALID",
                              "invalid number of results requested", {"n": n})
            if self.page_size:
                n = min(n, self.page_size)
        page = items[:n]
        headers = {}
        if len(items) > n and page:
            # distribution's form: `last` first, then `n`
            headers["Link"] = f'<{path}?last={quote(page[-1], safe="")}&n={n}>; rel="next"'
        return page, headers

    # ------------------------------------------------------------ catalog and tags

    def _catalog(self, h: Handler) -> None:
        if h.method not in ("GET", "HEAD"):
            raise _Reject(405, "UNSUPPORTED", "The operation is unsupported.")
        with self._state:
            repos = sorted(r for r in set(self.manifests) | set(self.repo_blobs)
                           if self._known_repo(r))
        page, headers = self._page(h, repos, "/v2/_catalog")
        h.send_json(200, {"repositories": page}, {**API_HEADER, **headers})

    def _tags_get(self, h: Handler, name: str, _ref: str) -> None:
        with self._state:
            if not self._known_repo(name):
                raise _Reject(404, "NAME_UNKNOWN", "repository name not known to registry",
                              {"name": name})
            tags = sorted(self.tags.get(name, {}))
        page, headers = self._page(h, tags, f"/v2/{name}/tags/list")
        h.send_json(200, {"name": name, "tags": page}, {**API_HEADER, **headers})

    _tags_head = _tags_get

    # ------------------------------------------------------------ manifests

    def _manifest_get(self, h: Handler, name: str, ref: str) -> None:
        digest, media_type, raw = self._resolve(name, ref)
        h.send(200, {"Content-Type": media_type, "Docker-Content-Digest": digest,
                     "Etag": f'"{digest}"', **API_HEADER}, raw)

    _manifest_head = _manifest_get

    def _manifest_put(self, h: Handler, name: str, ref: str) -> None:
        if int(h.headers.get("Content-Length") or 0) > MAX_MANIFEST:
            raise _Reject(413, "SIZE_INVALID", "manifest too large")
        raw = h.read_body()
        if len(raw) > MAX_MANIFEST:
            raise _Reject(413, "SIZE_INVALID", "manifest too large")
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict):
                raise ValueError("not an object")
        except ValueError:
            raise _Reject(400, "MANIFEST_INVALID", "manifest invalid", {}) from None
        header_type = h.headers.get("Content-Type", "").split(";")[0].strip()
        media_type = doc.get("mediaType") or header_type
        if doc.get("mediaType") and header_type and header_type != doc["mediaType"]:
            raise _Reject(400, "MANIFEST_INVALID", "manifest invalid",
                          "mediaType in manifest should be " + header_type)
        if media_type not in INDEX_TYPES + IMAGE_TYPES:
            raise _Reject(400, "MANIFEST_INVALID", "manifest invalid",
                          f"unsupported media type {media_type!r}")
        algorithm = ref.split(":")[0] if ":" in ref else "sha256"
        if algorithm not in ("sha256", "sha512"):
            raise _Reject(400, "DIGEST_INVALID", "provided digest did not match uploaded content")
        digest = _digest(raw, algorithm)
        if ":" in ref and ref != digest:
            raise _Reject(400, "DIGEST_INVALID", "provided digest did not match uploaded content")
        if ":" not in ref and not _TAG_RE.match(ref):
            raise _Reject(400, "TAG_INVALID", "manifest tag did not match URI", {"tag": ref})
        with self._state:
            if media_type in IMAGE_TYPES:
                present = self.repo_blobs.get(name, set())
                needed = [doc.get("config") or {}] + list(doc.get("layers") or [])
                missing = [d.get("digest", "") for d in needed
                           if not d.get("urls") and d.get("digest") not in present]
                if missing:
                    raise _Reject(400, "MANIFEST_BLOB_UNKNOWN", "blob unknown to registry",
                                  missing[0])
            self.manifests.setdefault(name, {})[digest] = (media_type, raw)
            if ":" not in ref:
                self.tags.setdefault(name, {})[ref] = digest
        headers = {"Docker-Content-Digest": digest,
                   "Location": f"{self._base(h)}/v2/{name}/manifests/{digest}", **API_HEADER}
        subject = doc.get("subject")
        if self.referrers_api and isinstance(subject, dict) and subject.get("digest"):
            headers["OCI-Subject"] = subject["digest"]
        h.send(201, headers)

    def _manifest_delete(self, h: Handler, name: str, ref: str) -> None:
        if not self.delete:
            raise _Reject(405, "UNSUPPORTED", "The operation is unsupported.")
        with self._state:
            if ":" not in ref:
                if not self.tag_delete:
                    raise _Reject(400, "DIGEST_INVALID",
                                  "provided digest did not match uploaded content")
                if ref not in self.tags.get(name, {}):
                    raise _Reject(404, "MANIFEST_UNKNOWN", "manifest unknown", {"Tag": ref})
                del self.tags[name][ref]
            else:
                if ref not in self.manifests.get(name, {}):
                    raise _Reject(404, "MANIFEST_UNKNOWN", "manifest unknown",
                                  {"Revision": ref})
                del self.manifests[name][ref]
                tags = self.tags.get(name, {})
                for tag in [t for t, d in tags.items() if d == ref]:
                    del tags[tag]
        h.send(202, API_HEADER)

    # ------------------------------------------------------------ referrers

    def _referrers_get(self, h: Handler, name: str, ref: str) -> None:
        if not self.referrers_api:
            h.send(404, {"Content-Type": "text/plain; charset=utf-8", **API_HEADER},
                   b"404 page not found\n")
            return
        if not _DIGEST_RE.match(ref):
            raise _Reject(400, "DIGEST_INVALID", "provided digest did not match uploaded content")
        wanted = h.query.get("artifactType", "")
        entries = []
        with self._state:
            stored = list(self.manifests.get(name, {}).items())
        for digest, (media_type, raw) in stored:
            doc = json.loads(raw)
            subject = doc.get("subject") or {}
            if subject.get("digest") != ref:
                continue
            artifact_type = doc.get("artifactType") or (
                (doc.get("config") or {}).get("mediaType", "") if media_type in IMAGE_TYPES
                else "")
            if wanted and artifact_type != wanted:
                continue
            desc: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": len(raw)}
            if artifact_type:
                desc["artifactType"] = artifact_type
            if doc.get("annotations"):
                desc["annotations"] = doc["annotations"]
            entries.append(desc)
        body = json.dumps({"schemaVersion": 2, "mediaType": MT_OCI_INDEX,
                           "manifests": entries}).encode()
        headers = {"Content-Type": MT_OCI_INDEX, **API_HEADER}
        if wanted:
            headers["OCI-Filters-Applied"] = "artifactType"
        h.send(200, headers, body)

    # ------------------------------------------------------------ blobs

    def _blob_data(self, name: str, digest: str) -> bytes:
        with self._state:
            if digest in self.repo_blobs.get(name, set()):
                return self.blobs[digest]
            entry = self.manifests.get(name, {}).get(digest)
        if entry is not None:
            return entry[1]  # a registry serves manifests from the blob endpoint too
        raise _Reject(404, "BLOB_UNKNOWN", "blob unknown to registry", digest)

    def _blob_get(self, h: Handler, name: str, digest: str) -> None:
        if not _DIGEST_RE.match(digest):
            raise _Reject(400, "DIGEST_INVALID", "provided digest did not match uploaded content")
        data = self._blob_data(name, digest)
        headers = {"Content-Type": "application/octet-stream", "Docker-Content-Digest": digest,
                   "Accept-Ranges": "bytes", "Etag": f'"{digest}"', **API_HEADER}
        m = re.match(r"^bytes=(\d*)-(\d*)$", h.headers.get("Range", "").strip())
        if m and (m[1] or m[2]):
            if m[1]:
                start, end = int(m[1]), int(m[2]) if m[2] else len(data) - 1
            else:
                start, end = max(0, len(data) - int(m[2])), len(data) - 1
            end = min(end, len(data) - 1)
            if start > end:
                h.send(416, {"Content-Range": f"bytes */{len(data)}", **API_HEADER})
                return
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            h.send(206, headers, data[start:end + 1])
            return
        h.send(200, headers, data)

    _blob_head = _blob_get

    def _blob_delete(self, h: Handler, name: str, digest: str) -> None:
        if not self.delete:
            raise _Reject(405, "UNSUPPORTED", "The operation is unsupported.")
        with self._state:
            linked = self.repo_blobs.get(name, set())
            if digest not in linked:
                raise _Reject(404, "BLOB_UNKNOWN", "blob unknown to registry", digest)
            linked.discard(digest)
        h.send(202, API_HEADER)

    def _link(self, name: str, digest: str, data: bytes | None = None) -> None:
        with self._state:
            if data is not None:
                self.blobs[digest] = data
            self.repo_blobs.setdefault(name, set()).add(digest)

    def _blob_created(self, h: Handler, name: str, digest: str) -> None:
        h.send(201, {"Location": f"{self._base(h)}/v2/{name}/blobs/{digest}",
                     "Docker-Content-Digest": digest, **API_HEADER})

    def _upload_headers(self, h: Handler, name: str, upload_id: str) -> dict[str, str]:
        size = len(self.uploads[upload_id].data)
        return {"Location": f"{self._base(h)}/v2/{name}/blobs/uploads/{upload_id}",
                "Range": f"0-{max(size - 1, 0)}", "Docker-Upload-UUID": upload_id,
                **API_HEADER}

    def _verified(self, data: bytes, digest: str) -> str:
        if not _DIGEST_RE.match(digest) or _digest(data, digest.split(":")[0]) != digest:
            raise _Reject(400, "DIGEST_INVALID", "provided digest did not match uploaded content",
                          {"Digest": digest})
        return digest

    def _upload_post(self, h: Handler, name: str, upload_id: str) -> None:
        if upload_id:
            raise _Reject(405, "UNSUPPORTED", "The operation is unsupported.")
        q = h.query
        if q.get("mount"):
            source, digest = q.get("from", ""), q["mount"]
            with self._state:
                present = digest in self.repo_blobs.get(source, set())
            if self.mount and present:
                h.drain()
                self._link(name, digest)
                self._blob_created(h, name, digest)
                return
        if q.get("digest"):
            data = h.read_body()
            digest = self._verified(data, q["digest"])
            self._link(name, digest, data)
            self._blob_created(h, name, digest)
            return
        h.drain()
        new_id = str(uuid.uuid4())
        with self._state:
            self.uploads[new_id] = _Upload(name)
        h.send(202, self._upload_headers(h, name, new_id))

    def _session(self, name: str, upload_id: str) -> _Upload:
        with self._state:
            upload = self.uploads.get(upload_id)
        if upload is None or upload.repo != name:
            raise _Reject(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry")
        return upload

    def _upload_get(self, h: Handler, name: str, upload_id: str) -> None:
        self._session(name, upload_id)
        h.send(204, self._upload_headers(h, name, upload_id))

    def _upload_patch(self, h: Handler, name: str, upload_id: str) -> None:
        upload = self._session(name, upload_id)
        content_range = h.headers.get("Content-Range", "")
        if content_range:
            m = re.match(r"^(?:bytes[ =])?(\d+)-(\d+)", content_range.strip())
            if not m or int(m[1]) != len(upload.data) or int(m[2]) < int(m[1]):
                h.drain()
                raise _Reject(416, "BLOB_UPLOAD_INVALID", "blob upload invalid",
                              f"Content-Range {content_range} does not start at "
                              f"{len(upload.data)}", self._upload_headers(h, name, upload_id))
        for piece in h.iter_body():
            upload.data.extend(piece)
        h.send(202, self._upload_headers(h, name, upload_id))

    def _upload_put(self, h: Handler, name: str, upload_id: str) -> None:
        upload = self._session(name, upload_id)
        for piece in h.iter_body():
            upload.data.extend(piece)
        with self._state:
            self.uploads.pop(upload_id, None)
        digest = self._verified(bytes(upload.data), h.query.get("digest", ""))
        self._link(name, digest, bytes(upload.data))
        self._blob_created(h, name, digest)

    def _upload_delete(self, h: Handler, name: str, upload_id: str) -> None:
        self._session(name, upload_id)
        with self._state:
            self.uploads.pop(upload_id, None)
        h.send(204, API_HEADER)


# --- in a process of its own ------------------------------------------------------------


@contextlib.contextmanager
def separate_process(count: int = 1, **options: Any) -> Iterator[list[str]]:
    """`count` MemRegistry instances in a child process; yields their hosts. For tests
    measuring the memory of their own process, which an in-process registry would share."""
    import subprocess
    import sys

    from tests.support.processes import REPO_ROOT

    code = ("import json, sys\n"
            "from tests.support.memregistry import MemRegistry\n"
            f"regs = [MemRegistry(**json.loads(sys.argv[1])) for _ in range({count})]\n"
            "print(' '.join(r.host for r in regs), flush=True)\n"
            "sys.stdin.read()  # until the parent closes it\n")
    proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(options)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        hosts = line.split()
        if len(hosts) != count:
            raise RuntimeError(f"in-memory registry process did not start: {line!r}")
        yield hosts
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
