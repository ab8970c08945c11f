"""The image-building and pushing helpers against a real docker-registry."""

from __future__ import annotations

import hashlib
import json

import pytest
import requests

from tests.support import images as im
from tests.support.registry import start_registry


def _assert_pushed(host: str, repo: str, image: im.Image, ref: str, auth=None) -> None:
    resp = im.get_manifest(host, repo, ref, auth)
    assert resp.status_code == 200
    assert resp.content == image.manifest
    assert resp.headers["Docker-Content-Digest"] == image.digest
    assert resp.headers["Content-Type"] == image.media_type
    for m in image.all_manifests():
        assert im.get_manifest(host, repo, m.digest, auth).content == m.manifest
        for digest, data in m.blobs.items():
            assert im.get_blob(host, repo, digest, auth) == data


def test_random_blob_is_deterministic_and_streams_the_same_bytes():
    size = im.DEFAULT_CHUNK + 12345
    a = im.random_blob(size, seed=1)
    assert len(a) == size and a == im.random_blob(size, seed=1)
    assert a != im.random_blob(size, seed=2)
    assert b"".join(im.blob_stream(size, 1, chunk=4096)) == a
    assert im.stream_digest(size, 1) == "sha256:" + hashlib.sha256(a).hexdigest()
    assert im.random_blob(0) == b""


def test_make_config_looks_like_an_image_config():
    cfg = json.loads(im.make_config("linux/arm64/v8", {"a": "b"}, diff_ids=["sha256:" + "1" * 64]))
    assert (cfg["os"], cfg["architecture"], cfg["variant"]) == ("linux", "arm64", "v8")
    assert cfg["config"]["Labels"] == {"a": "b"}
    assert cfg["rootfs"] == {"type": "layers", "diff_ids": ["sha256:" + "1" * 64]}
    assert len(cfg["history"]) == 2 and cfg["created"]


@pytest.mark.parametrize("docker", [False, True])
def test_single_platform_image_round_trip(registry, repo, docker):
    image = im.build_image("linux/amd64", docker=docker, layers=3, labels={"x": "1"})
    assert image.media_type == (im.MT_DOCKER_MANIFEST if docker else im.MT_OCI_MANIFEST)
    assert len(image.layers) == 3 and len(image.blobs) == 4
    assert im.push_image(registry.host, repo, image, "v1") == image.digest
    _assert_pushed(registry.host, repo, image, "v1")
    assert im.list_tags(registry.host, repo) == ["v1"]
    config = json.loads(im.get_blob(registry.host, repo, image.config["digest"]))
    assert config["config"]["Labels"] == {"x": "1"}


@pytest.mark.parametrize("docker", [False, True])
def test_multi_platform_index_round_trip(registry, repo, docker):
    index = im.build_index(["linux/amd64", "linux/arm64", "linux/arm/v7"], docker=docker)
    assert index.media_type == (im.MT_DOCKER_LIST if docker else im.MT_OCI_INDEX)
    assert [c.platform for c in index.children] == ["linux/amd64", "linux/arm64", "linux/arm/v7"]
    assert index.data["manifests"][2]["platform"] == {"architecture": "arm", "os": "linux",
                                                       "variant": "v7"}
    im.push_image(registry.host, repo, index, "multi")
    _assert_pushed(registry.host, repo, index, "multi")
    assert index.child("linux/arm64").digest in {d["digest"] for d in index.data["manifests"]}


def test_images_sharing_layers(registry, repo):
    first = im.build_image(seed=1)
    second = im.build_image(seed=2, layers=1, shared_layers=first.layers_with_data())
    shared = {d["digest"] for d in first.layers}
    assert shared < {d["digest"] for d in second.layers}
    assert len(second.layers) == 3
    im.push_image(registry.host, repo, first, "one")
    im.push_image(registry.host, repo, second, "two")
    _assert_pushed(registry.host, repo, second, "two")


