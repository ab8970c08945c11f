"""MemRegistry flows, and the docker-registry 2.8 facts recorded in memregistry.py."""

from __future__ import annotations

import pytest
import requests

from tests.support import images as im
from tests.support.memregistry import MemRegistry

ACCEPT = {"Accept": im.ACCEPT_ALL}


def test_push_pull_every_kind(mem_registry):
    host = mem_registry.host
    for tag, image in [("oci", im.build_image()), ("docker", im.build_image(docker=True)),
                       ("index", im.build_index(seed=2)),
                       ("list", im.build_index(docker=True, seed=3))]:
        im.push_image(host, "a/b", image, tag)
        resp = im.get_manifest(host, "a/b", tag)
        assert resp.status_code == 200 and resp.content == image.manifest
        assert resp.headers["Content-Type"] == image.media_type
        assert resp.headers["Docker-Content-Digest"] == image.digest
        head = im.head_manifest(host, "a/b", image.digest)
        assert head.status_code == 200 and int(head.headers["Content-Length"]) == image.size
        for digest, data in image.all_blobs().items():
            assert im.get_blob(host, "a/b", digest) == data
    assert mem_registry.tags["a/b"]["oci"] in mem_registry.manifests["a/b"]
    assert im.get_manifest(host, "a/b", "nope").json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"


def test_manifest_put_validation(mem_registry):
    url = mem_registry.url
    image = im.build_image(external_layers=1)
    put = requests.put(f"{url}/v2/r/manifests/v1", data=image.manifest, timeout=10,
                       headers={"Content-Type": image.media_type})
    assert put.status_code == 400 and put.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"
    im.push_image(mem_registry.host, "r", image, "v1")  # the external layer is not needed
    bad = requests.put(f"{url}/v2/r/manifests/sha256:{'0' * 64}", data=image.manifest,
                       headers={"Content-Type": image.media_type}, timeout=10)
    assert bad.json()["errors"][0]["code"] == "DIGEST_INVALID"
    mismatch = requests.put(f"{url}/v2/r/manifests/v2", data=image.manifest, timeout=10,
                            headers={"Content-Type": im.MT_DOCKER_MANIFEST})
    assert mismatch.json()["errors"][0]["code"] == "MANIFEST_INVALID"
    index = im.build_index(seed=4)  # children absent: accepted, unlike docker-registry 2.8
    put = requests.put(f"{url}/v2/r/manifests/idx", data=index.manifest, timeout=10,
                       headers={"Content-Type": index.media_type})
    assert put.status_code == 201 and put.headers["Docker-Content-Digest"] == index.digest
    assert put.headers["Location"] == f"{url}/v2/r/manifests/{index.digest}"
    assert requests.put(f"{url}/v2/Bad/manifests/x", data=b"{}", timeout=10).status_code == 400


def test_referrers_api(mem_registry):
    host, url = mem_registry.host, mem_registry.url
    image = im.build_image()
    im.push_image(host, "r", image, "v1")
    sig = im.build_artifact(image, "application/vnd.example.sig", annotations={"k": "v"})
    sbom = im.build_artifact(image, "application/vnd.example.sbom", b"sbom")
    for blob in sig.all_blobs().values():
        im.push_blob(host, "r", blob)
    put = im.push_manifest(host, "r", sig.digest, sig.manifest, sig.media_type)
    assert put.headers["OCI-Subject"] == image.digest
    im.push_image(host, "r", sbom)
    resp = requests.get(f"{url}/v2/r/referrers/{image.digest}", timeout=10)
    assert resp.status_code == 200 and resp.headers["Content-Type"] == im.MT_OCI_INDEX
    entries = resp.json()["manifests"]
    assert [e["digest"] for e in entries] == [sig.digest, sbom.digest]
    assert entries[0] == {"mediaType": im.MT_OCI_MANIFEST, "digest": sig.digest,
                          "size": sig.size, "artifactType": "application/vnd.example.sig",
                          "annotations": {"k": "v"}}
    filtered = requests.get(f"{url}/v2/r/referrers/{image.digest}",
                            params={"artifactType": "application/vnd.example.sbom"}, timeout=10)
    assert filtered.headers["OCI-Filters-Applied"] == "artifactType"
    assert [e["digest"] for e in filtered.json()["manifests"]] == [sbom.digest]
    empty = requests.get(f"{url}/v2/r/referrers/sha256:{'1' * 64}", timeout=10)
    assert empty.status_code == 200 and empty.json()["manifests"] == []
    assert "OCI-Filters-Applied" not in empty.headers


