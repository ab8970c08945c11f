"""export_tar / import_tar: OCI layout + docker manifest.json tars, through a client."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tracemalloc
from pathlib import Path

import pytest

from regbot.client import RegClient
from regbot.errors import DigestMismatch, NotFound, RegistryError
from regbot.hosts import Host
from regbot.tarball import docker_name, export_tar, import_tar
from regbot.types.manifest import MT_DOCKER_MANIFEST
from regbot.types.platform import Platform, local_platform
from regbot.types.ref import Reference
from tests.support import images as im

HAVE_SKOPEO = shutil.which("skopeo") is not None


def _reg_client(registry_host: str = ""):
    hosts = [Host(name=registry_host, tls="disabled")] if registry_host else []
    return RegClient(hosts, skip_docker_config=True)


@pytest.fixture
def client() -> RegClient:
    """The real RegClient; these tests use ocidir refs (one also a registry)."""
    return _reg_client()


def ref_of(path: Path, tag: str = "", digest: str = "") -> Reference:
    return Reference.parse(f"ocidir://{path}" + (f":{tag}" if tag else "")
                           + (f"@{digest}" if digest else ""))


def tar_files(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def assert_image_in(client, ref: Reference, image: im.Image) -> None:
    """Every manifest and blob of image readable at ref, byte for byte."""
    assert client.manifest_get(ref).raw == image.manifest
    for m in image.all_manifests():
        got = client.manifest_get(ref.repo_only().with_digest(m.digest))
        assert got.raw == m.manifest
        for digest, data in m.blobs.items():
            with client.blob_get(ref, digest, len(data)) as reader:
                assert reader.read_all() == data


# ----------------------------------------------------------------- export


def test_export_index_then_import_round_trip(tmp_path, client):
    index = im.build_index(("linux/amd64", "linux/arm64", "linux/arm/v7"), seed=1)
    src = tmp_path / "src"
    im.write_ocidir(src, index, tag="v1")
    out = tmp_path / "image.tar"
    export_tar(client, ref_of(src, "v1"), str(out))

    files = tar_files(out)
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    [entry] = json.loads(files["index.json"])["manifests"]
    assert (entry["digest"], entry["size"], entry["mediaType"]) == (
        index.digest, index.size, im.MT_OCI_INDEX)
    assert entry["annotations"] == {
        "org.opencontainers.image.ref.name": "v1",
        "io.containerd.image.name": docker_name(ref_of(src, "v1")),
    }
    expected = {f"blobs/sha256/{d.split(':')[1]}": data for d, data in index.all_blobs().items()}
    expected.update({f"blobs/sha256/{m.digest.split(':')[1]}": m.manifest
                     for m in index.all_manifests()})
    blobs = {k: v for k, v in files.items() if k.startswith("blobs/")}
    assert blobs == expected
    # docker's manifest.json: the local platform's image of the index
    local = next(c for c in index.children
                 if local_platform().matches(Platform.parse(c.platform)))
    [docker] = json.loads(files["manifest.json"])
    assert docker["Config"] == "blobs/sha256/" + local.config["digest"].split(":")[1]
    assert docker["Layers"] == ["blobs/sha256/" + d["digest"].split(":")[1] for d in local.layers]
    repo = re.sub(r"[^/a-z0-9]+", "-", str(src).strip("/").lower())
    assert docker["RepoTags"] == [f"localhost/{repo}:v1"]

    dst = tmp_path / "dst"
    import_tar(client, ref_of(dst, "v2"), str(out))
    assert_image_in(client, ref_of(dst, "v2"), index)
    # only the tag is recorded in index.json; the children live through the index
    [top] = json.loads((dst / "index.json").read_text())["manifests"]
    assert top["digest"] == index.digest
    assert top["annotations"]["org.opencontainers.image.ref.name"] == "v2"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_export_is_reproducible_and_single_image_has_docker_manifest(tmp_path, client):
    image = im.build_image(docker=True, seed=2, layers=3)
    src = tmp_path / "src"
    im.write_ocidir(src, image, tag="1.0")
    a, b = tmp_path / "a.tar", tmp_path / "b.tar"
    export_tar(client, ref_of(src, "1.0"), str(a))
    export_tar(client, ref_of(src, "1.0"), str(b))
    assert a.read_bytes() == b.read_bytes()
    docker = json.loads(tar_files(a)["manifest.json"])
    assert len(docker) == 1
    assert docker[0]["Layers"] == ["blobs/sha256/" + d["digest"].split(":")[1] for d in image.layers]
    assert set(docker[0]["LayerSources"]) == {d["digest"] for d in image.layers}
    with tarfile.open(a) as tar:
        names = tar.getnames()
    assert names[:5] == ["oci-layout", "index.json", "manifest.json", "blobs", "blobs/sha256"]


@pytest.mark.skipif(not HAVE_SKOPEO, reason="skopeo not installed")
def test_skopeo_reads_the_export_as_docker_archive_and_oci_archive(tmp_path, client):
    image = im.build_image(seed=3, layers=2)
    src = tmp_path / "src"
    im.write_ocidir(src, image, tag="v1")
    out = tmp_path / "image.tar"
    export_tar(client, ref_of(src, "v1"), str(out))
    raw = subprocess.run(["skopeo", "inspect", "--raw", f"oci-archive:{out}"],
                         check=True, capture_output=True).stdout
    assert raw == image.manifest
    config = subprocess.run(["skopeo", "inspect", "--config", "--raw", f"docker-archive:{out}"],
                            check=True, capture_output=True).stdout
    assert config == image.blobs[image.config["digest"]]
    # a full copy out of the docker view reads (and checks) every layer
    subprocess.run(["skopeo", "--insecure-policy", "copy", f"docker-archive:{out}",
                    f"oci:{tmp_path / 'via-docker'}:x"], check=True, capture_output=True)


def test_export_of_a_corrupt_source_leaves_no_tar(tmp_path, client):
    image = im.build_image(seed=4, layer_size=3 * 1024 * 1024)
    src = tmp_path / "src"
    im.write_ocidir(src, image, tag="v1")
    layer = image.layers[-1]["digest"]
    path = src / "blobs" / "sha256" / layer.split(":")[1]
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    out = tmp_path / "out" / "image.tar"
    out.parent.mkdir()
    with pytest.raises(DigestMismatch, match=layer):
        export_tar(client, ref_of(src, "v1"), str(out))
    assert list(out.parent.iterdir()) == []


def test_export_missing_ref_is_not_found(tmp_path, client):
    im.write_ocidir(tmp_path / "src", im.build_image(), tag="v1")
    with pytest.raises(NotFound):
        export_tar(client, ref_of(tmp_path / "src", "v9"), str(tmp_path / "x.tar"))
    assert not (tmp_path / "x.tar").exists()


# ----------------------------------------------------------------- import


def _layer_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def build_docker_save(path: Path) -> tuple[bytes, list[bytes]]:
    """A legacy `docker save` tar: <id>/layer.tar (one a symlink to a layer already
    saved, as docker writes repeated layers), <id>.json config, manifest.json,
    repositories. Returns (config, layers)."""
    layer1 = _layer_tar({"etc/hello": b"hello\n"})
    layer2 = _layer_tar({"usr/bin/tool": b"#!/bin/sh\necho tool\n" * 50})
    layers = [layer1, layer2, layer1]
    diff_ids = [im.sha256(layer) for layer in layers]
    config = im.make_config("linux/amd64", {"from": "docker-save"}, diff_ids=diff_ids)
    config_id = hashlib.sha256(config).hexdigest()
    ids = [hashlib.sha256(f"layer{i}".encode()).hexdigest() for i in range(3)]
    manifest = [{"Config": f"{config_id}.json", "RepoTags": ["example/app:1.0"],
                 "Layers": [f"{i}/layer.tar" for i in ids]}]
    with tarfile.open(path, "w") as tar:
        for i, layer in zip(ids[:2], layers[:2], strict=True):
            _add(tar, f"{i}/VERSION", b"1.0")
            _add(tar, f"{i}/layer.tar", layer)
        link = tarfile.TarInfo(f"{ids[2]}/layer.tar")
        link.type = tarfile.SYMTYPE
        link.linkname = f"../{ids[0]}/layer.tar"
        tar.addfile(link)
        _add(tar, f"{config_id}.json", config)
        _add(tar, "manifest.json", json.dumps(manifest).encode())
        _add(tar, "repositories", json.dumps({"example/app": {"1.0": ids[-1]}}).encode())
    return config, layers


def test_import_docker_save_tar(tmp_path, client):
    tar_path = tmp_path / "save.tar"
    config, layers = build_docker_save(tar_path)
    dst = ref_of(tmp_path / "dst", "imported")
    import_tar(client, dst, str(tar_path))
    m = client.manifest_get(dst)
    assert m.media_type == MT_DOCKER_MANIFEST
    assert m.config.digest == im.sha256(config)
    assert m.config.media_type == im.MT_DOCKER_CONFIG
    assert [d.digest for d in m.layers] == [im.sha256(layer) for layer in layers]
    assert [d.size for d in m.layers] == [len(layer) for layer in layers]
    assert {d.media_type for d in m.layers} == {"application/vnd.docker.image.rootfs.diff.tar"}
    assert client.blob_get(dst, m.config.digest).read_all() == config
    for layer in layers:
        assert client.blob_get(dst, im.sha256(layer)).read_all() == layer


@pytest.mark.skipif(not HAVE_SKOPEO, reason="skopeo not installed")
def test_import_docker_archive_written_by_skopeo(tmp_path, client):
    image = im.build_image(seed=6, layers=2)
    src = tmp_path / "src"
    im.write_ocidir(src, image, tag="v1")
    archive = tmp_path / "skopeo.tar"
    subprocess.run(["skopeo", "--insecure-policy", "copy", f"oci:{src}:v1",
                    f"docker-archive:{archive}:example/app:v1"], check=True, capture_output=True)
    dst = ref_of(tmp_path / "dst", "v1")
    import_tar(client, dst, str(archive))
    m = client.manifest_get(dst)
    config = json.loads(client.blob_get(dst, m.config.digest).read_all())
    assert config["config"]["Labels"] == json.loads(image.blobs[image.config["digest"]])[
        "config"]["Labels"]
    with tarfile.open(archive) as tar:
        docker = json.load(tar.extractfile("manifest.json"))[0]
        for name, desc in zip(docker["Layers"], m.layers, strict=True):
            data = tar.extractfile(name).read()
            assert im.sha256(data) == desc.digest
            assert client.blob_get(dst, desc.digest).read_all() == data


def test_import_picks_the_entry_for_the_tag_from_a_multi_image_layout(tmp_path, client):
    a, b = im.build_image(seed=7), im.build_image(seed=8)
    layout = tmp_path / "layout"
    im.write_ocidir(layout, a, tag="a")
    im.write_ocidir(layout, b, tag="b")
    tar_path = tmp_path / "layout.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(layout, arcname=".")
    import_tar(client, ref_of(tmp_path / "dst", "b"), str(tar_path))
    assert client.manifest_get(ref_of(tmp_path / "dst", "b")).digest == b.digest
    with pytest.raises(NotFound, match="tag c not found"):
        import_tar(client, ref_of(tmp_path / "dst", "c"), str(tar_path))


def test_import_a_gzipped_tar(tmp_path, client):
    image = im.build_image(seed=12)
    src = tmp_path / "src"
    im.write_ocidir(src, image, tag="v1")
    out = tmp_path / "image.tar"
    export_tar(client, ref_of(src, "v1"), str(out))
    gz = tmp_path / "image.tar.gz"
    with open(out, "rb") as fin, gzip.open(gz, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    import_tar(client, ref_of(tmp_path / "dst", "v1"), str(gz))
    assert_image_in(client, ref_of(tmp_path / "dst", "v1"), image)


def test_foreign_layers_absent_from_the_source_are_left_out(tmp_path, client):
    image = im.build_image(seed=13, external_layers=1)
    src = tmp_path / "src"
    im.write_ocidir(src, image, tag="v1")  # the foreign layer is not stored
    out = tmp_path / "image.tar"
    export_tar(client, ref_of(src, "v1"), str(out))
    [foreign] = image.external
    assert "blobs/sha256/" + foreign.split(":")[1] not in tar_files(out)
    dst = ref_of(tmp_path / "dst", "v1")
    import_tar(client, dst, str(out))
    assert client.manifest_get(dst).raw == image.manifest
    with pytest.raises(NotFound):
        client.blob_head(dst, foreign)
    for digest, data in image.blobs.items():
        assert client.blob_get(dst, digest).read_all() == data


def test_import_rejects_bad_tars(tmp_path, client):
    dst = ref_of(tmp_path / "dst", "v1")
    with pytest.raises(NotFound):
        import_tar(client, dst, str(tmp_path / "missing.tar"))
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(RegistryError):
        import_tar(client, dst, str(tmp_path / "junk.tar"))
    empty = tmp_path / "empty.tar"
    with tarfile.open(empty, "w") as tar:
        _add(tar, "readme", b"x")
    with pytest.raises(RegistryError, match="neither an OCI layout nor a docker save"):
        import_tar(client, dst, str(empty))

    # an OCI tar missing a layer: nothing is tagged
    image = im.build_image(seed=9)
    src = tmp_path / "src"
    im.write_ocidir(src, image, tag="v1")
    out = tmp_path / "image.tar"
    export_tar(client, ref_of(src, "v1"), str(out))
    trimmed = tmp_path / "trimmed.tar"
    missing = "blobs/sha256/" + image.layers[0]["digest"].split(":")[1]
    with tarfile.open(out) as tin, tarfile.open(trimmed, "w") as tout:
        for member in tin.getmembers():
            if member.name != missing:
                tout.addfile(member, tin.extractfile(member) if member.isfile() else None)
    with pytest.raises(NotFound, match=missing):
        import_tar(client, dst, str(trimmed))
    assert not (tmp_path / "dst").exists()  # checked before anything was pushed

    # a tampered blob in the tar is refused by the digest check
    tampered = tmp_path / "tampered.tar"
    victim = "blobs/sha256/" + image.layers[1]["digest"].split(":")[1]
    with tarfile.open(out) as tin, tarfile.open(tampered, "w") as tout:
        for member in tin.getmembers():
            if member.name == victim:
                data = bytearray(tin.extractfile(member).read())
                data[0] ^= 0xFF
                tout.addfile(member, io.BytesIO(bytes(data)))
            else:
                tout.addfile(member, tin.extractfile(member) if member.isfile() else None)
    with pytest.raises(DigestMismatch):
        import_tar(client, dst, str(tampered))


def test_export_import_stream_with_flat_memory(tmp_path, client):
    size = 24 * 1024 * 1024
    big = im.build_image(seed=10, layers=1, layer_size=size)
    src = tmp_path / "src"
    im.write_ocidir(src, big, tag="v1")
    del big.blobs  # keep the test's own memory out of the measurement
    out = tmp_path / "big.tar"
    tracemalloc.start()
    try:
        export_tar(client, ref_of(src, "v1"), str(out))
        import_tar(client, ref_of(tmp_path / "dst", "v1"), str(out))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024
    assert os.path.getsize(out) > size
    assert client.manifest_get(ref_of(tmp_path / "dst", "v1")).digest == big.digest


# ----------------------------------------------------------------- through a registry


def test_export_from_and_import_to_a_registry(tmp_path, registry, repo):
    client = _reg_client(registry.host)
    index = im.build_index(seed=11)
    im.push_image(registry.host, repo, index, tag="v1")
    src = Reference.parse(f"{registry.host}/{repo}:v1")
    out = tmp_path / "reg.tar"
    export_tar(client, src, str(out))
    import_tar(client, ref_of(tmp_path / "dst", "v1"), str(out))
    assert_image_in(client, ref_of(tmp_path / "dst", "v1"), index)
    back = Reference.parse(f"{registry.host}/{repo}-copy:v2")
    import_tar(client, back, str(out))
    assert im.get_manifest(registry.host, f"{repo}-copy", "v2").content == index.manifest
    for m in index.all_manifests():
        for digest, data in m.blobs.items():
            assert im.get_blob(registry.host, f"{repo}-copy", digest) == data

