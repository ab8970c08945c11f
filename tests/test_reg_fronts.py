"""The registry scheme where plain docker-registry cannot produce the case: Bearer token
auth and rate limits (TokenAuthFront), injected faults (FaultFront), the referrers API,
paginated tag lists and DELETE by tag (MemRegistry); plus mirrors, pathPrefix, basic
auth and the request limits, against real registries behind those fronts."""

from __future__ import annotations

import logging
import threading
import time
from urllib.parse import quote

import pytest

from regbot.errors import (
    DigestMismatch,
    RateLimited,
    TooLarge,
    TransportError,
    Unauthorized,
    Unsupported,
)
from regbot.hosts import TLS_DISABLED, Host
from regbot.scheme.reg import fallback_tag
from regbot.types.descriptor import Descriptor
from regbot.types.manifest import MT_DOCKER_V1_SIGNED, MT_OCI_MANIFEST, Manifest
from regbot.types.ref import Reference
from tests.reg_helpers import make_scheme, plain, ref
from tests.support import images
from tests.support.fronts import FaultFront, TokenAuthFront
from tests.support.httpserver import ThreadedService
from tests.support.memregistry import MemRegistry

PASSWORD = "s3cret-Pa55"


@pytest.fixture
def faults(registry):
    front = FaultFront(registry)
    yield front
    front.stop()


def push_with(scheme, target: Reference, image: images.Image) -> None:
    for digest, data in image.blobs.items():
        scheme.blob_put(target, Descriptor("application/octet-stream", digest, len(data)), data)
    scheme.manifest_put(target, Manifest.from_bytes(image.manifest))


# --- Bearer tokens ---


def test_bearer_token_flow_cache_scopes_and_reauth(registry, repo, caplog):
    caplog.set_level(logging.DEBUG)
    with TokenAuthFront(registry, password=PASSWORD) as front:
        scheme = make_scheme([plain(front.host, user="alice", password=PASSWORD)])
        target = ref(front.host, repo, "v1")
        image = images.build_image(seed=30)
        push_with(scheme, target, image)
        # one token for the whole push: the union of pull and push
        assert front.token_requests == [(f"repository:{repo}:pull,push", "alice")]
        assert images.manifest_json(registry.host, repo, "v1") == image.data
        # reads reuse it (pull is covered by pull,push)
        assert scheme.manifest_get(target).digest == image.digest
        layer = image.layers[0]["digest"]
        assert scheme.blob_get(target, layer).read_all() == image.blobs[layer]
        assert len(front.token_requests) == 1
        # a mount asks for the source repository's pull too
        copy = ref(front.host, repo + "-copy")
        assert scheme.blob_mount(copy, target, layer) is True
        scopes, user = front.token_requests[-1]
        assert set(scopes.split()) == {f"repository:{repo}-copy:pull,push", f"repository:{repo}:pull"}
        # the registry forgets our tokens: one re-auth, then success
        asked = len(front.token_requests)
        with front._lock:
            front._tokens.clear()
        assert scheme.manifest_head(target).digest == image.digest
        assert len(front.token_requests) == asked + 1
        tokens = front.issued_tokens()
    assert tokens and not any(t in caplog.text for t in tokens)
    assert PASSWORD not in caplog.text


def test_bearer_anonymous_and_wrong_password(registry, repo):
    image = images.build_image(seed=31)
    images.push_image(registry.host, repo, image, tag="v1")
    with TokenAuthFront(registry, password=PASSWORD) as front:
        anonymous = make_scheme([plain(front.host)])
        target = ref(front.host, repo, "v1")
        assert anonymous.manifest_get(target).digest == image.digest  # anonymous pull token
        with pytest.raises(Unauthorized):
            anonymous.manifest_put(ref(front.host, repo, "v2"), Manifest.from_bytes(image.manifest))
        wrong = make_scheme([plain(front.host, user="alice", password="not-the-Pa55word")])
        with pytest.raises(Unauthorized) as info:
            wrong.manifest_get(target)
        assert "not-the-Pa55word" not in str(info.value) and info.value.status == 401


