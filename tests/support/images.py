"""Build test images and push/read them with plain `requests` (never the regbot client).

Everything here is independent of the code under test, so a test can build content,
push it with these helpers, run regbot, and check the result with these helpers.

Building (all deterministic for a given `seed`):

    random_blob(size, seed=0) -> bytes
    blob_stream(size, seed=0, chunk=1 MiB) -> Iterator[bytes]   # same bytes as random_blob
    stream_digest(size, seed=0) -> str                           # digest without holding it
    make_config(platform="linux/amd64", labels=None, created=None, diff_ids=None) -> bytes
    build_image(platform="linux/amd64", *, docker=False, layers=2, layer_size=1024, seed=0,
                labels=None, created=None, shared_layers=(), external_layers=0,
                external_url="http://127.0.0.1:9/blob", annotations=None) -> Image
    build_index(platforms=("linux/amd64", "linux/arm64"), *, docker=False, seed=0,
                children=None, annotations=None, **image_kw) -> Image
    build_artifact(subject: Image, artifact_type="application/vnd.example.signature.v1",
                   payload=b"...", *, annotations=None, seed=0) -> Image
    build_referrers_index(artifacts) -> Image     # the tag-schema fallback index for a subject
    referrers_tag(digest) -> "sha256-<hex>"       # the fallback tag naming that index

`Image` holds: `media_type`, `manifest` (raw bytes), `digest`, `size`, `blobs` (digest ->
bytes: config + layers that a registry stores), `external` (digest -> bytes of layers that
have `urls` and are NOT pushed), `children` (child Images of an index), `config`/`layers`
(the descriptors as dicts), `platform`, `subject`. `image.descriptor()` gives the dict to
put in an index; `image.all_manifests()` lists children first then itself;
`image.all_blobs()` merges the blobs of the whole tree.

docker-registry 2.8 rejects manifests whose layers carry `urls` unless started with
`start_registry(validation_disabled=True)` (its default URL allow-list is empty); the
MemRegistry accepts them.

Images that share layers: build one, then pass `shared_layers=img.layers_with_data()` to
the next `build_image` (its own layers come after the shared ones).

Pushing and reading ("host" is "127.0.0.1:PORT", spoken over plain http; `auth` is a
(user, password) tuple used for Basic auth or, on a Bearer challenge, at the token realm):

    push_image(host, repo, image, tag=None, auth=None, push_external=False) -> str (digest)
    push_blob(host, repo, data, auth=None) -> str
    push_blob_stream(host, repo, size, seed=0, auth=None, chunk=1 MiB) -> str   # flat memory
    push_manifest(host, repo, ref, raw, media_type, auth=None) -> requests.Response
    write_ocidir(path, image, tag=None) -> None   # OCI layout; merges into an existing one
    get_manifest(host, repo, ref, auth=None, accept=ACCEPT_ALL) -> requests.Response (GET)
    head_manifest(...) -> requests.Response
    manifest_json(host, repo, ref, auth=None) -> dict          # raises on non-200
    list_tags(host, repo, auth=None) -> list[str]              # follows Link pagination
    list_catalog(host, auth=None) -> list[str]
    blob_exists(host, repo, digest, auth=None) -> bool
    get_blob(host, repo, digest, auth=None) -> bytes
    delete_manifest(host, repo, ref, auth=None) -> requests.Response
    session(auth=None) -> requests.Session   # Basic auth + Bearer dance, Accept: ACCEPT_ALL
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import requests

# Media types (kept local: the helpers must not import regbot).
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_OCI_LAYER_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
MT_OCI_EMPTY = "application/vnd.oci.empty.v1+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MT_DOCKER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
ACCEPT_ALL = ", ".join(
    [MT_OCI_INDEX, MT_DOCKER_LIST, MT_OCI_MANIFEST, MT_DOCKER_MANIFEST,
     "application/vnd.docker.distribution.manifest.v1+prettyjws",
     "application/vnd.docker.distribution.manifest.v1+json"]
)
EMPTY_JSON = b"{}"
DEFAULT_CHUNK = 1024 * 1024
REF_NAME = "org.opencontainers.image.ref.name"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- random content


def blob_stream(size: int, seed: int = 0, chunk: int = DEFAULT_CHUNK) -> Iterator[bytes]:
    """Deterministic pseudo-random bytes, `chunk` at a time; equal to random_blob(size, seed).

    Every chunk is generated at full `DEFAULT_CHUNK` length and cut, so the content does not
    depend on the `chunk` argument (it only slices the output).
    """
    rng = random.Random(f"blob-{seed}")
    left = size
    pending = b""
    while left > 0 or pending:
        if not pending:
            pending = rng.randbytes(DEFAULT_CHUNK)[: min(left, DEFAULT_CHUNK)]
            left -= len(pending)
        piece, pending = pending[:chunk], pending[chunk:]
        yield piece


class SizedStream:
    """blob_stream with a length: requests then sends Content-Length, not chunked."""

    def __init__(self, size: int, seed: int = 0, chunk: int = DEFAULT_CHUNK) -> None:
        self.size, self.seed, self.chunk = size, seed, chunk

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[bytes]:
        return blob_stream(self.size, self.seed, self.chunk)


def random_blob(size: int, seed: int = 0) -> bytes:
    """`size` deterministic pseudo-random bytes (different seeds give different blobs)."""
    return b"".join(blob_stream(size, seed))


def stream_digest(size: int, seed: int = 0) -> str:
    """Digest of random_blob(size, seed) computed without holding the blob."""
    h = hashlib.sha256()
    for piece in blob_stream(size, seed):
        h.update(piece)
    return "sha256:" + h.hexdigest()


# ---------------------------------------------------------------- building


def _platform_dict(platform: str) -> dict[str, str]:
    parts = platform.split("/")
    out = {"architecture": parts[1], "os": parts[0]}
    if len(parts) > 2:
        out["variant"] = parts[2]
    return out


def make_config(
    platform: str = "linux/amd64",
    labels: dict[str, str] | None = None,
    created: str | None = None,
    diff_ids: list[str] | None = None,
) -> bytes:
    """A real-looking image config JSON (the same shape Docker and OCI use)."""
    created = created or "2024-01-02T03:04:05Z"
    diff_ids = diff_ids or []
    cfg: dict[str, Any] = {
        "created": created,
        **_platform_dict(platform),
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
            "WorkingDir": "/",
            "Labels": dict(labels or {}),
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {"created": created, "created_by": f"/bin/sh -c #(nop) ADD layer {i}"}
            for i in range(len(diff_ids))
        ]
        + [{"created": created, "created_by": '/bin/sh -c #(nop) CMD ["/bin/sh"]',
            "empty_layer": True}],
    }
    return json.dumps(cfg, indent=2, sort_keys=True).encode()


@dataclass
class Image:
    """A built manifest (image, index or artifact) with everything needed to push it."""

    media_type: str
    manifest: bytes
    blobs: dict[str, bytes] = field(default_factory=dict, repr=False)
    external: dict[str, bytes] = field(default_factory=dict, repr=False)
    children: list[Image] = field(default_factory=list)
    config: dict[str, Any] | None = None
    layers: list[dict[str, Any]] = field(default_factory=list)
    platform: str = ""
    subject: Image | None = field(default=None, repr=False)
    artifact_type: str = ""

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def size(self) -> int:
        return len(self.manifest)

    @property
    def data(self) -> dict[str, Any]:
        return json.loads(self.manifest)

    @property
    def is_index(self) -> bool:
        return self.media_type in (MT_OCI_INDEX, MT_DOCKER_LIST)

    def descriptor(self, with_platform: bool = True) -> dict[str, Any]:
        """This manifest as a descriptor (with its platform when it has one)."""
        desc: dict[str, Any] = {
            "mediaType": self.media_type, "digest": self.digest, "size": self.size,
        }
        if with_platform and self.platform:
            desc["platform"] = _platform_dict(self.platform)
        return desc

    def all_manifests(self) -> list[Image]:
        """Children (depth first) before parents: the order a registry accepts them in."""
        out: list[Image] = []
        for child in self.children:
            out.extend(child.all_manifests())
        out.append(self)
        return out

    def all_blobs(self) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for m in self.all_manifests():
            out.update(m.blobs)
        return out

    def layers_with_data(self) -> list[tuple[dict[str, Any], bytes]]:
        """(descriptor, bytes) of each layer, for `shared_layers=` of another build."""
        every = {**self.blobs, **self.external}
        return [(layer, every[layer["digest"]]) for layer in self.layers]

    def child(self, platform: str) -> Image:
        for c in self.children:
            if c.platform == platform:
                return c
        raise KeyError(platform)


def build_image(
    platform: str = "linux/amd64",
    *,
    docker: bool = False,
    layers: int = 2,
    layer_size: int = 1024,
    seed: int = 0,
    labels: dict[str, str] | None = None,
    created: str | None = None,
    shared_layers: Iterable[tuple[dict[str, Any], bytes]] = (),
    external_layers: int = 0,
    external_url: str = "http://127.0.0.1:9/blob",
    annotations: dict[str, str] | None = None,
) -> Image:
    """A single-platform image: OCI by default, Docker schema 2 with `docker=True`.

    `external_layers` adds that many layers with `urls` (foreign / non-distributable):
    their bytes are in `image.external`, not `image.blobs`, and push_image skips them.
    """
    layer_mt = MT_DOCKER_LAYER if docker else MT_OCI_LAYER
    layer_descs: list[dict[str, Any]] = []
    blobs: dict[str, bytes] = {}
    external: dict[str, bytes] = {}
    for desc, data in shared_layers:
        layer_descs.append(dict(desc))
        (external if desc.get("urls") else blobs)[desc["digest"]] = data
    tag = f"{platform}-{seed}"
    for i in range(layers):
        data = random_blob(layer_size, seed=hash_seed(tag, "layer", i))
        layer_descs.append({"mediaType": layer_mt, "digest": sha256(data), "size": len(data)})
        blobs[sha256(data)] = data
    for i in range(external_layers):
        data = random_blob(layer_size, seed=hash_seed(tag, "external", i))
        mt = MT_DOCKER_FOREIGN if docker else MT_OCI_LAYER_NONDIST
        digest = sha256(data)
        layer_descs.append({"mediaType": mt, "digest": digest, "size": len(data),
                            "urls": [f"{external_url}/{digest}"]})
        external[digest] = data
    config = make_config(platform, labels, created, [d["digest"] for d in layer_descs])
    config_desc = {"mediaType": MT_DOCKER_CONFIG if docker else MT_OCI_CONFIG,
                   "digest": sha256(config), "size": len(config)}
    blobs[config_desc["digest"]] = config
    media_type = MT_DOCKER_MANIFEST if docker else MT_OCI_MANIFEST
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type,
                           "config": config_desc, "layers": layer_descs}
    if annotations:
        doc["annotations"] = dict(annotations)
    return Image(media_type, _dump(doc), blobs, external, [], config_desc, layer_descs,
                 platform)


def build_index(
    platforms: Iterable[str] = ("linux/amd64", "linux/arm64"),
    *,
    docker: bool = False,
    seed: int = 0,
    children: list[Image] | None = None,
    annotations: dict[str, str] | None = None,
    **image_kw: Any,
) -> Image:
    """A multi-platform OCI index (or Docker manifest list with `docker=True`).

    Children are built with build_image(platform, docker=docker, seed=seed, **image_kw)
    unless `children` is given (then `platforms` is ignored).
    """
    if children is None:
        children = [build_image(p, docker=docker, seed=seed, **image_kw) for p in platforms]
    media_type = MT_DOCKER_LIST if docker else MT_OCI_INDEX
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type,
                           "manifests": [c.descriptor() for c in children]}
    if annotations:
        doc["annotations"] = dict(annotations)
    return Image(media_type, _dump(doc), {}, {}, list(children))


def build_artifact(
    subject: Image | None,
    artifact_type: str = "application/vnd.example.signature.v1",
    payload: bytes = b"signature payload",
    *,
    annotations: dict[str, str] | None = None,
    payload_media_type: str = "application/octet-stream",
) -> Image:
    """An OCI 1.1 artifact manifest (empty config, one payload layer, `artifactType`),
    with a `subject` pointing at `subject` (a referrer such as a signature or SBOM)."""
    empty = {"mediaType": MT_OCI_EMPTY, "digest": sha256(EMPTY_JSON), "size": 2}
    layer = {"mediaType": payload_media_type, "digest": sha256(payload), "size": len(payload)}
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                           "artifactType": artifact_type, "config": empty, "layers": [layer]}
    if subject is not None:
        doc["subject"] = subject.descriptor(with_platform=False)
    doc["annotations"] = dict(annotations or {"org.opencontainers.image.created":
                                              "2024-01-02T03:04:05Z"})
    return Image(MT_OCI_MANIFEST, _dump(doc), {empty["digest"]: EMPTY_JSON,
                                              layer["digest"]: payload},
                 {}, [], empty, [layer], "", subject, artifact_type)


def referrers_tag(digest: str) -> str:
    """The OCI 1.1 fallback tag for referrers of `digest` ("sha256-<hex>")."""
    return digest.replace(":", "-")


def build_referrers_index(artifacts: Iterable[Image]) -> Image:
    """The index a client pushes under referrers_tag(subject) when a registry lacks the
    referrers API: descriptors of the artifacts with artifactType and annotations.
    Its `children` are empty: the artifacts are pushed separately (by digest)."""
    entries = []
    for art in artifacts:
        desc = art.descriptor(with_platform=False)
        data = art.data
        if art.artifact_type:
            desc["artifactType"] = art.artifact_type
        if data.get("annotations"):
            desc["annotations"] = data["annotations"]
        entries.append(desc)
    doc = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": entries}
    return Image(MT_OCI_INDEX, _dump(doc))


def hash_seed(*parts: Any) -> int:
    """A stable integer seed from several parts (Python's hash() is randomised)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "big")


def _dump(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, indent=2).encode()


# ---------------------------------------------------------------- HTTP helpers


class _RegistrySession(requests.Session):
    """requests.Session that answers Bearer challenges the way registry clients do."""

    def __init__(self, auth: tuple[str, str] | None) -> None:
        super().__init__()
        # 2.8 answers 404 to an OCI manifest GET without a matching Accept (and rewrites
        # Docker v2 to schema 1 without one), so always accept every manifest type.
        self.headers["Accept"] = ACCEPT_ALL
        self._creds = auth
        self._tokens: dict[str, str] = {}  # scope -> token

    def request(self, method: str, url: str, **kw: Any) -> requests.Response:  # type: ignore[override]
        scope_key = _repo_of(url) or "*"
        headers = dict(kw.pop("headers", None) or {})
        token = self._tokens.get(f"{scope_key}:{_action(method)}")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        elif self._creds:
            kw.setdefault("auth", self._creds)
        data = kw.get("data")
        resp = super().request(method, url, headers=headers, **kw)
        challenge = resp.headers.get("WWW-Authenticate", "")
        # A generator body cannot be replayed: callers streaming should authenticate first.
        if resp.status_code != 401 or not challenge.lower().startswith("bearer"):
            return resp
        if data is not None and not isinstance(data, (bytes, str)):
            return resp
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        query = {"service": params.get("service", "")}
        if params.get("scope"):
            query["scope"] = params["scope"]
        tok = requests.get(params["realm"], params=query, auth=self._creds, timeout=30)
        if tok.status_code != 200:
            return resp
        body = tok.json()
        token = body.get("token") or body.get("access_token")
        self._tokens[f"{scope_key}:{_action(method)}"] = token
        kw.pop("auth", None)
        headers["Authorization"] = f"Bearer {token}"
        return super().request(method, url, headers=headers, **kw)


def _action(method: str) -> str:
    return "pull" if method.upper() in ("GET", "HEAD") else "push"


def _repo_of(url: str) -> str:
    m = re.search(r"/v2/(.+?)/(?:manifests|blobs|tags|referrers)/", url)
    return m.group(1) if m else ""


def session(auth: tuple[str, str] | None = None) -> requests.Session:
    """A session for talking to a test registry (Basic auth, or Bearer via the realm)."""
    return _RegistrySession(auth)


def _base(host: str) -> str:
    return host if host.startswith("http") else f"http://{host}"


def _check(resp: requests.Response, what: str) -> requests.Response:
    if resp.status_code >= 300:
        raise RuntimeError(f"{what}: HTTP {resp.status_code} {resp.text[:300]}")
    return resp


def blob_exists(host: str, repo: str, digest: str, auth: tuple[str, str] | None = None,
                sess: requests.Session | None = None) -> bool:
    sess = sess or session(auth)
    resp = sess.head(f"{_base(host)}/v2/{repo}/blobs/{digest}", timeout=30)
    return resp.status_code == 200


def get_blob(host: str, repo: str, digest: str, auth: tuple[str, str] | None = None) -> bytes:
    resp = session(auth).get(f"{_base(host)}/v2/{repo}/blobs/{digest}", timeout=60)
    return _check(resp, f"GET blob {repo}@{digest}").content


def _start_upload(sess: requests.Session, host: str, repo: str) -> str:
    url = f"{_base(host)}/v2/{repo}/blobs/uploads/"
    resp = _check(sess.post(url, timeout=30), f"POST upload {repo}")
    return urljoin(url, resp.headers["Location"])


def _with_digest(location: str, digest: str) -> str:
    return location + ("&" if "?" in location else "?") + f"digest={digest}"


def push_blob(host: str, repo: str, data: bytes, auth: tuple[str, str] | None = None,
              sess: requests.Session | None = None) -> str:
    """Monolithic upload (POST then PUT ?digest=); skipped when the blob already exists."""
    sess = sess or session(auth)
    digest = sha256(data)
    if blob_exists(host, repo, digest, sess=sess):
        return digest
    location = _start_upload(sess, host, repo)
    resp = sess.put(_with_digest(location, digest), data=data,
                    headers={"Content-Type": "application/octet-stream"}, timeout=120)
    _check(resp, f"PUT blob {repo}@{digest}")
    return digest


def push_blob_stream(host: str, repo: str, size: int, seed: int = 0,
                     auth: tuple[str, str] | None = None, chunk: int = DEFAULT_CHUNK) -> str:
    """Upload random_blob(size, seed) without holding it: the digest is computed in a first
    generation pass, then one streamed PUT sends the bytes. Returns the digest."""
    sess = session(auth)
    digest = stream_digest(size, seed)
    if blob_exists(host, repo, digest, sess=sess):
        return digest
    location = _start_upload(sess, host, repo)  # does the Bearer dance if needed
    headers = {"Content-Type": "application/octet-stream"}
    token = getattr(sess, "_tokens", {}).get(f"{repo}:push")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    resp = requests.put(_with_digest(location, digest), data=SizedStream(size, seed, chunk),
                        headers=headers, auth=None if token else auth, timeout=600)
    _check(resp, f"PUT streamed blob {repo}@{digest}")
    return digest


def push_manifest(host: str, repo: str, ref: str, raw: bytes, media_type: str,
                  auth: tuple[str, str] | None = None,
                  sess: requests.Session | None = None) -> requests.Response:
    sess = sess or session(auth)
    resp = sess.put(f"{_base(host)}/v2/{repo}/manifests/{ref}", data=raw,
                    headers={"Content-Type": media_type}, timeout=60)
    return _check(resp, f"PUT manifest {repo}:{ref}")


def push_image(host: str, repo: str, image: Image, tag: str | None = None,
               auth: tuple[str, str] | None = None, push_external: bool = False) -> str:
    """Push blobs, then child manifests by digest, then the top manifest by `tag` (or by
    digest when tag is None). Layers with `urls` are pushed only with push_external=True.
    Returns the top manifest's digest."""
    sess = session(auth)
    for m in image.all_manifests():
        blobs = dict(m.blobs)
        if push_external:
            blobs.update(m.external)
        for data in blobs.values():
            push_blob(host, repo, data, sess=sess)
    for m in image.all_manifests():
        ref = tag if (m is image and tag) else m.digest
        push_manifest(host, repo, ref, m.manifest, m.media_type, sess=sess)
    return image.digest


def get_manifest(host: str, repo: str, ref: str, auth: tuple[str, str] | None = None,
                 accept: str = ACCEPT_ALL) -> requests.Response:
    """GET a manifest; the Response is returned whatever the status."""
    return session(auth).get(f"{_base(host)}/v2/{repo}/manifests/{ref}",
                             headers={"Accept": accept}, timeout=60)


def head_manifest(host: str, repo: str, ref: str, auth: tuple[str, str] | None = None,
                  accept: str = ACCEPT_ALL) -> requests.Response:
    return session(auth).head(f"{_base(host)}/v2/{repo}/manifests/{ref}",
                              headers={"Accept": accept}, timeout=60)


def manifest_json(host: str, repo: str, ref: str,
                  auth: tuple[str, str] | None = None) -> dict[str, Any]:
    return _check(get_manifest(host, repo, ref, auth), f"GET manifest {repo}:{ref}").json()


def delete_manifest(host: str, repo: str, ref: str,
                    auth: tuple[str, str] | None = None) -> requests.Response:
    return session(auth).delete(f"{_base(host)}/v2/{repo}/manifests/{ref}", timeout=60)


def _paginate(sess: requests.Session, url: str, key: str) -> list[str]:
    out: list[str] = []
    while url:
        resp = sess.get(url, timeout=60)
        if resp.status_code == 404:
            return out
        _check(resp, f"GET {url}")
        out.extend(resp.json().get(key) or [])
        link = re.match(r'\s*<([^>]+)>\s*;\s*rel="?next"?', resp.headers.get("Link", ""))
        url = urljoin(url, link.group(1)) if link else ""
    return out


def list_tags(host: str, repo: str, auth: tuple[str, str] | None = None) -> list[str]:
    """All tags of `repo` ([] when the repository does not exist)."""
    return _paginate(session(auth), f"{_base(host)}/v2/{repo}/tags/list", "tags")


def list_catalog(host: str, auth: tuple[str, str] | None = None) -> list[str]:
    return _paginate(session(auth), f"{_base(host)}/v2/_catalog", "repositories")


# ---------------------------------------------------------------- OCI layout


def write_ocidir(path: str | os.PathLike[str], image: Image, tag: str | None = None,
                 include_external: bool = False) -> None:
    """Write `image` into an OCI image layout at `path` (created or merged into).

    index.json gets one entry for the top manifest, annotated with
    org.opencontainers.image.ref.name=`tag` when a tag is given (an existing entry with
    the same ref name is replaced)."""
    root = Path(path)
    blob_dir = root / "blobs" / "sha256"
    blob_dir.mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    content: dict[str, bytes] = {}
    for m in image.all_manifests():
        content[m.digest] = m.manifest
        content.update(m.blobs)
        if include_external:
            content.update(m.external)
    for digest, data in content.items():
        target = blob_dir / digest.split(":", 1)[1]
        if not target.exists():
            _atomic_write(target, data)
    index_path = root / "index.json"
    if index_path.exists():
        index = json.loads(index_path.read_text())
    else:
        index = {"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": []}
    entry = image.descriptor(with_platform=False)
    entries = index.get("manifests") or []
    if tag:
        entry["annotations"] = {REF_NAME: tag}
        entries = [e for e in entries if (e.get("annotations") or {}).get(REF_NAME) != tag]
    elif any(e.get("digest") == entry["digest"] and not e.get("annotations") for e in entries):
        entries = [e for e in entries
                   if not (e.get("digest") == entry["digest"] and not e.get("annotations"))]
    entries.append(entry)
    index["manifests"] = entries
    _atomic_write(index_path, json.dumps(index, indent=2).encode())


def _atomic_write(target: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, target)
