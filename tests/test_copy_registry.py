"""copy_image end to end: real docker-registry processes, MemRegistry (referrers API,
indexes with absent children) and OCI layout directories, through the real RegClient."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote

import pytest
import requests

from regbot.client import RegClient
from regbot.copy import (
    CancelToken,
    CopyCancelled,
    CopyOptions,
    ExecContext,
    LocalExecutor,
    ProgressListener,
    SequentialExecutor,
    build_plan,
    copy_image,
)
from regbot.errors import DigestMismatch, RegistryError
from regbot.hosts import TLS_DISABLED, Host
from regbot.types.ref import Reference
from tests.support.fronts import FaultFront
from tests.support.images import (
    Image,
    blob_exists,
    build_artifact,
    build_image,
    build_index,
    build_referrers_index,
    get_manifest,
    head_manifest,
    list_tags,
    push_image,
    push_manifest,
    referrers_tag,
    write_ocidir,
)
from tests.support.memregistry import MemRegistry

R = Reference.parse


def make_client(*servers) -> RegClient:
    return RegClient([Host(name=s.host, tls=TLS_DISABLED) for s in servers])


def has_image(host: str, repo: str, image: Image, tag: str | None = None) -> bool:
    """Every manifest (byte for byte) and blob of the tree is in host/repo."""
    for m in image.all_manifests():
        resp = get_manifest(host, repo, m.digest)
        if resp.status_code != 200 or resp.content != m.manifest:
            return False
    if tag and head_manifest(host, repo, tag).headers.get("Docker-Content-Digest") != image.digest:
        return False
    return all(blob_exists(host, repo, d) for d in image.all_blobs())


def uploads(front, digest: str) -> int:
    """Completed blob uploads of `digest` seen by a front (the final PUT, or a
    monolithic POST ?digest=)."""
    return sum(1 for method, path in front.requests
               if method in ("PUT", "POST") and "/blobs/uploads/" in path
               and f"digest={digest}" in unquote(path))


def blob_gets(front, digest: str) -> int:
    return sum(1 for method, path in front.requests
               if method == "GET" and path.split("?")[0].endswith(f"/blobs/{digest}"))


@pytest.fixture
def mem():
    with MemRegistry(referrers_api=True) as reg:
        yield reg


@pytest.fixture
def mem2():
    with MemRegistry(referrers_api=True) as reg:
        yield reg


# ---------------------------------------------------------------- image shapes


def test_multiarch_oci_index(registry, registry2, repo):
    idx = build_index(["linux/amd64", "linux/arm64", "linux/arm/v7"], layers=2)
    push_image(registry.host, repo, idx, "v1")
    client = make_client(registry, registry2)
    result = copy_image(client, R(f"{registry.host}/{repo}:v1"), R(f"{registry2.host}/{repo}:v1"))
    assert has_image(registry2.host, repo, idx, "v1")
    blobs = idx.all_blobs()
    assert result.manifests == 4 and result.blobs_copied == len(blobs)
    assert result.bytes_copied == sum(len(b) for b in blobs.values())
    assert not result.skipped


def test_docker_manifest_list(registry, registry2, repo):
    lst = build_index(["linux/amd64", "linux/arm64"], docker=True)
    push_image(registry.host, repo, lst, "v1")
    client = make_client(registry, registry2)
    copy_image(client, R(f"{registry.host}/{repo}:v1"), R(f"{registry2.host}/{repo}:v1"))
    assert has_image(registry2.host, repo, lst, "v1")
    resp = get_manifest(registry2.host, repo, "v1")
    assert resp.headers["Content-Type"] == lst.media_type


def test_shared_layers_transferred_once(registry, registry2, repo):
    base = build_image(seed=11, layers=2, layer_size=30000)
    shared = base.layers_with_data()
    idx = build_index(["linux/amd64", "linux/arm64", "linux/ppc64le"], shared_layers=shared)
    other = build_image("linux/amd64", seed=12, shared_layers=shared)
    push_image(registry.host, repo, idx, "v1")
    push_image(registry.host, repo, other, "v2")
    with FaultFront(registry) as src_front, FaultFront(registry2) as tgt_front:
        client = make_client(src_front, tgt_front)
        copy_image(client, R(f"{src_front.host}/{repo}:v1"), R(f"{tgt_front.host}/{repo}:v1"))
        second = copy_image(client, R(f"{src_front.host}/{repo}:v2"),
                            R(f"{tgt_front.host}/{repo}:v2"))
        for layer in base.layers:
            assert uploads(tgt_front, layer["digest"]) == 1
            assert blob_gets(src_front, layer["digest"]) == 1
        assert second.blobs_skipped == len(shared)
    assert has_image(registry2.host, repo, other, "v2")


def test_external_layers_skipped_then_included(mem, mem2):
    img = build_image(layers=1, external_layers=1)
    push_image(mem.host, "app", img, "v1", push_external=True)
    (ext,) = img.external
    client = make_client(mem, mem2)
    copy_image(client, R(f"{mem.host}/app:v1"), R(f"{mem2.host}/app:v1"))
    assert get_manifest(mem2.host, "app", "v1").content == img.manifest
    assert not blob_exists(mem2.host, "app", ext)
    copy_image(client, R(f"{mem.host}/app:v1"), R(f"{mem2.host}/other:v1"),
               CopyOptions(include_external=True))
    assert blob_exists(mem2.host, "other", ext)


# ---------------------------------------------------------------- options


def test_platform_filter_to_registry_accepting_partial_index(mem, mem2):
    idx = build_index(["linux/amd64", "linux/arm64/v8", "linux/arm/v7"])
    push_image(mem.host, "app", idx, "v1")
    client = make_client(mem, mem2)
    copy_image(client, R(f"{mem.host}/app:v1"), R(f"{mem2.host}/app:v1"),
               CopyOptions(platforms=["linux/arm64", "linux/arm/v7"]))
    assert get_manifest(mem2.host, "app", "v1").content == idx.manifest  # unchanged
    for platform, present in (("linux/amd64", False), ("linux/arm64/v8", True),
                              ("linux/arm/v7", True)):
        child = idx.child(platform)
        assert (get_manifest(mem2.host, "app", child.digest).status_code == 200) is present
        assert all(blob_exists(mem2.host, "app", d) is present for d in child.blobs)


def test_platform_filter_refused_by_docker_registry(registry, registry2, repo):
    idx = build_index(["linux/amd64", "linux/arm64"])
    push_image(registry.host, repo, idx, "v1")
    client = make_client(registry, registry2)
    with pytest.raises(RegistryError) as info:
        copy_image(client, R(f"{registry.host}/{repo}:v1"), R(f"{registry2.host}/{repo}:v1"),
                   CopyOptions(platforms=["linux/amd64"]))
    assert info.value.code == "MANIFEST_BLOB_UNKNOWN"
    message = str(info.value)
    assert f"copy manifest {idx.digest} from {registry.host}/{repo} to " in message
    assert "1 entries left out by the platforms option" in message
    assert has_image(registry2.host, repo, idx.child("linux/amd64"))
    assert head_manifest(registry2.host, repo, "v1").status_code == 404


def test_digest_tags(registry, registry2, repo):
    img = build_image()
    push_image(registry.host, repo, img, "v1")
    sig = build_image(seed=5, layers=1)
    sig_tag = img.digest.replace(":", "-") + ".sig"
    push_image(registry.host, repo, sig, sig_tag)
    unrelated = build_image(seed=6, layers=1)
    push_image(registry.host, repo, unrelated, "sha256-" + "0" * 64 + ".sig")
    client = make_client(registry, registry2)
    copy_image(client, R(f"{registry.host}/{repo}:v1"), R(f"{registry2.host}/{repo}:v1"),
               CopyOptions(digest_tags=True))
    assert sorted(list_tags(registry2.host, repo)) == sorted(["v1", sig_tag])
    assert has_image(registry2.host, repo, sig, sig_tag)


def test_referrers_by_tag_fallback(registry, registry2, repo):
    img = build_index(["linux/amd64", "linux/arm64"])
    sig = build_artifact(img, "application/vnd.example.sig", b"sig")
    sbom = build_artifact(img, "application/vnd.example.sbom", b"sbom")
    push_image(registry.host, repo, img, "v1")
    for art in (sig, sbom):
        push_image(registry.host, repo, art)
    fallback = build_referrers_index([sig, sbom])
    push_manifest(registry.host, repo, referrers_tag(img.digest), fallback.manifest,
                  fallback.media_type)
    client = make_client(registry, registry2)
    copy_image(client, R(f"{registry.host}/{repo}:v1"), R(f"{registry2.host}/{repo}:v1"),
               CopyOptions(referrers=True))
    assert has_image(registry2.host, repo, img, "v1")
    for art in (sig, sbom):
        assert has_image(registry2.host, repo, art)
    listed = json.loads(get_manifest(registry2.host, repo, referrers_tag(img.digest)).content)
    assert {d["digest"] for d in listed["manifests"]} == {sig.digest, sbom.digest}
    # and the target's referrers as the client sees them
    got = client.referrers(R(f"{registry2.host}/{repo}@{img.digest}"))
    assert {d.digest for d in got} == {sig.digest, sbom.digest}


def test_referrers_by_api(mem, mem2):
    img = build_image()
    sig = build_artifact(img, "application/vnd.example.sig", b"sig")
    sig_of_sig = build_artifact(sig, "application/vnd.example.sig", b"sig2")
    push_image(mem.host, "app", img, "v1")
    push_image(mem.host, "app", sig)
    push_image(mem.host, "app", sig_of_sig)
    client = make_client(mem, mem2)
    copy_image(client, R(f"{mem.host}/app:v1"), R(f"{mem2.host}/app:v1"),
               CopyOptions(referrers=True))
    resp = requests.get(f"{mem2.url}/v2/app/referrers/{img.digest}", timeout=10)
    assert [d["digest"] for d in resp.json()["manifests"]] == [sig.digest]
    resp = requests.get(f"{mem2.url}/v2/app/referrers/{sig.digest}", timeout=10)
    assert [d["digest"] for d in resp.json()["manifests"]] == [sig_of_sig.digest]
    assert referrers_tag(img.digest) not in mem2.tags.get("app", {})


def test_force_recursive_repairs_missing_layer(registry, registry2, repo):
    img = build_image(layers=3)
    push_image(registry.host, repo, img, "v1")
    client = make_client(registry, registry2)
    src, tgt = R(f"{registry.host}/{repo}:v1"), R(f"{registry2.host}/{repo}:v1")
    copy_image(client, src, tgt)
    lost = img.layers[1]["digest"]
    resp = requests.delete(f"{registry2.url}/v2/{repo}/blobs/{lost}", timeout=10)
    assert resp.status_code == 202
    assert not blob_exists(registry2.host, repo, lost)
    assert copy_image(client, src, tgt).skipped  # the top digest matches: not noticed
    result = copy_image(client, src, tgt, CopyOptions(force_recursive=True))
    assert blob_exists(registry2.host, repo, lost)
    assert result.blobs_copied == 1 and result.blobs_skipped == len(img.blobs) - 1


def test_same_registry_mounts(registry, repo):
    img = build_image(layers=2)
    push_image(registry.host, repo, img, "v1")
    client = make_client(registry)
    result = copy_image(client, R(f"{registry.host}/{repo}:v1"),
                        R(f"{registry.host}/{repo}-copy:v1"))
    assert result.blobs_mounted == len(img.blobs) and result.bytes_copied == 0
    assert has_image(registry.host, f"{repo}-copy", img, "v1")


# ---------------------------------------------------------------- robustness


def test_rerun_transfers_nothing(registry, registry2, repo):
    idx = build_index()
    push_image(registry.host, repo, idx, "v1")
    with FaultFront(registry) as src_front, FaultFront(registry2) as tgt_front:
        client = make_client(src_front, tgt_front)
        src, tgt = R(f"{src_front.host}/{repo}:v1"), R(f"{tgt_front.host}/{repo}:v1")
        copy_image(client, src, tgt)
        src_front.requests.clear()
        tgt_front.requests.clear()
        again = copy_image(client, src, tgt)
        assert again.skipped and again.bytes_copied == 0 and again.manifests == 0
        assert [m for m, _ in src_front.requests] == ["HEAD"]
        assert [m for m, _ in tgt_front.requests] == ["HEAD"]


def test_cancel_mid_blob_then_rerun_completes(registry, registry2, repo):
    img = build_image(layers=3, layer_size=3 * 1024 * 1024 + 5)
    push_image(registry.host, repo, img, "v1")
    client = make_client(registry, registry2)
    src, tgt = R(f"{registry.host}/{repo}:v1"), R(f"{registry2.host}/{repo}:v1")
    token = CancelToken()

    class StopMidBlob(ProgressListener):
        def bytes_done(self, event):
            if 0 < event.bytes_done < event.size:
                token.cancel("stopped by the test")

    plan = build_plan(client, src, tgt)
    with pytest.raises(CopyCancelled, match="stopped by the test"):
        LocalExecutor(max_workers=2).run(
            plan.units, ExecContext(client, StopMidBlob(), token, progress_interval=0))
    assert head_manifest(registry2.host, repo, "v1").status_code == 404
    present = {d for d in img.blobs if blob_exists(registry2.host, repo, d)}
    assert len(present) < len(img.blobs)
    result = copy_image(client, src, tgt)
    assert has_image(registry2.host, repo, img, "v1")
    assert result.blobs_skipped == len(present)
    assert result.blobs_copied == len(img.blobs) - len(present)


def test_short_read_is_resumed_and_verified(registry, registry2, repo):
    img = build_image(layers=1, layer_size=2 * 1024 * 1024)
    push_image(registry.host, repo, img, "v1")
    layer = img.layers[0]["digest"]
    with FaultFront(registry) as front:
        front.add("GET", f"/blobs/{layer}", "truncate")
        client = make_client(front, registry2)
        copy_image(client, R(f"{front.host}/{repo}:v1"), R(f"{registry2.host}/{repo}:v1"))
        assert front.hits("truncate") == 1
    assert has_image(registry2.host, repo, img, "v1")


def test_each_byte_is_hashed_once_per_copy(registry, registry2, repo, monkeypatch):
    """The GET verifies the layer; the target registry verifies the PUT's digest, so the
    upload does not hash the same bytes again (an upload from elsewhere still does)."""
    import hashlib

    img = build_image(layers=1, layer_size=3 * 1024 * 1024)
    push_image(registry.host, repo, img, "v1")
    hashed = [0]
    real_new = hashlib.new

    class Counting:
        def __init__(self, name: str, data: bytes = b"") -> None:
            self._h = real_new(name)
            self.update(data)

        def update(self, data: bytes) -> None:
            hashed[0] += len(data)
            self._h.update(data)

        def hexdigest(self) -> str:
            return self._h.hexdigest()

    monkeypatch.setattr(hashlib, "new", Counting)
    client = make_client(registry, registry2)
    copy_image(client, R(f"{registry.host}/{repo}:v1"), R(f"{registry2.host}/{repo}:v1"))
    assert has_image(registry2.host, repo, img, "v1")
    layer = len(img.blobs[img.layers[0]["digest"]])
    assert layer <= hashed[0] < layer + 64 * 1024  # the layer once, plus config and manifest


@pytest.mark.parametrize("layer_size", [100_000, 5 * 1024 * 1024],
                         ids=["small", "read-ahead"])  # execute.READ_AHEAD_MIN: 4 MiB
def test_corrupt_source_blob_fails_without_manifest(registry, registry2, repo, layer_size):
    img = build_image(layers=2, layer_size=layer_size)
    push_image(registry.host, repo, img, "v1")
    bad = img.layers[0]["digest"]
    with FaultFront(registry) as front:
        front.add("GET", f"/blobs/{bad}", "corrupt", times=-1)
        client = make_client(front, registry2)
        with pytest.raises(DigestMismatch) as info:
            copy_image(client, R(f"{front.host}/{repo}:v1"), R(f"{registry2.host}/{repo}:v1"))
    message = str(info.value)
    assert bad in message and "copy blob" in message and registry2.host in message
    assert head_manifest(registry2.host, repo, "v1").status_code == 404
    assert get_manifest(registry2.host, repo, img.digest).status_code == 404
    assert not blob_exists(registry2.host, repo, bad)


def test_local_executor_matches_sequential(registry, registry2, repo):
    idx = build_index(["linux/amd64", "linux/arm64", "linux/s390x"], layers=2)
    push_image(registry.host, repo, idx, "v1")
    client = make_client(registry, registry2)
    src = R(f"{registry.host}/{repo}:v1")
    runs = {}
    for name, executor in (("local", LocalExecutor(max_workers=4)),
                           ("seq", SequentialExecutor())):
        tgt = R(f"{registry2.host}/{repo}-{name}:v1")
        plan = build_plan(client, src, tgt)
        results = executor.run(plan.units, ExecContext(client))
        runs[name] = [(r.kind, r.status, r.digest, r.bytes) for r in results]
        assert has_image(registry2.host, f"{repo}-{name}", idx, "v1")
    assert runs["local"] == runs["seq"]


# ---------------------------------------------------------------- OCI layouts


def test_registry_to_ocidir_and_back(registry, registry2, repo, tmp_path: Path):
    idx = build_index(["linux/amd64", "linux/arm64"])
    sig = build_artifact(idx)
    push_image(registry.host, repo, idx, "v1")
    push_image(registry.host, repo, sig)
    push_manifest(registry.host, repo, referrers_tag(idx.digest),
                  build_referrers_index([sig]).manifest, "application/vnd.oci.image.index.v1+json")
    client = make_client(registry, registry2)
    layout = R(f"ocidir://{tmp_path / 'layout'}:v1")
    copy_image(client, R(f"{registry.host}/{repo}:v1"), layout, CopyOptions(referrers=True))
    for m in idx.all_manifests() + [sig]:
        stored = tmp_path / "layout" / "blobs" / "sha256" / m.digest.split(":")[1]
        assert stored.read_bytes() == m.manifest
    assert client.manifest_head(layout).digest == idx.digest
    copy_image(client, layout, R(f"{registry2.host}/{repo}:back"), CopyOptions(referrers=True))
    assert has_image(registry2.host, repo, idx, "back")
    assert has_image(registry2.host, repo, sig)
    # ocidir to ocidir, and a rerun there is a no-op
    other = R(f"ocidir://{tmp_path / 'other'}:copy")
    copy_image(client, layout, other)
    assert copy_image(client, layout, other).skipped
    assert client.manifest_get(other).raw == idx.manifest


def test_ocidir_source_written_by_hand(registry, repo, tmp_path: Path):
    img = build_image(docker=True)
    write_ocidir(tmp_path / "src", img, tag="v1")
    client = make_client(registry)
    result = copy_image(client, R(f"ocidir://{tmp_path / 'src'}:v1"),
                        R(f"{registry.host}/{repo}:v1"))
    assert result.manifests == 1 and result.blobs_copied == len(img.blobs)
    assert has_image(registry.host, repo, img, "v1")


@pytest.mark.timeout(60, method="thread")  # a regression here is a deadlock
def test_same_registry_without_mount_and_one_request_slot():
    """Streaming within one registry must not hold a request slot while waiting for a
    second one (the GET is opened before the PUT takes its slot)."""
    img = build_image(layers=3, layer_size=200000)
    with MemRegistry(mount=False) as reg:
        push_image(reg.host, "app", img, "v1")
        client = RegClient([Host(name=reg.host, tls=TLS_DISABLED, req_concurrent=1)])
        result = copy_image(client, R(f"{reg.host}/app:v1"), R(f"{reg.host}/copy:v1"))
        assert result.blobs_copied == len(img.blobs) and result.blobs_mounted == 0
        assert reg.max_concurrent <= 2
        assert has_image(reg.host, "copy", img, "v1")


def test_upload_retried_after_503_with_one_request_slot():
    """A PUT retried after a server error re-opens its source GET before taking the slot
    again, so a same-registry copy at reqConcurrent: 1 cannot deadlock on the retry."""
    from regbot.http.client import HTTPClient
    from regbot.scheme.reg import RegScheme

    img = build_image(layers=2, layer_size=50000)
    with MemRegistry(mount=False) as reg:
        push_image(reg.host, "app", img, "v1")
        front = FaultFront(reg)
        try:
            front.add("PUT", r"/v2/copy/blobs/uploads/", "status", times=2, status=503)
            client = RegClient([Host(name=front.host, tls=TLS_DISABLED, req_concurrent=1)])
            scheme = client.scheme(R(f"{front.host}/app:v1"))
            assert isinstance(scheme, RegScheme)
            scheme.http = HTTPClient(client.hosts, client.limits, "test", backoff_base=0.01,
                                     backoff_max=0.05)
            result = copy_image(client, R(f"{front.host}/app:v1"), R(f"{front.host}/copy:v1"))
            assert result.blobs_copied == len(img.blobs)
            assert front.hits("status") == 2
            assert has_image(reg.host, "copy", img, "v1")
        finally:
            front.stop()
