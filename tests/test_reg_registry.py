"""The registry scheme against real docker-registry 2.8 processes: every API call, both
upload modes, mounts, pagination, tag delete, the referrers fallback, errors."""

from __future__ import annotations

import json
import threading

import pytest

from regbot.errors import DigestMismatch, NotFound, RegistryError, TooLarge
from regbot.scheme.reg import fallback_tag
from regbot.types.descriptor import Descriptor
from regbot.types.manifest import (
    MT_DOCKER_LIST,
    MT_DOCKER_MANIFEST,
    MT_OCI_INDEX,
    MT_OCI_MANIFEST,
    Manifest,
)
from regbot.types.ref import Reference
from tests.reg_helpers import make_scheme, plain, ref
from tests.support import images
from tests.support.fronts import FaultFront
from tests.support.registry import start_registry


@pytest.fixture
def scheme(registry):
    return make_scheme([plain(registry.host)])


@pytest.fixture
def counted(registry):
    """A pass-through front that records requests, and a scheme speaking through it."""
    front = FaultFront(registry)
    yield front
    front.stop()


def test_ping(scheme, registry):
    scheme.ping(ref(registry.host, "any/repo"))


def test_manifest_get_head_by_tag_and_digest(scheme, registry, repo):
    index = images.build_index(seed=1)
    images.push_image(registry.host, repo, index, tag="v1")
    docker_list = images.build_index(docker=True, seed=2)
    images.push_image(registry.host, repo, docker_list, tag="docker")

    got = scheme.manifest_get(ref(registry.host, repo, "v1"))
    assert (got.media_type, got.digest, got.size, got.raw) == (MT_OCI_INDEX, index.digest, index.size, index.manifest)
    assert [d.digest for d in got.manifests] == [c.digest for c in index.children]
    head = scheme.manifest_head(ref(registry.host, repo, "v1"))
    assert (head.media_type, head.digest, head.size, head.raw) == (MT_OCI_INDEX, index.digest, index.size, b"")
    child = index.children[0]
    by_digest = scheme.manifest_get(Reference.parse(f"{registry.host}/{repo}@{child.digest}"))
    assert by_digest.media_type == MT_OCI_MANIFEST and by_digest.raw == child.manifest
    assert scheme.manifest_head(Reference.parse(f"{registry.host}/{repo}@{child.digest}")).digest == child.digest
    assert scheme.manifest_get(ref(registry.host, repo, "docker")).media_type == MT_DOCKER_LIST
    assert not scheme.ratelimit(ref(registry.host, repo)).set


@pytest.mark.parametrize("docker", [False, True], ids=["oci", "docker"])
def test_manifest_put_by_tag_and_digest_then_delete(scheme, registry, repo, docker):
    image = images.build_image(seed=3, docker=docker)
    target = ref(registry.host, repo, "pushed")
    for digest, data in image.blobs.items():
        scheme.blob_put(target, Descriptor("application/octet-stream", digest, len(data)), data)
    manifest = Manifest.from_bytes(image.manifest)
    assert manifest.media_type == (MT_DOCKER_MANIFEST if docker else MT_OCI_MANIFEST)
    scheme.manifest_put(target, manifest)
    assert images.get_manifest(registry.host, repo, "pushed").content == image.manifest
    got = scheme.manifest_get(target)
    assert (got.media_type, got.digest) == (manifest.media_type, image.digest)
    untagged = Reference.parse(f"{registry.host}/{repo}@{image.digest}")
    scheme.manifest_put(untagged, manifest)
    with pytest.raises(DigestMismatch):
        scheme.manifest_put(Reference.parse(f"{registry.host}/{repo}@sha256:{'0' * 64}"), manifest)
    # delete by a tag-only reference: resolved by HEAD, deleted by digest
    scheme.manifest_delete(target)
    assert images.head_manifest(registry.host, repo, image.digest).status_code == 404
    with pytest.raises(NotFound) as info:
        scheme.manifest_get(target)
    err = info.value
    assert err.status == 404 and err.code == "MANIFEST_UNKNOWN" and f"{repo}:pushed" in str(err)