def test_ratelimit_headers_and_exhaustion(registry, repo):
    image = images.build_image(seed=32)
    images.push_image(registry.host, repo, image, tag="v1")
    with TokenAuthFront(registry, password=PASSWORD, rate_limit=3) as front:
        scheme = make_scheme([plain(front.host, user="alice", password=PASSWORD)], retries=2)
        target = ref(front.host, repo, "v1")
        got = scheme.manifest_get(target)
        rl = got.ratelimit
        assert (rl.set, rl.limit, rl.remain, rl.policies) == (True, 3, 2, ["3;w=21600"])
        assert scheme.ratelimit(target) == rl
        assert scheme.manifest_head(target).ratelimit.remain == 2  # HEAD does not count
        front.set_remaining(0)
        with pytest.raises(RateLimited) as info:
            scheme.manifest_get(target)
        assert info.value.status == 429 and info.value.code == "TOOMANYREQUESTS"
        assert scheme.ratelimit(target).remain == 0
        assert front.manifest_gets == 1 + 3  # retried (retries=2) before giving up



def test_repo_auth_keeps_auth_per_repository(registry, repo):
    image = images.build_image(seed=50)
    for name in (f"{repo}-a", f"{repo}-b"):
        images.push_image(registry.host, name, image, tag="v1")
    for repo_auth, expected in ((False, 1), (True, 2)):
        with TokenAuthFront(registry, password=PASSWORD) as front:
            scheme = make_scheme([plain(front.host, user="alice", password=PASSWORD, repo_auth=repo_auth)])
            scheme.manifest_head(ref(front.host, f"{repo}-a", "v1"))
            front.requests.clear()
            scheme.manifest_head(ref(front.host, f"{repo}-b", "v1"))
            # shared auth knows the challenge and fetches the token first; per-repository
            # auth starts anonymous again (401, token, retry)
            assert len([p for _, p in front.requests if p.startswith("/v2/")]) == expected


# --- faults ---


def test_5xx_then_success_and_persistent_5xx(faults, registry, repo):
    image = images.build_image(seed=33)
    images.push_image(registry.host, repo, image, tag="v1")
    scheme = make_scheme([plain(faults.host)], retries=2)
    target = ref(faults.host, repo, "v1")
    fault = faults.add("GET", "/manifests/", "status", times=2, status=503)
    assert scheme.manifest_get(target).digest == image.digest
    assert fault.hits == 2
    fault = faults.add("GET", "/manifests/", "status", times=-1, status=500)
    with pytest.raises(TransportError) as info:
        scheme.manifest_get(target)
    assert fault.hits == 3 and info.value.status == 500
    faults.clear()
    dropped = faults.add("HEAD", "/manifests/", "drop")
    assert scheme.manifest_head(target).digest == image.digest and dropped.hits == 1


def test_429_retry_after_is_honoured(faults, registry, repo):
    data = images.random_blob(2000, seed=34)
    digest = images.push_blob(registry.host, repo, data)
    scheme = make_scheme([plain(faults.host)])
    fault = faults.add("GET", "/blobs/", "retry_after", seconds=1)
    start = time.monotonic()
    assert scheme.blob_get(ref(faults.host, repo), digest).read_all() == data
    assert fault.hits == 1 and time.monotonic() - start >= 0.9


def test_truncated_blob_is_resumed_with_range(faults, registry, repo):
    data = images.random_blob(300_000, seed=35)
    digest = images.push_blob(registry.host, repo, data)
    scheme = make_scheme([plain(faults.host)])
    faults.add("GET", "/blobs/sha256:", "truncate", bytes=100_000)
    assert scheme.blob_get(ref(faults.host, repo), digest).read_all() == data
    assert [m for m, p in faults.requests if "/blobs/" in p] == ["GET", "GET"]
    faults.add("GET", "/blobs/sha256:", "truncate", times=-1, bytes=10)
    with pytest.raises(TransportError, match="ended after"):
        scheme.blob_get(ref(faults.host, repo), digest).read_all()


