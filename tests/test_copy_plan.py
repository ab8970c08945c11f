"""Planning a copy (regbot/copy/plan.py) against an in-memory client."""

from __future__ import annotations

import base64
import json

import pytest

from regbot.copy import (
    BlobUnit,
    CopyOptions,
    ManifestUnit,
    Plan,
    TagUnit,
    build_plan,
    topological_order,
)
from regbot.copy.units import INLINE_MANIFEST_MAX, Unit
from regbot.errors import RegbotError
from regbot.types.manifest import MT_DOCKER_V1_SIGNED
from regbot.types.ref import Reference
from tests.support.fakeclient import FakeClient
from tests.support.images import (
    Image,
    build_artifact,
    build_image,
    build_index,
    random_blob,
    sha256,
)

SRC = "src.example/app"
TGT = "tgt.example/mirror"


def load(client: FakeClient, repo: str, image: Image, tag: str | None = None,
         external: bool = False) -> str:
    """Put an image tree into the fake client, children first."""
    for m in image.all_manifests():
        for data in m.blobs.values():
            client.add_blob(repo, data)
        if external:
            for data in m.external.values():
                client.add_blob(repo, data)
    for m in image.all_manifests():
        client.add_manifest(repo, m.manifest, m.media_type,
                            tag if m is image else None)
    return image.digest


def plan(client: FakeClient, src: str = SRC + ":v1", tgt: str = TGT + ":v1",
         **opts) -> Plan:
    return build_plan(client, Reference.parse(src), Reference.parse(tgt), CopyOptions(**opts))


def by_kind(p: Plan, cls: type[Unit]) -> list:
    return [u for u in p.units if type(u) is cls]


def manifest_for(p: Plan, digest: str) -> ManifestUnit:
    found = [u for u in by_kind(p, ManifestUnit) if u.digest == digest]
    assert len(found) == 1, found
    return found[0]


def blob_ids(p: Plan) -> dict[str, str]:
    return {u.digest: u.id for u in by_kind(p, BlobUnit)}


def test_single_image_blobs_before_manifest_and_tag():
    client = FakeClient()
    img = build_image(layers=3)
    load(client, SRC, img, "v1")
    p = plan(client)
    assert not p.up_to_date
    blobs = blob_ids(p)
    assert set(blobs) == set(img.blobs)  # config + 3 layers
    (m,) = by_kind(p, ManifestUnit)
    assert m.tgt == TGT + ":v1" and m.digest == img.digest
    assert set(m.deps) == set(blobs.values())
    assert m.raw == img.manifest and m.media_type == img.media_type
    # blob references are pinned by digest on both sides
    for u in by_kind(p, BlobUnit):
        assert u.src == f"{SRC}@{u.digest}" and u.tgt == f"{TGT}@{u.digest}"
    assert [u.id for u in topological_order(p.units)][-1] == m.id
    # only what was needed was read: one target HEAD, one source GET, nothing else
    assert client.count("manifest_head") == 1
    assert client.count("manifest_get") == 1
    assert client.count("blob_head") == 0


def test_up_to_date_target_costs_one_head_each_side():
    client = FakeClient()
    img = build_image()
    load(client, SRC, img, "v1")
    load(client, TGT, img, "v1")
    p = plan(client)
    assert p.up_to_date and p.units == []
    assert client.calls[("manifest_head", TGT + ":v1")] == 1
    assert client.calls[("manifest_head", SRC + ":v1")] == 1
    assert client.count("manifest_get") == 0


def test_target_with_other_digest_is_replaced():
    client = FakeClient()
    load(client, SRC, build_image(seed=1), "v1")
    load(client, TGT, build_image(seed=2), "v1")
    p = plan(client)
    assert not p.up_to_date
    assert len(by_kind(p, ManifestUnit)) == 1