def test_manifest_errors(scheme, registry, repo):
    with pytest.raises(RegistryError, match="HEAD"):
        scheme.manifest_put(ref(registry.host, repo), Manifest(MT_OCI_MANIFEST, "sha256:" + "1" * 64, 2))
    raw = json.dumps({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": [],
                      "annotations": {"pad": "x" * (4 * 1024 * 1024)}}).encode()
    big = Manifest(MT_OCI_INDEX, images.sha256(raw), len(raw), raw)  # from_bytes refuses it
    with pytest.raises(TooLarge):
        scheme.manifest_put(ref(registry.host, repo), big)
    with pytest.raises(NotFound) as info:
        scheme.manifest_head(ref(registry.host, repo, "missing"))
    assert info.value.status == 404
    with pytest.raises(NotFound):
        scheme.manifest_delete(ref(registry.host, repo, "missing"))


def test_blob_head_get_and_limits(registry, repo):
    scheme = make_scheme([plain(registry.host)], blob_limit=1000)
    data = images.random_blob(900, seed=5)
    digest = images.push_blob(registry.host, repo, data)
    target = ref(registry.host, repo)
    assert scheme.blob_head(target, digest).size == 900
    with scheme.blob_get(target, digest) as reader:
        assert reader.descriptor.size == 900
        assert b"".join(reader) == data
    assert scheme.blob_get(target, digest, 900).read_all() == data
    with pytest.raises(DigestMismatch):
        scheme.blob_get(target, digest, 901)
    big = images.push_blob(registry.host, repo, images.random_blob(1001, seed=6))
    with pytest.raises(TooLarge):
        scheme.blob_get(target, big)
    with pytest.raises(TooLarge):
        scheme.blob_put(target, Descriptor("x", big, 1001), images.random_blob(1001, seed=6))
    missing = "sha256:" + "2" * 64
    with pytest.raises(NotFound) as info:
        scheme.blob_get(target, missing)
    assert info.value.code == "BLOB_UNKNOWN" and missing in str(info.value)
    with pytest.raises(NotFound):
        scheme.blob_head(target, missing)


def test_monolithic_upload_streams_a_callable_source(counted, registry, repo):
    scheme = make_scheme([plain(counted.host)])
    size = 3 * 1024 * 1024 + 17
    digest = images.stream_digest(size, seed=7)
    opened = []

    def source():
        opened.append(1)
        return images.blob_stream(size, seed=7, chunk=256 * 1024)

    stored = scheme.blob_put(ref(counted.host, repo), Descriptor("application/vnd.oci.image.layer.v1.tar", digest, size), source)
    assert (stored.digest, stored.size) == (digest, size)
    assert stored.media_type == "application/vnd.oci.image.layer.v1.tar"
    assert images.blob_exists(registry.host, repo, digest)
    methods = [m for m, p in counted.requests if "/blobs/uploads/" in p]
    assert methods == ["POST", "PUT"] and opened == [1]


def test_chunked_upload(counted, registry, repo):
    scheme = make_scheme([plain(counted.host, blob_max=10_000, blob_chunk=4096)])
    data = images.random_blob(50_000, seed=8)
    digest = images.sha256(data)
    stored = scheme.blob_put(ref(counted.host, repo), Descriptor("x", digest, len(data)),
                             lambda: iter([data[:1000], data[1000:30_000], data[30_000:]]))
    assert stored.digest == digest and stored.size == len(data)
    assert images.get_blob(registry.host, repo, digest) == data
    methods = [m for m, p in counted.requests if "/blobs/uploads/" in p]
    assert methods == ["POST"] + ["PATCH"] * 13 + ["PUT"]
    # Small blobs stay monolithic; blob_max -1 never chunks.
    counted.requests.clear()
    small = images.random_blob(9_000, seed=9)
    scheme.blob_put(ref(counted.host, repo), Descriptor("x", images.sha256(small), len(small)), small)
    assert [m for m, p in counted.requests if "/blobs/uploads/" in p] == ["POST", "PUT"]