def test_tag_and_catalog_pagination(mem_registry):
    host, url = mem_registry.host, mem_registry.url
    image = im.build_image()
    im.push_image(host, "p/q", image, "t0")
    for tag in ["t3", "t1", "t4", "t2"]:
        im.push_manifest(host, "p/q", tag, image.manifest, image.media_type)
    first = requests.get(f"{url}/v2/p/q/tags/list?n=2", timeout=10)
    assert first.json() == {"name": "p/q", "tags": ["t0", "t1"]}
    assert first.headers["Link"] == '</v2/p/q/tags/list?last=t1&n=2>; rel="next"'
    last = requests.get(f"{url}/v2/p/q/tags/list?n=2&last=t2", timeout=10)
    assert last.json()["tags"] == ["t3", "t4"] and "Link" not in last.headers
    assert im.list_tags(host, "p/q") == ["t0", "t1", "t2", "t3", "t4"]
    for repo in ["p/r", "a"]:
        im.push_image(host, repo, image, "x")
    cat = requests.get(f"{url}/v2/_catalog?n=2", timeout=10)
    assert cat.json()["repositories"] == ["a", "p/q"]
    assert cat.headers["Link"] == '</v2/_catalog?last=p%2Fq&n=2>; rel="next"'
    assert im.list_catalog(host) == ["a", "p/q", "p/r"]
    assert requests.get(f"{url}/v2/zz/tags/list", timeout=10).status_code == 404


def test_delete_by_tag_and_digest(mem_registry):
    host = mem_registry.host
    image = im.build_image()
    im.push_image(host, "d", image, "a")
    im.push_manifest(host, "d", "b", image.manifest, image.media_type)
    assert im.delete_manifest(host, "d", "a").status_code == 202
    assert im.list_tags(host, "d") == ["b"]
    assert im.get_manifest(host, "d", image.digest).status_code == 200
    assert im.delete_manifest(host, "d", "a").status_code == 404
    im.push_manifest(host, "d", "c", image.manifest, image.media_type)
    assert im.delete_manifest(host, "d", image.digest).status_code == 202
    assert im.list_tags(host, "d") == []


def test_switched_off_features():
    with MemRegistry(referrers_api=False, tag_delete=False, mount=False) as reg:
        image = im.build_image()
        im.push_image(reg.host, "s", image, "v1")
        sig = im.build_artifact(image)
        for blob in sig.blobs.values():
            im.push_blob(reg.host, "s", blob)
        put = im.push_manifest(reg.host, "s", sig.digest, sig.manifest, sig.media_type)
        assert "OCI-Subject" not in put.headers
        ref = requests.get(f"{reg.url}/v2/s/referrers/{image.digest}", timeout=10)
        assert ref.status_code == 404 and ref.text.startswith("404 page not found")
        deleted = im.delete_manifest(reg.host, "s", "v1")
        assert deleted.status_code == 400
        assert deleted.json()["errors"][0]["code"] == "DIGEST_INVALID"
        mount = requests.post(f"{reg.url}/v2/t/blobs/uploads/",
                              params={"mount": image.config["digest"], "from": "s"}, timeout=10)
        assert mount.status_code == 202 and "/blobs/uploads/" in mount.headers["Location"]


def test_blob_uploads_and_mount(mem_registry):
    url, host = mem_registry.url, mem_registry.host
    start = requests.post(f"{url}/v2/u/blobs/uploads/", timeout=10)
    assert start.status_code == 202 and start.headers["Range"] == "0-0"
    loc = start.headers["Location"]
    one = requests.patch(loc, data=b"hello ", headers={"Content-Range": "0-5"}, timeout=10)
    assert one.status_code == 202 and one.headers["Range"] == "0-5"
    wrong = requests.patch(loc, data=b"x", headers={"Content-Range": "9-9"}, timeout=10)
    assert wrong.status_code == 416
    assert requests.get(loc, timeout=10).headers["Range"] == "0-5"
    chunked = requests.patch(loc, data=iter([b"wor", b"ld"]), timeout=10)
    assert chunked.headers["Range"] == "0-10"
    bad = requests.put(f"{loc}?digest=sha256:{'0' * 64}", timeout=10)
    assert bad.status_code == 400 and bad.json()["errors"][0]["code"] == "DIGEST_INVALID"
    assert not mem_registry.uploads
    digest = im.push_blob(host, "u", b"hello world")
    assert mem_registry.blobs[digest] == b"hello world"
    ranged = requests.get(f"{url}/v2/u/blobs/{digest}", headers={"Range": "bytes=6-"}, timeout=10)
    assert ranged.status_code == 206 and ranged.content == b"world"
    assert ranged.headers["Content-Range"] == "bytes 6-10/11"
    mono = requests.post(f"{url}/v2/u/blobs/uploads/", params={"digest": im.sha256(b"x")},
                         data=b"x", timeout=10)
    assert mono.status_code == 201
    mount = requests.post(f"{url}/v2/v/blobs/uploads/", params={"mount": digest, "from": "u"},
                          timeout=10)
    assert mount.status_code == 201 and mount.headers["Docker-Content-Digest"] == digest
    assert im.blob_exists(host, "v", digest)
    assert requests.delete(f"{url}/v2/v/blobs/{digest}", timeout=10).status_code == 202
    assert not im.blob_exists(host, "v", digest)
    big = im.push_blob_stream(host, "u", 2 * im.DEFAULT_CHUNK + 1, seed=5)
    assert len(mem_registry.blobs[big]) == 2 * im.DEFAULT_CHUNK + 1