def test_index_children_by_digest_then_index_shared_layers_once():
    client = FakeClient()
    base = build_image("linux/amd64", seed=7, layers=1)
    shared = base.layers_with_data()
    amd = build_image("linux/amd64", layers=1, shared_layers=shared)
    arm = build_image("linux/arm64", layers=1, shared_layers=shared)
    idx = build_index(children=[amd, arm])
    load(client, SRC, idx, "v1")
    p = plan(client)
    blobs = blob_ids(p)
    # shared layer + 1 own layer + config per platform
    assert len(blobs) == 1 + 2 + 2
    assert len(by_kind(p, BlobUnit)) == len(blobs)
    children = [manifest_for(p, c.digest) for c in (amd, arm)]
    for child, img in zip(children, (amd, arm), strict=True):
        assert child.tgt == f"{TGT}@{img.digest}"
        assert set(child.deps) == {blobs[d] for d in img.blobs}
    top = manifest_for(p, idx.digest)
    assert top.tgt == TGT + ":v1"
    assert set(top.deps) == {c.id for c in children}
    assert top.raw == idx.manifest  # byte for byte


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        (["linux/arm64"], {"linux/arm64/v8"}),  # no variant matches v8
        (["linux/arm64/v8"], {"linux/arm64/v8"}),
        (["linux/arm/v7"], {"linux/arm/v7"}),
        (["linux/arm"], {"linux/arm/v7"}),  # arm defaults to v7
        (["linux/amd64", "linux/arm/v6"], {"linux/amd64", "linux/arm/v6"}),
        (["windows/amd64"], set()),
    ],
)
def test_platform_filter(wanted, expected):
    client = FakeClient()
    platforms = ["linux/amd64", "linux/arm64/v8", "linux/arm/v7", "linux/arm/v6"]
    idx = build_index(platforms, layers=1)
    load(client, SRC, idx, "v1")
    p = plan(client, platforms=wanted)
    copied = {u.digest for u in by_kind(p, ManifestUnit)}
    assert {c.platform for c in idx.children if c.digest in copied} == expected
    top = manifest_for(p, idx.digest)
    assert top.raw == idx.manifest  # still lists every platform
    # no blob of a left-out platform is planned
    left_out = {d for c in idx.children if c.platform not in expected for d in c.blobs}
    assert not left_out & set(blob_ids(p))


def test_platform_filter_empty_string_keeps_entries_without_platform():
    client = FakeClient()
    img = build_image()
    art = build_artifact(img)
    idx = build_index(children=[img, art])  # art has no platform
    load(client, SRC, idx, "v1")
    with_blank = plan(client, platforms=[""])
    assert {u.digest for u in by_kind(with_blank, ManifestUnit)} == {art.digest, idx.digest}
    without = plan(client, platforms=["linux/amd64"])
    assert {u.digest for u in by_kind(without, ManifestUnit)} == {img.digest, idx.digest}


def test_invalid_platform_is_a_regbot_error():
    client = FakeClient()
    load(client, SRC, build_index(), "v1")
    with pytest.raises(RegbotError, match="invalid platform"):
        plan(client, platforms=["linux"])


def test_external_layers_skipped_unless_included():
    client = FakeClient()
    img = build_image(layers=1, external_layers=1)
    load(client, SRC, img, "v1", external=True)
    (ext,) = img.external
    assert ext not in blob_ids(plan(client))
    assert ext in blob_ids(plan(client, include_external=True))


def test_force_recursive_on_up_to_date_target_plans_everything():
    client = FakeClient()
    idx = build_index()
    load(client, SRC, idx, "v1")
    load(client, TGT, idx, "v1")
    assert plan(client).up_to_date
    p = plan(client, force_recursive=True)
    assert not p.up_to_date
    assert {u.digest for u in by_kind(p, ManifestUnit)} == {m.digest for m in idx.all_manifests()}
    assert set(blob_ids(p)) == set(idx.all_blobs())


def test_fast_check_skips_even_with_referrers_and_digest_tags():
    client = FakeClient()
    img = build_image()
    load(client, SRC, img, "v1")
    load(client, SRC, build_artifact(img))
    load(client, TGT, img, "v1")
    assert plan(client, referrers=True, fast_check=True, digest_tags=True).up_to_date
    assert client.count("referrers") == 0 and client.count("tag_list") == 0


def test_referrers_follow_subject_and_tag_comes_last():
    client = FakeClient()
    img = build_image()
    sig = build_artifact(img, "application/vnd.example.sig")
    sbom = build_artifact(img, "application/vnd.example.sbom", b"sbom")
    sig_of_sig = build_artifact(sig, "application/vnd.example.sig", b"sig of sig")
    load(client, SRC, img, "v1")
    for art in (sig, sbom, sig_of_sig):
        load(client, SRC, art)
    p = plan(client, referrers=True)
    by_digest = manifest_for(p, img.digest)
    assert by_digest.tgt == f"{TGT}@{img.digest}"
    (tag,) = by_kind(p, TagUnit)
    assert tag.tgt == TGT + ":v1" and tag.digest == img.digest and tag.raw == img.manifest
    m_sig, m_sbom, m_sos = (manifest_for(p, a.digest) for a in (sig, sbom, sig_of_sig))
    for unit in (m_sig, m_sbom):
        assert by_digest.id in unit.deps  # subject first
        assert unit.tgt.startswith(TGT + "@")
    assert m_sig.id in m_sos.deps  # referrer of a referrer, recursively
    # referrers of one subject are pushed one after another (fallback index updates)
    first, second = sorted((m_sig, m_sbom), key=lambda u: p.units.index(u))
    assert first.id in second.deps
    assert set(tag.deps) >= {by_digest.id, m_sig.id, m_sbom.id, m_sos.id}
    order = [u.id for u in topological_order(p.units)]
    assert order[-1] == tag.id