def test_external_layer_is_not_pushed():
    reg = start_registry(validation_disabled=True)  # 2.8 refuses urls otherwise
    try:
        image = im.build_image(external_layers=1, external_url="http://127.0.0.1:9/x")
        (ext_digest,) = image.external
        layer = image.layers[-1]
        assert layer["urls"] == [f"http://127.0.0.1:9/x/{ext_digest}"]
        assert layer["mediaType"] == im.MT_OCI_LAYER_NONDIST
        im.push_image(reg.host, "ext/img", image, "v1")
        assert im.get_manifest(reg.host, "ext/img", "v1").content == image.manifest
        assert not im.blob_exists(reg.host, "ext/img", ext_digest)
        docker = im.build_image(docker=True, external_layers=1, seed=5)
        assert docker.layers[-1]["mediaType"] == im.MT_DOCKER_FOREIGN
        im.push_image(reg.host, "ext/img", docker, "v2", push_external=True)
        assert im.blob_exists(reg.host, "ext/img", docker.layers[-1]["digest"])
    finally:
        reg.stop()


def test_artifact_with_subject(registry, repo):
    image = im.build_image()
    sig = im.build_artifact(image, "application/vnd.example.sig", b"sig",
                            annotations={"k": "v"})
    data = sig.data
    assert data["subject"] == {"mediaType": image.media_type, "digest": image.digest,
                               "size": image.size}
    assert data["artifactType"] == "application/vnd.example.sig"
    assert data["config"]["mediaType"] == im.MT_OCI_EMPTY and data["config"]["size"] == 2
    im.push_image(registry.host, repo, image, "v1")
    im.push_image(registry.host, repo, sig)
    _assert_pushed(registry.host, repo, sig, sig.digest)
    fallback = im.build_referrers_index([sig])
    entry = fallback.data["manifests"][0]
    assert entry["artifactType"] == "application/vnd.example.sig"
    assert entry["annotations"] == {"k": "v"}
    tag = im.referrers_tag(image.digest)
    assert tag == "sha256-" + image.digest.split(":")[1]
    im.push_image(registry.host, repo, fallback, tag)
    assert im.manifest_json(registry.host, repo, tag)["manifests"][0]["digest"] == sig.digest


def test_push_blob_stream_large(registry, repo):
    size = 3 * im.DEFAULT_CHUNK + 7
    digest = im.push_blob_stream(registry.host, repo, size, seed=9, chunk=256 * 1024)
    assert digest == im.sha256(im.random_blob(size, 9))
    resp = requests.head(f"{registry.url}/v2/{repo}/blobs/{digest}", timeout=10)
    assert resp.status_code == 200 and int(resp.headers["Content-Length"]) == size


def test_push_with_basic_auth(auth_registry, repo):
    creds = (auth_registry.user, auth_registry.password)
    image = im.build_image(seed=4)
    with pytest.raises(RuntimeError, match="401"):
        im.push_image(auth_registry.host, repo, image, "v1")
    im.push_image(auth_registry.host, repo, image, "v1", auth=creds)
    _assert_pushed(auth_registry.host, repo, image, "v1", creds)
    assert im.list_tags(auth_registry.host, repo, creds) == ["v1"]


def test_list_helpers_and_delete(registry, repo):
    image = im.build_image(seed=6)
    assert im.list_tags(registry.host, repo) == []
    im.push_image(registry.host, repo, image, "a")
    im.push_manifest(registry.host, repo, "b", image.manifest, image.media_type)
    assert sorted(im.list_tags(registry.host, repo)) == ["a", "b"]
    assert repo in im.list_catalog(registry.host)
    assert im.head_manifest(registry.host, repo, "a").headers["Docker-Content-Digest"] == image.digest
    assert im.delete_manifest(registry.host, repo, image.digest).status_code == 202
    assert im.list_tags(registry.host, repo) == []


def test_write_ocidir(tmp_path):
    index = im.build_index(seed=3)
    single = im.build_image(seed=8)
    im.write_ocidir(tmp_path, index, "v1")
    im.write_ocidir(tmp_path, single, "v2")
    im.write_ocidir(tmp_path, single, "v1")  # retag: v1 now names the single image
    assert json.loads((tmp_path / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    top = json.loads((tmp_path / "index.json").read_text())
    refs = {e["annotations"][im.REF_NAME]: e["digest"] for e in top["manifests"]}
    assert refs == {"v1": single.digest, "v2": single.digest}
    blobs = tmp_path / "blobs" / "sha256"
    expected = {d for m in index.all_manifests() for d in [m.digest, *m.blobs]}
    expected |= {single.digest, *single.blobs}
    assert {f"sha256:{p.name}" for p in blobs.iterdir()} == expected
    for path in blobs.iterdir():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name