def test_basic_auth_required():
    with MemRegistry(user="bob", password="pw-123") as reg:
        resp = requests.get(f"{reg.url}/v2/", timeout=10)
        assert resp.status_code == 401
        assert resp.headers["WWW-Authenticate"].startswith("Basic ")
        assert requests.get(f"{reg.url}/v2/", auth=("bob", "nope"), timeout=10).status_code == 401
        image = im.build_image()
        im.push_image(reg.host, "x", image, "v1", auth=("bob", "pw-123"))
        assert im.list_tags(reg.host, "x", auth=("bob", "pw-123")) == ["v1"]
        assert "pw-123" not in repr(reg)


# --- facts about docker-registry 2.8, as written in memregistry.py's docstring ---


def test_fact_registry_28_delete_by_tag_refused(registry, repo):
    image = im.build_image()
    im.push_image(registry.host, repo, image, "v1")
    resp = im.delete_manifest(registry.host, repo, "v1")
    assert resp.status_code == 400 and resp.json()["errors"][0]["code"] == "DIGEST_INVALID"
    assert im.list_tags(registry.host, repo) == ["v1"]


def test_fact_registry_28_tags_ignore_pagination(registry, repo):
    image = im.build_image()
    im.push_image(registry.host, repo, image, "a")
    for tag in ["b", "c"]:
        im.push_manifest(registry.host, repo, tag, image.manifest, image.media_type)
    resp = requests.get(f"{registry.url}/v2/{repo}/tags/list?n=1&last=a", timeout=10)
    assert sorted(resp.json()["tags"]) == ["a", "b", "c"] and "Link" not in resp.headers


def test_fact_registry_28_catalog_paginates(fresh_registry):
    image = im.build_image()
    for repo in ["f/a", "f/b", "g/c"]:
        im.push_image(fresh_registry.host, repo, image, "x")
    resp = requests.get(f"{fresh_registry.url}/v2/_catalog?n=2", timeout=10)
    assert resp.json() == {"repositories": ["f/a", "f/b"]}
    assert resp.headers["Link"] == '</v2/_catalog?last=f%2Fb&n=2>; rel="next"'
    rest = requests.get(f"{fresh_registry.url}/v2/_catalog?n=2&last=f/b", timeout=10)
    assert rest.json() == {"repositories": ["g/c"]} and "Link" not in rest.headers


@pytest.mark.parametrize("docker", [False, True])
def test_fact_registry_28_refuses_index_without_children(registry, repo, docker):
    index = im.build_index(docker=docker)
    resp = requests.put(f"{registry.url}/v2/{repo}/manifests/x", data=index.manifest,
                        headers={"Content-Type": index.media_type}, timeout=10)
    assert resp.status_code == 400
    errors = resp.json()["errors"]
    assert {e["code"] for e in errors} == {"MANIFEST_BLOB_UNKNOWN"}
    assert {e["detail"] for e in errors} == {c.digest for c in index.children}


def test_fact_registry_28_no_referrers(registry, repo):
    image = im.build_image()
    im.push_image(registry.host, repo, image, "v1")
    sig = im.build_artifact(image)
    for blob in sig.blobs.values():
        im.push_blob(registry.host, repo, blob)
    put = im.push_manifest(registry.host, repo, sig.digest, sig.manifest, sig.media_type)
    assert put.status_code == 201 and "OCI-Subject" not in put.headers
    assert im.get_manifest(registry.host, repo, sig.digest).content == sig.manifest
    resp = requests.get(f"{registry.url}/v2/{repo}/referrers/{image.digest}", timeout=10)
    assert resp.status_code == 404 and resp.text.strip() == "404 page not found"


def test_fact_registry_28_accept_negotiation(registry, repo):
    oci, docker = im.build_image(), im.build_image(docker=True, seed=1)
    im.push_image(registry.host, repo, oci, "oci")
    im.push_image(registry.host, repo, docker, "docker")
    url = f"{registry.url}/v2/{repo}/manifests"
    assert requests.get(f"{url}/{oci.digest}", headers={"Accept": "*/*"},
                        timeout=10).status_code == 404
    v1 = requests.get(f"{url}/docker", timeout=10)
    assert v1.headers["Content-Type"].endswith("v1+prettyjws")
    assert requests.get(f"{url}/oci", headers=ACCEPT, timeout=10).content == oci.manifest