def _reaches(p: Plan, start: str, goal: str) -> bool:
    units = {u.id: u for u in p.units}
    todo, seen = [start], set()
    while todo:
        uid = todo.pop()
        if uid == goal:
            return True
        if uid not in seen:
            seen.add(uid)
            todo.extend(units[uid].deps)
    return False


def test_referrers_of_every_index_child_are_copied():
    client = FakeClient()
    idx = build_index()
    arm = idx.child("linux/arm64")
    att = build_artifact(arm, "application/vnd.example.attestation")
    load(client, SRC, idx, "v1")
    load(client, SRC, att)
    p = plan(client, referrers=True)
    m_att = manifest_for(p, att.digest)
    m_arm = manifest_for(p, arm.digest)
    assert m_arm.id in m_att.deps
    top = manifest_for(p, idx.digest)
    assert _reaches(p, top.id, m_att.id)  # the index waits for its children's referrers
    assert client.count("referrers") == 4  # the index, each child and the referrer, once


def test_referrers_only_missing_ones_when_target_already_has_image():
    client = FakeClient()
    img = build_image()
    sig = build_artifact(img)
    load(client, SRC, img, "v1")
    load(client, SRC, sig)
    load(client, TGT, img, "v1")
    p = plan(client, referrers=True)
    assert not p.up_to_date
    assert {u.digest for u in by_kind(p, ManifestUnit)} == {sig.digest}
    assert not by_kind(p, TagUnit)
    # the image itself was neither read again nor re-pushed
    assert client.calls[("manifest_get", f"{SRC}:v1@{img.digest}")] == 0


def test_digest_tags_copied_and_fallback_tag_left_to_referrers():
    client = FakeClient()
    img = build_image()
    load(client, SRC, img, "v1")
    cosign = build_image(seed=99, layers=1)
    hexpart = img.digest.split(":")[1]
    load(client, SRC, cosign, f"sha256-{hexpart}.sig")
    load(client, SRC, build_image(seed=98, layers=1), "sha256-0000.sig")  # another digest
    p = plan(client, digest_tags=True)
    tags = {u.tgt for u in p.units if isinstance(u, ManifestUnit)}
    assert f"{TGT}:sha256-{hexpart}.sig" in tags
    assert not any("sha256-0000" in t for t in tags)
    assert client.count("tag_list") == 1
    (tag,) = by_kind(p, TagUnit)  # the image tag is written after its digest tag
    assert tag.tgt == TGT + ":v1"
    sig_unit = next(u for u in p.units if u.tgt.endswith(".sig"))
    assert sig_unit.id in tag.deps


def test_digest_tag_pointing_to_itself_does_not_loop():
    client = FakeClient()
    img = build_image()
    load(client, SRC, img, "v1")
    hexpart = img.digest.split(":")[1]
    client.repo(SRC).tags[f"sha256-{hexpart}.att"] = img.digest
    p = plan(client, digest_tags=True)
    topological_order(p.units)  # acyclic
    tgts = sorted(u.tgt for u in p.units if isinstance(u, ManifestUnit))
    assert f"{TGT}:sha256-{hexpart}.att" in tgts and f"{TGT}:v1" in tgts


def test_same_repository_is_a_retag():
    client = FakeClient()
    idx = build_index()
    load(client, SRC, idx, "v1")
    p = plan(client, tgt=SRC + ":v2")
    (m,) = p.units
    assert isinstance(m, ManifestUnit) and m.tgt == SRC + ":v2" and m.deps == []


def test_unknown_index_entry_falls_back_to_blob():
    client = FakeClient()
    img = build_image()
    data = random_blob(100, seed=5)
    client.add_blob(SRC, data)
    raw = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [img.descriptor(),
                      {"mediaType": "application/vnd.example.thing", "digest": sha256(data),
                       "size": len(data)}]}).encode()
    load(client, SRC, img)
    client.add_manifest(SRC, raw, "application/vnd.oci.image.index.v1+json", "v1")
    p = plan(client)
    assert sha256(data) in blob_ids(p)


def test_docker_v1_signed_layers_and_manifest_as_they_are():
    client = FakeClient()
    layer_a, layer_b = random_blob(300, 1), random_blob(200, 2)
    for data in (layer_a, layer_b):
        client.add_blob(SRC, data)
    raw = _v1_signed([sha256(layer_b), sha256(layer_a), sha256(layer_a)])
    digest = client.add_manifest(SRC, raw, MT_DOCKER_V1_SIGNED, "v1")
    p = plan(client)
    assert set(blob_ids(p)) == {sha256(layer_a), sha256(layer_b)}  # repeated layer once
    m = manifest_for(p, digest)
    assert m.raw == raw and m.media_type == MT_DOCKER_V1_SIGNED
    assert all(u.descriptor["size"] == -1 for u in by_kind(p, BlobUnit))


