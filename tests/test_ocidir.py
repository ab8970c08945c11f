"""OCIDirScheme on real directories: every Scheme method, tags, referrers, GC, locking."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

from regbot.errors import (
    DigestMismatch,
    NotFound,
    RegistryError,
    TooLarge,
    Unsupported,
)
from regbot.scheme.ocidir import OCIDirScheme
from regbot.scheme.ocidir.referrer import fallback_tag
from regbot.types.descriptor import Descriptor
from regbot.types.manifest import MT_OCI_INDEX, Manifest
from regbot.types.ref import Reference
from tests.support import images as im

REPO_ROOT = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------- helpers


@pytest.fixture
def scheme() -> OCIDirScheme:
    return OCIDirScheme(gc_grace=0)


def ref_of(path: Path, tag: str = "", digest: str = "") -> Reference:
    text = f"ocidir://{path}"
    if tag:
        text += f":{tag}"
    if digest:
        text += f"@{digest}"
    return Reference.parse(text)


def push(scheme: OCIDirScheme, path: Path, image: im.Image, tag: str | None = None) -> None:
    """Push like a copy does: blobs, children by digest, then the top manifest."""
    ref = ref_of(path, tag or "latest")
    for m in image.all_manifests():
        for digest, data in m.blobs.items():
            scheme.blob_put(ref, Descriptor("application/octet-stream", digest, len(data)), data)
    for m in image.all_manifests():
        target = ref_of(path, tag) if (m is image and tag) else ref_of(path, digest=m.digest)
        scheme.manifest_put(target, Manifest.from_bytes(m.manifest))


def index_json(path: Path) -> dict:
    return json.loads((path / "index.json").read_text())


def entries_by_name(path: Path) -> dict[str, str]:
    out = {}
    for entry in index_json(path)["manifests"]:
        name = (entry.get("annotations") or {}).get(im.REF_NAME, "")
        out.setdefault(name, entry["digest"])
    return out


def blob_files(path: Path) -> set[str]:
    return {f"sha256:{p.name}" for p in (path / "blobs" / "sha256").iterdir()}


def no_temp_files(path: Path) -> bool:
    return not [p for p in path.rglob("*") if p.name.startswith(".tmp-")]


# ----------------------------------------------------------------- reading


def test_reads_a_layout_written_by_another_tool(tmp_path, scheme):
    index = im.build_index(seed=1)
    im.write_ocidir(tmp_path, index, tag="v1")
    got = scheme.manifest_get(ref_of(tmp_path, "v1"))
    assert (got.media_type, got.digest, got.raw) == (im.MT_OCI_INDEX, index.digest, index.manifest)
    child = index.child("linux/arm64")
    by_digest = scheme.manifest_get(ref_of(tmp_path, digest=child.digest))
    assert by_digest.raw == child.manifest and by_digest.media_type == im.MT_OCI_MANIFEST

    head = scheme.manifest_head(ref_of(tmp_path, "v1"))
    assert (head.media_type, head.digest, head.size, head.raw) == (
        im.MT_OCI_INDEX, index.digest, index.size, b"")
    head = scheme.manifest_head(ref_of(tmp_path, digest=child.digest))
    assert (head.media_type, head.size) == (im.MT_OCI_MANIFEST, child.size)

    layer = child.layers[0]
    desc = scheme.blob_head(ref_of(tmp_path), layer["digest"])
    assert (desc.digest, desc.size) == (layer["digest"], layer["size"])
    with scheme.blob_get(ref_of(tmp_path), layer["digest"], layer["size"]) as reader:
        assert reader.read_all() == child.blobs[layer["digest"]]
    assert scheme.tag_list(ref_of(tmp_path)) == ["v1"]


def test_missing_layout_is_not_found_naming_it(tmp_path, scheme):
    missing = tmp_path / "nowhere" / "layout"
    ref = ref_of(missing, "v1")
    for call in (lambda: scheme.manifest_get(ref), lambda: scheme.manifest_head(ref),
                 lambda: scheme.tag_list(ref), lambda: scheme.referrers(ref),
                 lambda: scheme.blob_head(ref, im.sha256(b"x")),
                 lambda: scheme.blob_get(ref, im.sha256(b"x")),
                 lambda: scheme.tag_delete(ref)):
        with pytest.raises(NotFound) as err:
            call()
        assert str(missing) in str(err.value)
    scheme.ping(ref)  # a new layout is fine: the first write creates it
    assert not missing.exists()

    (tmp_path / "afile").write_text("x")
    with pytest.raises(RegistryError, match="not a directory"):
        scheme.ping(ref_of(tmp_path / "afile"))


def test_missing_tag_manifest_and_blob_are_not_found(tmp_path, scheme):
    im.write_ocidir(tmp_path, im.build_image(), tag="v1")
    with pytest.raises(NotFound, match="tag nope not found") as err:
        scheme.manifest_get(ref_of(tmp_path, "nope"))
    assert f"ocidir://{tmp_path}:nope" in str(err.value)
    with pytest.raises(NotFound):
        scheme.manifest_head(ref_of(tmp_path, digest=im.sha256(b"nothing")))
    with pytest.raises(NotFound, match="blob sha256:"):
        scheme.blob_head(ref_of(tmp_path), im.sha256(b"nothing"))
    with pytest.raises(NotFound):
        scheme.blob_get(ref_of(tmp_path), im.sha256(b"nothing"))


def test_invalid_digests_are_refused_without_touching_paths(tmp_path, scheme):
    im.write_ocidir(tmp_path, im.build_image(), tag="v1")
    ref = ref_of(tmp_path)
    with pytest.raises(RegistryError, match="invalid digest"):
        scheme.blob_head(ref, "sha256:../../../etc/passwd")
    with pytest.raises(Unsupported):
        scheme.blob_get(ref, "md5:" + "0" * 32)


def test_unsupported_layout_version(tmp_path, scheme):
    im.write_ocidir(tmp_path, im.build_image(), tag="v1")
    (tmp_path / "oci-layout").write_text('{"imageLayoutVersion": "9.9.9"}')
    with pytest.raises(Unsupported, match="9.9.9"):
        scheme.manifest_get(ref_of(tmp_path, "v1"))
    with pytest.raises(Unsupported):
        scheme.ping(ref_of(tmp_path))


def test_repo_list_is_unsupported(tmp_path, scheme):
    with pytest.raises(Unsupported, match="no repository list"):
        scheme.repo_list(ref_of(tmp_path))


# ----------------------------------------------------------------- writing


def test_first_write_creates_the_layout(tmp_path, scheme):
    path = tmp_path / "new" / "layout"
    image = im.build_image(docker=True)
    push(scheme, path, image, "v1")
    assert json.loads((path / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = index_json(path)
    assert index["schemaVersion"] == 2 and index["mediaType"] == MT_OCI_INDEX
    [entry] = index["manifests"]
    assert entry["digest"] == image.digest and entry["size"] == image.size
    assert entry["mediaType"] == im.MT_DOCKER_MANIFEST
    assert entry["annotations"][im.REF_NAME] == "v1"
    assert blob_files(path) == {image.digest, *image.blobs}
    for digest in blob_files(path):
        data = (path / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()
        assert im.sha256(data) == digest
    got = scheme.manifest_get(ref_of(path, "v1"))
    assert got.raw == image.manifest and got.media_type == im.MT_DOCKER_MANIFEST
    assert no_temp_files(path)


@pytest.mark.skipif(not shutil.which("skopeo"), reason="skopeo not installed")
def test_skopeo_reads_what_we_write_and_we_read_what_skopeo_writes(tmp_path, scheme):
    ours = tmp_path / "ours"
    index = im.build_index(seed=3)
    push(scheme, ours, index, "v1")
    theirs = tmp_path / "theirs"
    # skopeo verifies every blob it copies against its digest.
    subprocess.run(["skopeo", "--insecure-policy", "copy", "--all", "--preserve-digests",
                    f"oci:{ours}:v1", f"oci:{theirs}:v2"], check=True, capture_output=True)
    got = scheme.manifest_get(ref_of(theirs, "v2"))
    assert got.digest == index.digest
    for child in index.children:
        assert scheme.manifest_get(ref_of(theirs, digest=child.digest)).raw == child.manifest
        for digest, data in child.blobs.items():
            assert scheme.blob_get(ref_of(theirs), digest).read_all() == data


def test_manifest_put_checks_the_digest(tmp_path, scheme):
    image = im.build_image()
    push(scheme, tmp_path, image, "v1")
    other = im.build_image(seed=9)
    with pytest.raises(DigestMismatch):
        scheme.manifest_put(ref_of(tmp_path, digest=image.digest), Manifest.from_bytes(other.manifest))
    forged = Manifest(media_type=image.media_type, digest=other.digest, size=image.size,
                      raw=image.manifest)
    with pytest.raises(DigestMismatch):
        scheme.manifest_put(ref_of(tmp_path, "v2"), forged)
    assert scheme.tag_list(ref_of(tmp_path)) == ["v1"]
    with pytest.raises(RegistryError, match="no body"):
        scheme.manifest_put(ref_of(tmp_path, "v3"), scheme.manifest_head(ref_of(tmp_path, "v1")))


def test_push_by_digest_records_an_untagged_entry_until_a_parent_references_it(tmp_path, scheme):
    index = im.build_index(seed=4)
    ref = ref_of(tmp_path)
    for child in index.children:
        for digest, data in child.blobs.items():
            scheme.blob_put(ref, Descriptor("", digest, len(data)), data)
        scheme.manifest_put(ref_of(tmp_path, digest=child.digest), Manifest.from_bytes(child.manifest))
    entries = index_json(tmp_path)["manifests"]
    assert sorted(e["digest"] for e in entries) == sorted(c.digest for c in index.children)
    assert all(im.REF_NAME not in (e.get("annotations") or {}) for e in entries)
    # the same digest again: still one entry
    child = index.children[0]
    scheme.manifest_put(ref_of(tmp_path, digest=child.digest), Manifest.from_bytes(child.manifest))
    assert len(index_json(tmp_path)["manifests"]) == 2

    scheme.manifest_put(ref_of(tmp_path, "multi"), Manifest.from_bytes(index.manifest))
    # As regclient's index.json after a copy: the tag only; children live through it.
    assert entries_by_name(tmp_path) == {"multi": index.digest}
    assert scheme.manifest_get(ref_of(tmp_path, digest=child.digest)).raw == child.manifest

    lone = im.build_image(seed=5)
    push(scheme, tmp_path, lone)  # digest only, nothing references it
    assert entries_by_name(tmp_path) == {"multi": index.digest, "": lone.digest}
    scheme.close(ref)
    assert scheme.manifest_get(ref_of(tmp_path, digest=lone.digest)).raw == lone.manifest


def test_tag_move_replaces_the_entry_and_close_collects_the_old_manifest(tmp_path, scheme):
    old = im.build_image(seed=10, layers=2)
    new = im.build_image(seed=11, shared_layers=old.layers_with_data()[:1], layers=1)
    push(scheme, tmp_path, old, "v1")
    push(scheme, tmp_path, old, "keep")
    push(scheme, tmp_path, new, "v1")
    assert entries_by_name(tmp_path) == {"v1": new.digest, "keep": old.digest}
    assert len(index_json(tmp_path)["manifests"]) == 2
    assert scheme.manifest_get(ref_of(tmp_path, "v1")).digest == new.digest

    scheme.tag_delete(ref_of(tmp_path, "keep"))
    # As regclient: until close, the old manifest is still there by digest.
    assert scheme.manifest_get(ref_of(tmp_path, digest=old.digest)).raw == old.manifest
    scheme.close(ref_of(tmp_path))
    with pytest.raises(NotFound):
        scheme.manifest_get(ref_of(tmp_path, digest=old.digest))
    assert blob_files(tmp_path) == {new.digest, *new.blobs}
    shared = old.layers[0]["digest"]
    assert shared in blob_files(tmp_path)
    assert scheme.blob_get(ref_of(tmp_path), shared).read_all() == old.blobs[shared]


def test_close_collects_only_what_this_instance_changed_and_only_old_files(tmp_path):
    image = im.build_image(seed=12)
    im.write_ocidir(tmp_path, image, tag="v1")
    stray = tmp_path / "blobs" / "sha256" / ("0" * 64)
    stray.write_bytes(b"garbage")
    old_tmp = tmp_path / "blobs" / "sha256" / ".tmp-crashed"
    old_tmp.write_bytes(b"partial")
    reader = OCIDirScheme(gc_grace=0)
    reader.manifest_get(ref_of(tmp_path, "v1"))
    reader.close(ref_of(tmp_path))  # nothing written by this instance: no collection
    assert stray.exists()

    patient = OCIDirScheme()  # default grace period: fresh files are kept
    patient.tag_delete(ref_of(tmp_path, "v1"))
    patient.close(ref_of(tmp_path))
    assert stray.exists() and image.digest in blob_files(tmp_path)

    eager = OCIDirScheme(gc_grace=60)
    im.write_ocidir(tmp_path, image, tag="v1")
    eager.tag_delete(ref_of(tmp_path, "v1"))
    past = time.time() - 3600
    for p in (tmp_path / "blobs" / "sha256").iterdir():
        os.utime(p, (past, past))
    fresh = im.sha256(b"fresh")
    eager.blob_put(ref_of(tmp_path), Descriptor("", fresh, 5), b"fresh")
    eager.close(ref_of(tmp_path))
    assert blob_files(tmp_path) == {fresh}
    assert not old_tmp.exists()
    eager.close(ref_of(tmp_path))  # a second close with no change is a no-op
    assert blob_files(tmp_path) == {fresh}


def test_gc_keeps_referrers_and_refuses_to_run_over_a_corrupt_manifest(tmp_path, scheme):
    index = im.build_index(seed=13)
    push(scheme, tmp_path, index, "v1")
    sig = im.build_artifact(index)
    push(scheme, tmp_path, sig)
    garbage = im.sha256(b"garbage")
    scheme.blob_put(ref_of(tmp_path), Descriptor("", garbage, 7), b"garbage")
    past = time.time() - 10
    for p in (tmp_path / "blobs" / "sha256").iterdir():
        os.utime(p, (past, past))
    # corrupt a child manifest: the collector cannot know its blobs, so it deletes nothing
    child = index.children[0]
    child_file = tmp_path / "blobs" / "sha256" / child.digest.split(":")[1]
    good = child_file.read_bytes()
    child_file.write_bytes(good.replace(b"schemaVersion", b"schemaVersioN"))
    os.utime(child_file, (past, past))
    scheme.close(ref_of(tmp_path))
    assert garbage in blob_files(tmp_path)

    child_file.write_bytes(good)
    scheme.blob_put(ref_of(tmp_path), Descriptor("", garbage, 7), b"garbage")
    for p in (tmp_path / "blobs" / "sha256").iterdir():
        os.utime(p, (past, past))
    scheme.close(ref_of(tmp_path))
    files = blob_files(tmp_path)
    assert garbage not in files
    assert {sig.digest, *sig.blobs, index.digest} <= files
    for c in index.children:
        assert {c.digest, *c.blobs} <= files
    assert [d.digest for d in scheme.referrers(ref_of(tmp_path, "v1"))] == [sig.digest]


# ----------------------------------------------------------------- tags


def test_tag_list_is_sorted_with_limit_and_last(tmp_path, scheme):
    image = im.build_image(seed=20)
    for tag in ["b", "a", "d", "c", "e"]:
        push(scheme, tmp_path, image, tag)
    ref = ref_of(tmp_path)
    assert scheme.tag_list(ref) == ["a", "b", "c", "d", "e"]
    assert scheme.tag_list(ref, limit=2) == ["a", "b"]
    assert scheme.tag_list(ref, last="b") == ["c", "d", "e"]
    assert scheme.tag_list(ref, limit=2, last="b") == ["c", "d"]
    assert scheme.tag_list(ref, last="e") == []
    assert scheme.tag_list(ref, limit=0) == []


def test_full_names_in_ref_name_are_read_as_tags(tmp_path, scheme):
    image = im.build_image(seed=21)
    im.write_ocidir(tmp_path, image, tag="docker.io/library/app:3.1")
    assert scheme.tag_list(ref_of(tmp_path)) == ["3.1"]
    assert scheme.manifest_get(ref_of(tmp_path, "3.1")).digest == image.digest
    scheme.tag_delete(ref_of(tmp_path, "3.1"))
    assert scheme.tag_list(ref_of(tmp_path)) == []


def test_tag_delete_keeps_sibling_tags(tmp_path, scheme):
    image = im.build_image(seed=22)
    other = im.build_image(seed=23)
    push(scheme, tmp_path, image, "one")
    push(scheme, tmp_path, image, "two")
    push(scheme, tmp_path, other, "three")
    scheme.tag_delete(ref_of(tmp_path, "one"))
    assert scheme.tag_list(ref_of(tmp_path)) == ["three", "two"]
    assert scheme.manifest_get(ref_of(tmp_path, "two")).digest == image.digest
    assert scheme.manifest_get(ref_of(tmp_path, digest=image.digest)).raw == image.manifest
    with pytest.raises(NotFound, match="tag one not found"):
        scheme.tag_delete(ref_of(tmp_path, "one"))
    scheme.close(ref_of(tmp_path))
    assert scheme.manifest_get(ref_of(tmp_path, "two")).digest == image.digest


def test_manifest_delete_removes_every_tag_of_the_digest(tmp_path, scheme):
    image = im.build_image(seed=24)
    other = im.build_image(seed=25)
    push(scheme, tmp_path, image, "one")
    push(scheme, tmp_path, image, "two")
    push(scheme, tmp_path, other, "three")
    scheme.manifest_delete(ref_of(tmp_path, "one"))  # a tag is resolved to its digest
    assert scheme.tag_list(ref_of(tmp_path)) == ["three"]
    assert image.digest not in blob_files(tmp_path)
    with pytest.raises(NotFound):
        scheme.manifest_get(ref_of(tmp_path, digest=image.digest))
    with pytest.raises(NotFound):
        scheme.manifest_delete(ref_of(tmp_path, digest=image.digest))
    # a blob that is not a manifest is not deleted as one
    layer = other.layers[0]["digest"]
    with pytest.raises(NotFound):
        scheme.manifest_delete(ref_of(tmp_path, digest=layer))
    assert layer in blob_files(tmp_path)


# ----------------------------------------------------------------- referrers


def test_referrers_use_the_fallback_tag(tmp_path, scheme):
    index = im.build_index(seed=30)
    push(scheme, tmp_path, index, "v1")
    ref = ref_of(tmp_path, "v1")
    assert scheme.referrers(ref) == []
    sig = im.build_artifact(index, "application/vnd.example.sig", b"sig")
    sbom = im.build_artifact(index, "application/vnd.example.sbom", b"sbom",
                             annotations={"note": "x"})
    push(scheme, tmp_path, sig)
    push(scheme, tmp_path, sbom)
    push(scheme, tmp_path, sig)  # again: not listed twice
    tag = im.referrers_tag(index.digest)
    assert fallback_tag(index.digest) == tag
    assert sorted(scheme.tag_list(ref_of(tmp_path))) == sorted([tag, "v1"])
    stored = scheme.manifest_get(ref_of(tmp_path, tag))
    assert stored.data["manifests"] == im.build_referrers_index([sig, sbom]).data["manifests"]

    found = scheme.referrers(ref_of(tmp_path, digest=index.digest))
    assert [d.digest for d in found] == [sig.digest, sbom.digest]
    assert found[1].annotations == {"note": "x"}
    assert found[1].artifact_type == "application/vnd.example.sbom"
    only = scheme.referrers(ref, artifact_type="application/vnd.example.sig")
    assert [d.digest for d in only] == [sig.digest]

    scheme.manifest_delete(ref_of(tmp_path, digest=sig.digest))
    assert [d.digest for d in scheme.referrers(ref)] == [sbom.digest]
    scheme.manifest_delete(ref_of(tmp_path, digest=sbom.digest))
    assert scheme.referrers(ref) == []
    assert scheme.tag_list(ref_of(tmp_path)) == ["v1"]


def test_concurrent_referrer_pushes_are_not_lost(tmp_path, scheme):
    image = im.build_image(seed=31)
    push(scheme, tmp_path, image, "v1")
    artifacts = [im.build_artifact(image, payload=f"sig {i}".encode()) for i in range(12)]
    errors: list[BaseException] = []

    def run(art: im.Image) -> None:
        try:
            push(OCIDirScheme(), tmp_path, art)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(a,)) for a in artifacts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    found = {d.digest for d in scheme.referrers(ref_of(tmp_path, "v1"))}
    assert found == {a.digest for a in artifacts}


# ----------------------------------------------------------------- blobs


def test_blob_put_computes_an_unknown_digest(tmp_path, scheme):
    data = b"some content"
    desc = scheme.blob_put(ref_of(tmp_path), Descriptor("application/x-test", "", -1), data)
    assert (desc.digest, desc.size, desc.media_type) == (im.sha256(data), len(data), "application/x-test")
    assert scheme.blob_get(ref_of(tmp_path), desc.digest).read_all() == data


def test_blob_put_digest_mismatch_leaves_nothing_behind(tmp_path, scheme):
    ref = ref_of(tmp_path)
    good = im.sha256(b"expected")
    with pytest.raises(DigestMismatch, match="expected sha256:"):
        scheme.blob_put(ref, Descriptor("", good, 8), b"tampered")
    with pytest.raises(DigestMismatch, match="bytes"):
        scheme.blob_put(ref, Descriptor("", good, 9), b"expected")

    def broken():
        yield b"x" * 1000
        raise OSError("source went away")

    with pytest.raises(OSError, match="went away"):
        scheme.blob_put(ref, Descriptor("", good, 8000), broken)
    assert list((tmp_path / "blobs" / "sha256").iterdir()) == []
    assert no_temp_files(tmp_path)


def test_blob_put_retries_a_callable_source_from_the_start(tmp_path, scheme):
    chunks = [b"a" * 10, b"b" * 10]
    calls = []

    def source():
        calls.append(1)
        return iter(chunks)

    desc = scheme.blob_put(ref_of(tmp_path), Descriptor("", im.sha256(b"".join(chunks)), 20), source)
    assert desc.size == 20 and calls == [1]


def test_blob_limit(tmp_path):
    limited = OCIDirScheme(blob_limit=100)
    ref = ref_of(tmp_path)
    big = b"x" * 101
    with pytest.raises(TooLarge):
        limited.blob_put(ref, Descriptor("", im.sha256(big), 101), big)
    with pytest.raises(TooLarge):  # size unknown: stopped while streaming
        limited.blob_put(ref, Descriptor("", "", -1), lambda: iter([b"x" * 60, b"x" * 60]))
    assert no_temp_files(tmp_path)
    OCIDirScheme().blob_put(ref, Descriptor("", im.sha256(big), 101), big)
    with pytest.raises(TooLarge):
        limited.blob_get(ref, im.sha256(big))


def test_corrupt_blob_is_detected_before_its_last_chunk(tmp_path, scheme):
    size = 3 * 1024 * 1024 + 17
    data = im.random_blob(size, seed=40)
    digest = im.sha256(data)
    ref = ref_of(tmp_path)
    scheme.blob_put(ref, Descriptor("", digest, size), data)
    path = tmp_path / "blobs" / "sha256" / digest.split(":")[1]
    with open(path, "r+b") as fh:
        fh.write(b"\x00" if data[0] != 0 else b"\x01")
    got = 0
    reader = scheme.blob_get(ref, digest, size)
    with pytest.raises(DigestMismatch, match=digest):
        for chunk in reader:
            got += len(chunk)
    assert 0 < got < size  # the consumer never saw the blob complete
    with pytest.raises(DigestMismatch):
        scheme.blob_get(ref, digest, size - 1)  # size differs from the descriptor's


def test_corrupt_manifest_is_detected(tmp_path, scheme):
    image = im.build_image(seed=41)
    push(scheme, tmp_path, image, "v1")
    path = tmp_path / "blobs" / "sha256" / image.digest.split(":")[1]
    path.write_bytes(image.manifest.replace(b'"schemaVersion": 2', b'"schemaVersion":  2'))
    with pytest.raises(DigestMismatch):
        scheme.manifest_get(ref_of(tmp_path, "v1"))
    with pytest.raises(DigestMismatch):
        scheme.manifest_get(ref_of(tmp_path, digest=image.digest))


def test_blob_streams_with_flat_memory(tmp_path, scheme):
    size = 24 * 1024 * 1024
    digest = im.stream_digest(size, seed=42)
    ref = ref_of(tmp_path)
    tracemalloc.start()
    try:
        scheme.blob_put(ref, Descriptor("", digest, size), lambda: im.blob_stream(size, seed=42))
        hasher = hashlib.sha256()
        for chunk in scheme.blob_get(ref, digest, size):
            hasher.update(chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "sha256:" + hasher.hexdigest() == digest
    assert peak < 8 * 1024 * 1024


def test_blob_mount_within_one_layout(tmp_path, scheme):
    data = b"mounted"
    scheme.blob_put(ref_of(tmp_path), Descriptor("", im.sha256(data), len(data)), data)
    assert scheme.blob_mount(ref_of(tmp_path, "a"), ref_of(tmp_path, "b"), im.sha256(data))
    assert not scheme.blob_mount(ref_of(tmp_path, "a"), ref_of(tmp_path, "b"), im.sha256(b"no"))
    assert not scheme.blob_mount(ref_of(tmp_path / "other"), ref_of(tmp_path), im.sha256(data))


# ----------------------------------------------------------------- concurrency


def test_concurrent_threads_pushing_tags(tmp_path):
    image = im.build_image(seed=50)
    shared = OCIDirScheme()
    errors: list[BaseException] = []

    def run(worker: int) -> None:
        try:
            # half the threads share one instance, half have their own
            scheme = shared if worker % 2 else OCIDirScheme()
            for i in range(6):
                push(scheme, tmp_path, image, f"t{worker}-{i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    tags = shared.tag_list(ref_of(tmp_path))
    assert sorted(tags) == sorted(f"t{w}-{i}" for w in range(8) for i in range(6))
    assert no_temp_files(tmp_path)


_CHILD = """
import os, sys, time
from regbot.scheme.ocidir import OCIDirScheme
from regbot.types.manifest import Manifest
from regbot.types.ref import Reference
from regbot.types.descriptor import Descriptor
from tests.support import images as im
path, prefix, count, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
scheme = OCIDirScheme()
image = im.build_image(seed=51)
deadline = time.monotonic() + 30
while not os.path.exists(go) and time.monotonic() < deadline:  # start together
    time.sleep(0.005)