def test_upload_of_unknown_size_or_digest_goes_chunked(scheme, registry, repo):
    data = images.random_blob(5000, seed=10)
    stored = scheme.blob_put(ref(registry.host, repo), Descriptor("x", "", -1), lambda: iter([data]))
    assert stored.digest == images.sha256(data) and stored.size == 5000
    assert images.get_blob(registry.host, repo, stored.digest) == data


@pytest.mark.parametrize("blob_max", [-1, 100], ids=["monolithic", "chunked"])
def test_upload_digest_or_size_mismatch_cancels(counted, registry, repo, blob_max):
    scheme = make_scheme([plain(counted.host, blob_max=blob_max, blob_chunk=256)])
    data = images.random_blob(1000, seed=11)
    wrong = "sha256:" + "3" * 64
    with pytest.raises(DigestMismatch, match="digest"):
        scheme.blob_put(ref(counted.host, repo), Descriptor("x", wrong, len(data)), data)
    assert counted.requests[-1][0] == "DELETE" and "/blobs/uploads/" in counted.requests[-1][1]
    assert not images.blob_exists(registry.host, repo, wrong)
    with pytest.raises(DigestMismatch, match="bytes"):
        scheme.blob_put(ref(counted.host, repo), Descriptor("x", images.sha256(data), 999), data)
    assert counted.requests[-1][0] == "DELETE"
    assert not images.blob_exists(registry.host, repo, images.sha256(data))


def test_mount_and_refused_mount(counted, registry, repo):
    scheme = make_scheme([plain(counted.host)])
    data = images.random_blob(700, seed=12)
    digest = images.push_blob(registry.host, repo, data)
    source = ref(counted.host, repo)
    target = ref(counted.host, repo + "-copy")
    assert scheme.blob_mount(target, source, digest) is True
    assert images.blob_exists(registry.host, repo + "-copy", digest)
    counted.requests.clear()
    assert scheme.blob_mount(target, source, "sha256:" + "4" * 64) is False
    assert [m for m, _ in counted.requests] == ["POST", "DELETE"]  # the opened session was closed
    assert scheme.blob_mount(target, ref("other.test", repo), digest) is False


def test_tag_list_limit_and_last_client_side(scheme, registry, repo):
    image = images.build_image(seed=13)
    tags = ["b", "latest", "9", "B", "c", "10", "a"]
    for tag in tags:
        images.push_image(registry.host, repo, image, tag=tag)
    target = ref(registry.host, repo)
    assert sorted(scheme.tag_list(target)) == sorted(tags)
    # docker-registry 2.8 ignores n and last: the client still honours them (lexical order)
    assert scheme.tag_list(target, limit=3) == ["10", "9", "B"]
    assert scheme.tag_list(target, last="B") == ["a", "b", "c", "latest"]
    assert scheme.tag_list(target, limit=2, last="a") == ["b", "c"]
    with pytest.raises(NotFound) as info:
        scheme.tag_list(ref(registry.host, repo + "-none"))
    assert info.value.code == "NAME_UNKNOWN"


def test_catalog_pagination():
    reg = start_registry(extra="catalog:\n  maxentries: 2\n")
    try:
        names = [f"cat/r{i}" for i in range(5)]
        for name in names:
            images.push_blob(reg.host, name, b"{}")
        scheme = make_scheme([plain(reg.host)])
        target = ref(reg.host, "cat/r0")
        assert scheme.repo_list(target) == names  # followed Link to the end
        assert scheme.repo_list(target, limit=3) == names[:3]
        assert scheme.repo_list(target, last="cat/r1") == names[2:]
        assert scheme.repo_list(target, limit=1, last="cat/r3") == ["cat/r4"]
    finally:
        reg.stop()


