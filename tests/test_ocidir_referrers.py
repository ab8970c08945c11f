"""Referrers copied into an OCI layout are laid out as regclient does: each referrer is
a child of its subject's fallback tag (`sha256-<hex>`), never an untagged top-level entry
of index.json; listing referrers on the layout finds them, and a copy from the layout
back to a registry carries them. Registries are real docker-registry processes (no
referrers API: the fallback tag there too)."""

from __future__ import annotations

import json
from pathlib import Path

from regbot.client import RegClient
from regbot.copy import CopyOptions, copy_image
from regbot.hosts import TLS_DISABLED, Host
from regbot.scheme.ocidir.index import ANNOTATION_REF_NAME
from regbot.types.manifest import Manifest
from regbot.types.ref import Reference
from tests.support import images as im

R = Reference.parse


def client_for(*servers) -> RegClient:
    return RegClient([Host(name=s.host, tls=TLS_DISABLED) for s in servers])


def push_tree(registry, repo, client):
    """An index tagged v1; a signature on it, one on its first child, and a signature
    of the signature (pushed with our client, which keeps the fallback indexes)."""
    idx = im.build_index(seed=611)
    im.push_image(registry.host, repo, idx, tag="v1")
    sig = im.build_artifact(idx, payload=b"index signature")
    child_sig = im.build_artifact(idx.children[0], payload=b"child signature")
    sig_sig = im.build_artifact(sig, payload=b"signature of the signature")
    for art in (sig, child_sig, sig_sig):
        for data in art.blobs.values():
            im.push_blob(registry.host, repo, data)
        client.manifest_put(R(f"{registry.host}/{repo}@{art.digest}"),
                            Manifest.from_bytes(art.manifest, art.media_type))
    return idx, sig, child_sig, sig_sig


def index_entries(layout: Path) -> list[dict]:
    return json.loads((layout / "index.json").read_text())["manifests"]


def check_layout(layout: Path, idx, sig, child_sig, sig_sig) -> None:
    entries = index_entries(layout)
    names = {(e.get("annotations") or {}).get(ANNOTATION_REF_NAME): e["digest"] for e in entries}
    assert None not in names, f"untagged entries in index.json: {entries}"
    assert len(names) == len(entries)
    assert names["v1"] == idx.digest
    # the fallback tags: of the index, of its first child, and of the signature
    assert set(names) == {"v1", im.referrers_tag(idx.digest),
                          im.referrers_tag(idx.children[0].digest),
                          im.referrers_tag(sig.digest)}
    listed = {e["digest"] for e in entries}
    assert not listed & {sig.digest, child_sig.digest, sig_sig.digest}
    for art in (sig, child_sig, sig_sig):  # the manifests and their blobs are stored
        for digest in [art.digest, *art.blobs]:
            assert (layout / "blobs" / "sha256" / digest.split(":")[1]).is_file()


def test_referrers_into_a_layout_and_back(registry, registry2, repo, tmp_path):
    client = client_for(registry, registry2)
    idx, sig, child_sig, sig_sig = push_tree(registry, repo, client)
    layout = tmp_path / "layout"
    src, tgt = R(f"{registry.host}/{repo}:v1"), R(f"ocidir://{layout}:v1")
    copy_image(client, src, tgt, CopyOptions(referrers=True))
    check_layout(layout, idx, sig, child_sig, sig_sig)
    # Again, reading everything: the referrers already listed must not gain entries.
    copy_image(client, src, tgt, CopyOptions(referrers=True, force_recursive=True))
    check_layout(layout, idx, sig, child_sig, sig_sig)

    assert [d.digest for d in client.referrers(tgt)] == [sig.digest]
    child = tgt.repo_only().with_digest(idx.children[0].digest)
    assert [d.digest for d in client.referrers(child)] == [child_sig.digest]
    listed = client.referrers(tgt.repo_only().with_digest(sig.digest))
    assert [d.digest for d in listed] == [sig_sig.digest]
    assert listed[0].artifact_type == sig_sig.artifact_type

    back = R(f"{registry2.host}/{repo}:v1")
    copy_image(client, tgt, back, CopyOptions(referrers=True))
    assert [d.digest for d in client.referrers(back)] == [sig.digest]
    assert [d.digest for d in client.referrers(back.repo_only().with_digest(
        idx.children[0].digest))] == [child_sig.digest]
    assert [d.digest for d in client.referrers(back.repo_only().with_digest(sig.digest))] \
        == [sig_sig.digest]
    for art in (sig, child_sig, sig_sig):
        assert im.get_manifest(registry2.host, repo, art.digest).content == art.manifest


def test_deleting_a_referrer_in_a_layout(registry, repo, tmp_path):
    client = client_for(registry)
    idx, sig, child_sig, sig_sig = push_tree(registry, repo, client)
    layout = tmp_path / "layout"
    tgt = R(f"ocidir://{layout}:v1")
    copy_image(client, R(f"{registry.host}/{repo}:v1"), tgt, CopyOptions(referrers=True))
    client.manifest_delete(tgt.repo_only().with_digest(child_sig.digest))
    names = {(e.get("annotations") or {}).get(ANNOTATION_REF_NAME) for e in index_entries(layout)}
    assert im.referrers_tag(idx.children[0].digest) not in names
    assert client.referrers(tgt.repo_only().with_digest(idx.children[0].digest)) == []
    assert [d.digest for d in client.referrers(tgt)] == [sig.digest]