for i in range(count):
    ref = Reference.parse(f"ocidir://{path}:{prefix}{i}")
    for digest, data in image.blobs.items():
        scheme.blob_put(ref, Descriptor("", digest, len(data)), data)
    scheme.manifest_put(ref, Manifest.from_bytes(image.manifest))
"""


def test_concurrent_processes_pushing_tags(tmp_path):
    count = 25
    layout = tmp_path / "layout"
    go = tmp_path / "go"
    procs = [
        subprocess.Popen([sys.executable, "-c", _CHILD, str(layout), prefix, str(count), str(go)],
                         cwd=REPO_ROOT, stderr=subprocess.PIPE)
        for prefix in ("p-", "q-", "s-")
    ]
    image = im.build_image(seed=51)
    local = OCIDirScheme()
    time.sleep(0.3)  # let the children import and reach their start line
    go.touch()
    for i in range(count):
        push(local, layout, image, f"r-{i}")
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    tags = local.tag_list(ref_of(layout))
    prefixes = ("p-", "q-", "r-", "s-")
    assert sorted(tags) == sorted(f"{p}{i}" for p in prefixes for i in range(count))
    assert len(index_json(layout)["manifests"]) == len(prefixes) * count
    assert no_temp_files(tmp_path)


def test_a_forked_child_does_not_inherit_a_held_lock(tmp_path):
    from regbot.scheme.ocidir.layout import layout_lock

    image = im.build_image(seed=52)
    scheme = OCIDirScheme()
    push(scheme, tmp_path, image, "parent")
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with layout_lock(os.path.abspath(tmp_path)):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(5)
    pid = os.fork()
    if pid == 0:  # child: waits for the parent's flock, then pushes
        code = 1
        try:
            push(OCIDirScheme(), tmp_path, image, "child")
            code = 0
        finally:
            os._exit(code)
    time.sleep(0.3)
    assert scheme.tag_list(ref_of(tmp_path)) == ["parent"]  # child still waiting
    release.set()
    holder.join()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.02)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("forked child deadlocked on an inherited lock")
    assert os.waitstatus_to_exitcode(status) == 0
    assert scheme.tag_list(ref_of(tmp_path)) == ["child", "parent"]