def test_tag_delete_keeps_sibling_tags(counted, registry, repo):
    scheme = make_scheme([plain(counted.host)])
    image = images.build_image(seed=14)
    images.push_image(registry.host, repo, image, tag="old")
    images.push_image(registry.host, repo, image, tag="sibling")
    scheme.tag_delete(ref(counted.host, repo, "old"))
    assert images.list_tags(registry.host, repo) == ["sibling"]
    assert images.head_manifest(registry.host, repo, "sibling").headers["Docker-Content-Digest"] == image.digest
    assert images.head_manifest(registry.host, repo, image.digest).status_code == 200
    # 2.8 refused DELETE by tag (400), so a throw-away manifest replaced the tag
    methods = [(m, p.split("?")[0].rsplit("/", 2)[-2]) for m, p in counted.requests]
    assert ("DELETE", "manifests") in methods and ("PUT", "manifests") in methods
    with pytest.raises(NotFound):
        scheme.tag_delete(ref(counted.host, repo, "never-was"))


def test_referrers_fallback_tag_on_registry_without_api(scheme, registry, repo):
    subject = images.build_image(seed=15)
    images.push_image(registry.host, repo, subject, tag="v1")
    target = ref(registry.host, repo, "v1")
    assert scheme.referrers(target) == []
    signature = images.build_artifact(subject, "application/vnd.example.sig", b"sig",
                                      annotations={"who": "me"})
    sbom = images.build_artifact(subject, "application/vnd.example.sbom", b"sbom")
    for artifact in (signature, sbom):
        for data in artifact.blobs.values():
            images.push_blob(registry.host, repo, data)
        scheme.manifest_put(Reference.parse(f"{registry.host}/{repo}@{artifact.digest}"),
                            Manifest.from_bytes(artifact.manifest))
    index = images.manifest_json(registry.host, repo, fallback_tag(subject.digest))
    assert index["mediaType"] == MT_OCI_INDEX
    assert index["manifests"][0] == {
        "mediaType": MT_OCI_MANIFEST, "digest": signature.digest, "size": signature.size,
        "artifactType": "application/vnd.example.sig", "annotations": {"who": "me"},
    }
    found = scheme.referrers(target)
    assert [d.digest for d in found] == [signature.digest, sbom.digest]
    assert [d.digest for d in scheme.referrers(target, "application/vnd.example.sbom")] == [sbom.digest]
    by_digest = Reference.parse(f"{registry.host}/{repo}@{subject.digest}")
    assert len(scheme.referrers(by_digest)) == 2
    # pushing the same referrer again does not duplicate it
    scheme.manifest_put(Reference.parse(f"{registry.host}/{repo}@{sbom.digest}"), Manifest.from_bytes(sbom.manifest))
    assert len(images.manifest_json(registry.host, repo, fallback_tag(subject.digest))["manifests"]) == 2


def test_referrers_fallback_concurrent_pushes_lose_nothing(registry, repo):
    scheme = make_scheme([plain(registry.host)])
    subject = images.build_image(seed=16)
    images.push_image(registry.host, repo, subject, tag="v1")
    artifacts = [images.build_artifact(subject, f"application/vnd.example.t{i}", f"p{i}".encode())
                 for i in range(6)]
    for artifact in artifacts:
        for data in artifact.blobs.values():
            images.push_blob(registry.host, repo, data)
    errors = []

    def push(artifact):
        try:
            scheme.manifest_put(Reference.parse(f"{registry.host}/{repo}@{artifact.digest}"),
                                Manifest.from_bytes(artifact.manifest))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=push, args=(a,)) for a in artifacts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    index = images.manifest_json(registry.host, repo, fallback_tag(subject.digest))
    assert sorted(d["digest"] for d in index["manifests"]) == sorted(a.digest for a in artifacts)