def _v1_signed(blob_sums: list[str]) -> bytes:
    payload = json.dumps({"schemaVersion": 1, "name": "app", "tag": "v1",
                          "architecture": "amd64",
                          "fsLayers": [{"blobSum": s} for s in blob_sums],
                          "history": [{"v1Compatibility": "{}"} for _ in blob_sums]},
                         indent=3).encode()
    head, tail = payload[:-2], payload[-2:]  # cut before the closing "\n}"
    protected = {"formatLength": len(head),
                 "formatTail": base64.urlsafe_b64encode(tail).decode().rstrip("=")}
    sig = {"header": {"alg": "ES256"}, "signature": "c2ln",
           "protected": base64.urlsafe_b64encode(json.dumps(protected).encode())
           .decode().rstrip("=")}
    return head + b',\n   "signatures": [' + json.dumps(sig).encode() + b"]\n}"


def test_large_manifest_is_not_inlined():
    client = FakeClient()
    img = build_image(annotations={"big": "x" * (INLINE_MANIFEST_MAX + 10)})
    load(client, SRC, img, "v1")
    (m,) = by_kind(plan(client), ManifestUnit)
    assert m.raw is None and m.src == f"{SRC}@{img.digest}"


def test_plan_round_trips_through_json():
    client = FakeClient()
    img = build_image()
    idx = build_index(children=[img, build_image("linux/arm64")])
    load(client, SRC, idx, "v1")
    load(client, SRC, build_artifact(img))
    p = plan(client, referrers=True)
    text = json.dumps(p.to_dict())
    assert "password" not in text
    again = Plan.from_dict(json.loads(text))
    assert [u.to_dict() for u in again.units] == [u.to_dict() for u in p.units]
    assert [type(u) for u in again.units] == [type(u) for u in p.units]
    assert again.units[-1].raw == p.units[-1].raw


def test_force_recursive_blobs_look_at_the_target_again_and_say_so_in_json():
    client = FakeClient()
    load(client, SRC, build_image(), "v1")
    plain, forced = plan(client), plan(client, force_recursive=True)
    assert not any(u.recheck for u in by_kind(plain, BlobUnit))
    blobs = by_kind(forced, BlobUnit)
    assert blobs and all(u.recheck for u in blobs)
    again = Plan.from_dict(json.loads(json.dumps(forced.to_dict())))
    assert all(u.recheck for u in by_kind(again, BlobUnit))


def test_missing_source_names_the_reference():
    client = FakeClient()
    with pytest.raises(RegbotError, match=r"src\.example/app:nope"):
        plan(client, src=SRC + ":nope")


def test_topological_order_rejects_cycles_and_unknown_deps():
    a = BlobUnit(id="a", src="s", tgt="t", deps=["b"])
    b = BlobUnit(id="b", src="s", tgt="t", deps=["a"])
    with pytest.raises(RegbotError, match="cycle"):
        topological_order([a, b])
    with pytest.raises(RegbotError, match="unknown unit"):
        topological_order([BlobUnit(id="a", src="s", tgt="t", deps=["zz"])])


def test_referrers_and_digest_tags_do_not_copy_the_fallback_tag_twice():
    client = FakeClient()
    img = build_image()
    sig = build_artifact(img)
    load(client, SRC, img, "v1")
    load(client, SRC, sig)
    fallback = img.digest.replace(":", "-")
    index = json.dumps({"schemaVersion": 2,
                        "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": [sig.descriptor(with_platform=False)]}).encode()
    client.add_manifest(SRC, index, "application/vnd.oci.image.index.v1+json", fallback)
    both = plan(client, referrers=True, digest_tags=True)
    assert not any(u.tgt.endswith(":" + fallback) for u in both.units)
    assert sig.digest in {u.digest for u in by_kind(both, ManifestUnit)}
    # digest tags alone copy the fallback index like any digest tag (regclient does)
    tags_only = plan(client, digest_tags=True)
    assert any(u.tgt == f"{TGT}:{fallback}" for u in tags_only.units)
    assert sig.digest in {u.digest for u in by_kind(tags_only, ManifestUnit)}


def test_copy_options_round_trip():
    opts = CopyOptions(platforms=["linux/amd64"], referrers=True, fast_check=True)
    assert CopyOptions.from_dict(json.loads(json.dumps(opts.to_dict()))) == opts