def test_corrupt_blob_never_completes(faults, registry, repo):
    data = images.random_blob(600_000, seed=36)
    digest = images.push_blob(registry.host, repo, data)
    scheme = make_scheme([plain(faults.host)])
    faults.add("GET", "/blobs/sha256:", "corrupt", offset=599_000)
    received = 0
    with pytest.raises(DigestMismatch, match="content has digest"):
        for chunk in scheme.blob_get(ref(faults.host, repo), digest):
            received += len(chunk)
    assert received < len(data)  # the last chunk was withheld


def test_wrong_manifest_digest_is_detected(faults, registry, repo):
    image = images.build_image(seed=37)
    images.push_image(registry.host, repo, image, tag="v1")
    scheme = make_scheme([plain(faults.host)])
    faults.add("GET", f"/manifests/{image.digest}", "corrupt", offset=10)
    with pytest.raises(DigestMismatch, match="sent content"):
        scheme.manifest_get(Reference.parse(f"{faults.host}/{repo}@{image.digest}"))
    faults.add("GET", "/manifests/v1", "corrupt", offset=10)
    with pytest.raises(DigestMismatch, match="differs"):
        scheme.manifest_get(ref(faults.host, repo, "v1"))


def test_request_slots_limit_concurrency_and_rate(faults, registry, repo):
    digest = images.push_blob(registry.host, repo, b"slot test")
    scheme = make_scheme([plain(faults.host, req_concurrent=1)])
    faults.add("HEAD", "/blobs/", "delay", times=-1, seconds=0.15)
    faults.reset_gauge()
    threads = [threading.Thread(target=scheme.blob_head, args=(ref(faults.host, repo), digest)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert faults.max_concurrent == 1 and faults.hits("delay") == 4
    faults.clear()
    paced = make_scheme([plain(faults.host, req_per_sec=20)])
    start = time.monotonic()
    for _ in range(6):
        paced.blob_head(ref(faults.host, repo), digest)
    assert time.monotonic() - start >= 0.2


# --- MemRegistry: referrers API, pagination, DELETE by tag ---


class PagedMemRegistry(MemRegistry):
    """Pages tag lists by 2 even without `n`, and the referrers API one entry a page
    without applying the artifactType filter (a registry that leaves it to clients)."""

    def _page(self, h, items, path):
        n = int(h.query.get("n") or 2)
        last = h.query.get("last", "")
        items = [i for i in items if i > last] if last else items
        page, headers = items[:n], {}
        if len(items) > n:
            headers["Link"] = f'<{path}?n={n}&last={quote(page[-1], safe="")}>; rel="next"'
        return page, headers

    def _referrers_get(self, h, name, ref):
        import json

        start = int(h.query.get("page") or 0)
        entries = []
        for digest, (media_type, raw) in sorted(self.manifests.get(name, {}).items()):
            doc = json.loads(raw)
            if (doc.get("subject") or {}).get("digest") == ref:
                entries.append({"mediaType": media_type, "digest": digest, "size": len(raw),
                                "artifactType": doc.get("artifactType", "")})
        headers = {"Content-Type": "application/vnd.oci.image.index.v1+json"}
        if start + 1 < len(entries):
            headers["Link"] = f'</v2/{name}/referrers/{ref}?page={start + 1}>; rel="next"'
        h.send_json(200, {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                          "manifests": entries[start:start + 1]}, headers)


def push_artifacts(host: str, repo: str, subject: images.Image, kinds: list[str]) -> list[images.Image]:
    out = []
    for i, kind in enumerate(kinds):
        artifact = images.build_artifact(subject, kind, f"payload {i}".encode())
        images.push_image(host, repo, artifact)
        out.append(artifact)
    return out


def test_referrers_api_with_artifact_type_filter(repo):
    with MemRegistry() as mem:
        scheme = make_scheme([plain(mem.host)])
        subject = images.build_image(seed=38)
        images.push_image(mem.host, repo, subject, tag="v1")
        sig, sbom = push_artifacts(mem.host, repo, subject, ["application/vnd.example.sig",
                                                             "application/vnd.example.sbom"])
        target = ref(mem.host, repo, "v1")
        assert {d.digest for d in scheme.referrers(target)} == {sig.digest, sbom.digest}
        only = scheme.referrers(target, "application/vnd.example.sbom")
        assert [(d.digest, d.artifact_type) for d in only] == [(sbom.digest, "application/vnd.example.sbom")]
        assert any("artifactType=" in p for _, p in mem.requests)
        # A registry with the API answers OCI-Subject: no fallback tag is written.
        third = images.build_artifact(subject, "application/vnd.example.att", b"att")
        for data in third.blobs.values():
            images.push_blob(mem.host, repo, data)
        scheme.manifest_put(Reference.parse(f"{mem.host}/{repo}@{third.digest}"), Manifest.from_bytes(third.manifest))
        assert fallback_tag(subject.digest) not in mem.tags.get(repo, {})
        assert len(scheme.referrers(target)) == 3


def test_referrers_pages_and_client_side_filter(repo):
    with PagedMemRegistry() as mem:
        scheme = make_scheme([plain(mem.host)])
        subject = images.build_image(seed=39)
        images.push_image(mem.host, repo, subject, tag="v1")
        made = push_artifacts(mem.host, repo, subject, ["a/x", "a/y", "a/x"])
        target = ref(mem.host, repo, "v1")
        assert sorted(d.digest for d in scheme.referrers(target)) == sorted(a.digest for a in made)
        assert sorted(d.digest for d in scheme.referrers(target, "a/x")) == sorted(
            a.digest for a in made if a.artifact_type == "a/x")


def test_referrers_fallback_when_api_absent(repo):
    with MemRegistry(referrers_api=False) as mem:
        scheme = make_scheme([plain(mem.host)])
        subject = images.build_image(seed=40)
        images.push_image(mem.host, repo, subject, tag="v1")
        artifact = images.build_artifact(subject, "application/vnd.example.sig", b"s")
        for data in artifact.blobs.values():
            images.push_blob(mem.host, repo, data)
        scheme.manifest_put(Reference.parse(f"{mem.host}/{repo}@{artifact.digest}"), Manifest.from_bytes(artifact.manifest))
        assert fallback_tag(subject.digest) in mem.tags[repo]
        assert [d.digest for d in scheme.referrers(ref(mem.host, repo, "v1"))] == [artifact.digest]


def test_tag_list_follows_link_pages(repo):
    with PagedMemRegistry() as mem:
        image = images.build_image(seed=41)
        tags = ["t1", "t2", "t3", "t4", "t5"]
        for tag in tags:
            images.push_image(mem.host, repo, image, tag=tag)
        scheme = make_scheme([plain(mem.host)])
        target = ref(mem.host, repo)
        assert scheme.tag_list(target) == tags
        assert sum(1 for _, p in mem.requests if "/tags/list" in p) == 3
        assert scheme.tag_list(target, limit=3) == ["t1", "t2", "t3"]
        assert scheme.tag_list(target, last="t2") == ["t3", "t4", "t5"]
        assert scheme.tag_list(target, limit=1, last="t4") == ["t5"]


def test_tag_delete_by_tag_where_supported_and_unsupported_delete(repo):
    with MemRegistry() as mem:
        image = images.build_image(seed=42)
        images.push_image(mem.host, repo, image, tag="a")
        images.push_image(mem.host, repo, image, tag="b")
        scheme = make_scheme([plain(mem.host)])
        mem.requests.clear()
        scheme.tag_delete(ref(mem.host, repo, "a"))
        assert [m for m, _ in mem.requests] == ["DELETE"] and sorted(mem.tags[repo]) == ["b"]
    with MemRegistry(delete=False) as mem:
        images.push_image(mem.host, repo, image, tag="a")
        scheme = make_scheme([plain(mem.host)])
        with pytest.raises(Unsupported) as info:
            scheme.tag_delete(ref(mem.host, repo, "a"))
        assert info.value.status == 405 and info.value.code == "UNSUPPORTED"


# --- hosts: mirrors, pathPrefix, basic auth ---


def test_mirrors_serve_reads_writes_go_upstream(registry, registry2, repo):
    upstream, high, low = FaultFront(registry), FaultFront(registry2), MemRegistry()
    try:
        hosts = [
            plain(upstream.host, mirrors=["low.test", "high.test"]),
            Host("high.test", hostname=high.host, tls=TLS_DISABLED, priority=5),
            Host("low.test", hostname=low.host, tls=TLS_DISABLED, priority=1),
        ]
        scheme = make_scheme(hosts, retries=3, backoff_base=1.0)
        mirrored, low_only, upstream_only = (images.build_image(seed=s) for s in (43, 44, 45))
        images.push_image(registry2.host, repo, mirrored, tag="m")
        images.push_image(low.host, repo, low_only, tag="l")
        images.push_image(registry.host, repo, upstream_only, tag="u")
        low.requests.clear()
        assert scheme.manifest_get(ref(upstream.host, repo, "m")).digest == mirrored.digest
        layer = mirrored.layers[0]["digest"]
        assert scheme.blob_get(ref(upstream.host, repo), layer).read_all() == mirrored.blobs[layer]
        assert scheme.tag_list(ref(upstream.host, repo)) == ["m"]  # the mirror's answer
        assert upstream.requests == [] and low.requests == []
        assert scheme.manifest_get(ref(upstream.host, repo, "l")).digest == low_only.digest
        assert scheme.manifest_head(ref(upstream.host, repo, "u")).digest == upstream_only.digest
        assert any(f"ns={quote(upstream.host, safe='')}" in p for _, p in high.requests)
        # writes never go to mirrors
        high.requests.clear()
        low.requests.clear()
        push_with(scheme, ref(upstream.host, repo, "new"), images.build_image(seed=46))
        assert high.requests == [] and low.requests == []
        assert "new" in images.list_tags(registry.host, repo)
        # a mirror that is down costs one attempt (no retries, no backoff sleep), then it
        # is skipped while it backs off
        high.stop()
        start = time.monotonic()
        assert scheme.manifest_get(ref(upstream.host, repo, "u")).digest == upstream_only.digest
        assert scheme.manifest_get(ref(upstream.host, repo, "l")).digest == low_only.digest
        assert time.monotonic() - start < 0.8
    finally:
        upstream.stop()
        high.stop()
        low.stop()


def test_path_prefix(registry, repo):
    scheme = make_scheme([Host("prefixed.test", hostname=registry.host, tls=TLS_DISABLED,
                               path_prefix="/mirror/base/")])
    image = images.build_image(seed=47)
    target = Reference.parse(f"prefixed.test/{repo}:v1")
    push_with(scheme, target, image)
    assert images.manifest_json(registry.host, f"mirror/base/{repo}", "v1") == image.data
    assert scheme.manifest_get(target).digest == image.digest
    assert scheme.tag_list(target) == ["v1"]
    layer = image.layers[0]["digest"]
    assert scheme.blob_mount(Reference.parse(f"prefixed.test/{repo}-two:v1"), target, layer)
    assert images.blob_exists(registry.host, f"mirror/base/{repo}-two", layer)
    assert f"mirror/base/{repo}" in scheme.repo_list(target)  # the catalog is not prefixed


def test_basic_auth_roundtrip(auth_registry, repo):
    scheme = make_scheme([plain(auth_registry.host, user="alice", password=auth_registry.password)])
    image = images.build_image(seed=48)
    target = ref(auth_registry.host, repo, "v1")
    push_with(scheme, target, image)
    assert scheme.manifest_get(target).digest == image.digest
    assert scheme.tag_list(target) == ["v1"]
    scheme.tag_delete(target)
    assert scheme.tag_list(target) == []


# --- small fakes for what no registry here produces ---


class RelativeUploads(MemRegistry):
    """Upload Locations that are relative and change at every step, and a minimum chunk
    size announced with OCI-Chunk-Min-Length."""

    def __init__(self) -> None:
        self.step = 0
        super().__init__()

    def _upload_headers(self, h, name, upload_id):
        headers = super()._upload_headers(h, name, upload_id)
        self.step += 1
        headers["Location"] = f"/v2/{name}/blobs/uploads/{upload_id}?step={self.step}"
        headers["OCI-Chunk-Min-Length"] = "20000"
        return headers


def test_chunked_upload_follows_relative_locations_and_min_chunk(repo):
    with RelativeUploads() as mem:
        scheme = make_scheme([plain(mem.host, blob_max=1000, blob_chunk=4096)])
        data = images.random_blob(50_000, seed=49)
        stored = scheme.blob_put(ref(mem.host, repo), Descriptor("x", images.sha256(data), len(data)), data)
        assert stored.digest == images.sha256(data) and mem.blobs[stored.digest] == data
        uploads = [(m, p) for m, p in mem.requests if "/blobs/uploads/" in p]
        assert [m for m, _ in uploads] == ["POST", "PATCH", "PATCH", "PATCH", "PUT"]  # 20000-byte chunks
        assert [p.split("step=")[1][:1] for _, p in uploads[1:]] == ["1", "2", "3", "4"]
        assert f"digest={quote(stored.digest, safe='')}" in uploads[-1][1]


def _v1_signed() -> tuple[bytes, str]:
    """A Docker schema 1 signed manifest and its digest (over the signed payload)."""
    import base64
    import json

    def b64url(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    payload = json.dumps({
        "schemaVersion": 1, "name": "lib/app", "tag": "v1", "architecture": "amd64",
        "fsLayers": [{"blobSum": "sha256:" + "5" * 64}, {"blobSum": "sha256:" + "6" * 64}],
        "history": [{"v1Compatibility": "{}"}, {"v1Compatibility": "{}"}],
    }, indent=3).encode()
    cut = len(payload) - 2  # before the closing "\n}"
    protected = b64url(json.dumps({"formatLength": cut, "formatTail": b64url(payload[cut:])}).encode())
    signed = (payload[:cut] + b',\n   "signatures": [{"header": {"alg": "ES256"}, "signature": "c2ln",'
              b' "protected": "' + protected.encode() + b'"}]' + payload[cut:])
    return signed, images.sha256(payload)


class StaticManifests(ThreadedService):
    """Serves fixed manifest answers: path -> (headers, body)."""

    def __init__(self, answers) -> None:
        self.answers = answers
        self.written = 0
        super().__init__()

    def handle(self, h) -> None:
        found = self.answers.get(h.route)
        if found is None:
            h.send_error_oci(404, "MANIFEST_UNKNOWN", "manifest unknown")
            return
        headers, body = found
        if callable(body):  # stream without Content-Length until the client hangs up
            h.start_chunked(200, list(headers.items()))
            try:
                for chunk in body():
                    h.write_chunk(chunk)
                    self.written += len(chunk)
                h.end_chunked()
            except OSError:
                h.abort()
            return
        h.send(200, headers, body)


def test_docker_v1_signed_manifest_is_read(repo):
    raw, digest = _v1_signed()
    headers = {"Content-Type": MT_DOCKER_V1_SIGNED, "Docker-Content-Digest": digest}
    with StaticManifests({f"/v2/{repo}/manifests/v1": (headers, raw),
                          f"/v2/{repo}/manifests/{digest}": (headers, raw)}) as srv:
        scheme = make_scheme([plain(srv.host)])
        got = scheme.manifest_get(ref(srv.host, repo, "v1"))
        assert (got.media_type, got.digest, got.raw) == (MT_DOCKER_V1_SIGNED, digest, raw)
        assert [layer.digest for layer in got.layers] == ["sha256:" + "6" * 64, "sha256:" + "5" * 64]
        assert scheme.manifest_get(Reference.parse(f"{srv.host}/{repo}@{digest}")).digest == digest


def test_oversized_manifest_is_refused_without_reading_it(repo):
    big = b"x" * (5 * 1024 * 1024)

    def endless():
        for _ in range(1024):  # 64 MiB at most
            yield b" " * 65536

    with StaticManifests({
        f"/v2/{repo}/manifests/sized": ({"Content-Type": MT_OCI_MANIFEST}, big),
        f"/v2/{repo}/manifests/streamed": ({"Content-Type": MT_OCI_MANIFEST}, endless),
    }) as srv:
        scheme = make_scheme([plain(srv.host)])
        with pytest.raises(TooLarge, match="limit"):
            scheme.manifest_get(ref(srv.host, repo, "sized"))
        with pytest.raises(TooLarge, match="limit"):
            scheme.manifest_get(ref(srv.host, repo, "streamed"))
        time.sleep(0.2)
        assert srv.written < 32 * 1024 * 1024  # the client stopped reading early
