"""Deleting a manifest that has a `subject` takes it out of the subject's referrers
fallback index (docker-registry 2.8 has no referrers API, so the `sha256-<hex>` tag is the
list): the shorter index is pushed, and the tag goes with the last entry. Through the
client, Lua's manifest.delete and `regbot manifest rm`, against real docker-registry."""

from __future__ import annotations

import json

import pytest

from regbot.errors import RegistryError
from regbot.types.ref import Reference
from tests.sandbox_support import client_for
from tests.support import images as im
from tests.support.memregistry import MemRegistry
from tests.support.regbot_cli import isolated_env, run_regbot


def pushed_with_referrers(registry, repo, client, count: int = 2):
    """An image tagged v1 and `count` artifacts on it, pushed through our client (which
    keeps the fallback index)."""
    from regbot.types.manifest import Manifest

    img = im.build_image(seed=400 + count)
    im.push_image(registry.host, repo, img, tag="v1")
    arts = [im.build_artifact(img, payload=f"sig {i}".encode()) for i in range(count)]
    for art in arts:
        for data in art.blobs.values():
            im.push_blob(registry.host, repo, data)
        client.manifest_put(Reference.parse(f"{registry.host}/{repo}@{art.digest}"),
                            Manifest.from_bytes(art.manifest, art.media_type))
    return img, arts


def fallback_digests(registry, repo, img) -> list[str] | None:
    """The digests the fallback tag's index lists, None when the tag is absent."""
    resp = im.get_manifest(registry.host, repo, im.referrers_tag(img.digest))
    if resp.status_code == 404:
        return None
    assert resp.status_code == 200, resp.text
    return [d["digest"] for d in json.loads(resp.content)["manifests"]]


def test_delete_leaves_the_fallback_index_then_removes_the_tag(registry, repo):
    client = client_for(registry)
    img, (a, b) = pushed_with_referrers(registry, repo, client)
    assert fallback_digests(registry, repo, img) == [a.digest, b.digest]
    client.manifest_delete(Reference.parse(f"{registry.host}/{repo}@{a.digest}"))
    assert fallback_digests(registry, repo, img) == [b.digest]
    assert [d.digest for d in client.referrers(Reference.parse(f"{registry.host}/{repo}:v1"))] \
        == [b.digest]
    client.manifest_delete(Reference.parse(f"{registry.host}/{repo}@{b.digest}"))
    assert fallback_digests(registry, repo, img) is None
    assert im.referrers_tag(img.digest) not in im.list_tags(registry.host, repo)
    assert im.list_tags(registry.host, repo) == ["v1"]
    assert client.referrers(Reference.parse(f"{registry.host}/{repo}:v1")) == []


def test_deleting_a_manifest_without_subject_leaves_the_index(registry, repo):
    client = client_for(registry)
    img, (a,) = pushed_with_referrers(registry, repo, client, count=1)
    other = im.build_image(seed=499)
    im.push_image(registry.host, repo, other, tag="other")
    client.manifest_delete(Reference.parse(f"{registry.host}/{repo}@{other.digest}"))
    assert fallback_digests(registry, repo, img) == [a.digest]


def test_lua_manifest_delete_updates_the_index(registry, repo):
    from regbot.sandbox.runtime import Sandbox

    client = client_for(registry)
    img, (a, b) = pushed_with_referrers(registry, repo, client)
    sb = Sandbox("delete-referrer", client)
    # One deleted by reference string, one from a manifest object read with its body.
    sb.run(f"""
        manifest.delete("{registry.host}/{repo}@{a.digest}")
        local m = manifest.get("{registry.host}/{repo}@{b.digest}")
        manifest.delete(m)
    """)
    assert fallback_digests(registry, repo, img) is None
    assert im.list_tags(registry.host, repo) == ["v1"]


def test_manifest_rm_updates_the_index(registry, repo, tmp_path):
    client = client_for(registry)
    img, (a, b) = pushed_with_referrers(registry, repo, client)
    env = isolated_env(tmp_path)
    assert run_regbot("registry", "set", "--tls", "disabled", registry.host, env=env).returncode == 0
    proc = run_regbot("manifest", "rm", f"{registry.host}/{repo}@{b.digest}", env=env)
    assert proc.returncode == 0, proc.stderr
    assert fallback_digests(registry, repo, img) == [a.digest]


def test_registry_with_referrers_api_gets_no_fallback_tag():
    with MemRegistry(referrers_api=True) as mem:
        from regbot.client import RegClient
        from regbot.hosts import TLS_DISABLED, Host

        client = RegClient([Host(name=mem.host, tls=TLS_DISABLED)])
        img, (a, b) = pushed_with_referrers(mem, "app", client)
        client.manifest_delete(Reference.parse(f"{mem.host}/app@{a.digest}"))
        assert im.referrers_tag(img.digest) not in im.list_tags(mem.host, "app")
        assert [d.digest for d in client.referrers(Reference.parse(f"{mem.host}/app:v1"))] \
            == [b.digest]


def test_refused_delete_keeps_the_index(registry, fault_front, repo):
    """Deletes disabled (docker-registry answers 405 UNSUPPORTED, played here by a front
    for that one DELETE): the manifest stays, so its index entry does too."""
    client = client_for(registry)
    img, (a,) = pushed_with_referrers(registry, repo, client, count=1)
    via_front = client_for(fault_front)
    fault_front.add("DELETE", f"/manifests/{a.digest}", "status", status=405,
                    body=b'{"errors":[{"code":"UNSUPPORTED","message":"operation is unsupported"}]}',
                    headers={"Content-Type": "application/json"})
    with pytest.raises(RegistryError) as info:
        via_front.manifest_delete(Reference.parse(f"{fault_front.host}/{repo}@{a.digest}"))
    assert "405" in str(info.value)
    assert fallback_digests(registry, repo, img) == [a.digest]
