"""Every module against real docker-registry processes (and a rate-limiting front)."""

from __future__ import annotations

import tarfile
import threading
import time
import uuid

import pytest

from regbot.client import RegClient
from regbot.errors import ScriptError, ScriptTimeout
from regbot.hosts import Host
from regbot.limits import Limits
from regbot.sandbox.runtime import Sandbox
from tests.sandbox_support import LogCapture, client_for, run_lua
from tests.support import images as im


@pytest.fixture
def logcap():
    cap = LogCapture("debug")
    yield cap
    cap.close()


@pytest.fixture(scope="module")
def pushed(registry):
    """One repository with an index (v1), an image (img, also tagged img-copy)."""
    repo = f"sandbox/base-{uuid.uuid4().hex[:8]}"
    idx = im.build_index(labels={"version": "1"}, layer_size=4096)
    img = im.build_image(seed=11, labels={"k": "v"})
    im.push_image(registry.host, repo, idx, tag="v1")
    im.push_image(registry.host, repo, img, tag="img")
    im.push_image(registry.host, repo, img, tag="img-copy")
    return {"repo": repo, "ref": f"{registry.host}/{repo}", "idx": idx, "img": img}


# ------------------------------------------------------------------ tag and repo


def test_tag_ls_with_limit_and_last(registry, repo):
    img = im.build_image(seed=1)
    names = [f"t{i:02d}" for i in range(12)]
    im.push_image(registry.host, repo, img)
    for name in names:
        im.push_manifest(registry.host, repo, name, img.manifest, img.media_type)
    got = {}
    sb = Sandbox("tags", client_for(registry))
    sb.register_function("out", "put", lambda k, v: got.__setitem__(k.decode(), sb.from_lua(v)))
    ref = f"{registry.host}/{repo}"
    sb.run(
        f"""
        out.put("all", tag.ls("{ref}"))
        out.put("limited", tag.ls(reference.new("{ref}:x"), {{limit = 3}}))
        out.put("after", tag.ls("{ref}", {{limit = 2, last = "t05"}}))
        out.put("rest", tag.ls("{ref}", {{last = "t09"}}))
        """
    )
    # docker-registry lists tags in storage order; pages follow the lexical order
    assert sorted(got["all"]) == names
    assert got["limited"] == names[:3]
    assert got["after"] == ["t06", "t07"]
    assert got["rest"] == ["t10", "t11"]


def test_tag_delete_keeps_other_tags_on_the_digest(registry, repo, logcap):
    img = im.build_image(seed=2)
    im.push_image(registry.host, repo, img, tag="old")
    im.push_manifest(registry.host, repo, "keep", img.manifest, img.media_type)
    sb = run_lua(f'tag.delete("{registry.host}/{repo}:old")', client_for(registry))
    assert im.list_tags(registry.host, repo) == ["keep"]
    assert im.head_manifest(registry.host, repo, "keep").headers["Docker-Content-Digest"] == img.digest
    assert sb.stats.tags_deleted == 1
    deletes = logcap.messages(msg="Delete tag")
    assert deletes and deletes[0]["dry-run"] is False and deletes[0]["script"] == "test"


def test_repo_ls(fresh_registry):
    img = im.build_image(seed=3)
    for name in ("alpha/one", "beta/two", "gamma/three"):
        im.push_image(fresh_registry.host, name, img, tag="x")
    got = {}
    sb = Sandbox("repos", client_for(fresh_registry))
    sb.register_function("out", "put", lambda k, v: got.__setitem__(k.decode(), sb.from_lua(v)))
    sb.run(
        f"""
        out.put("all", repo.ls("{fresh_registry.host}"))
        out.put("page", repo.ls("{fresh_registry.host}", {{limit = 1, last = "alpha/one"}}))
        local ok, err = pcall(repo.ls, reference.new("{fresh_registry.host}/a/b"))
        assert(not ok and err:find("expected a registry name"), err)
        """
    )
    assert got["all"] == ["alpha/one", "beta/two", "gamma/three"]
    assert got["page"] == ["beta/two"]


# ------------------------------------------------------------------ manifest


def test_manifest_get_put_delete_on_a_registry(registry, pushed, repo):
    idx, img = pushed["idx"], pushed["img"]
    src = pushed["ref"]
    client = client_for(registry)
    # the target repository needs the blobs first
    im.push_image(registry.host, repo, img)
    run_lua(
        f"""
        local l = manifest.getList("{src}:v1")
        assert(l:descriptor().Digest == "{idx.digest}")
        local m = manifest.get("{src}:img")
        assert(m:descriptor().Digest == "{img.digest}" and m.Config.Digest == "{img.config['digest']}")
        -- m:get() / m:head() act on m's reference
        assert(m:get():descriptor().Digest == "{img.digest}")
        assert(m:head().Digest == "{img.digest}")
        m:put("{registry.host}/{repo}:put1")
        manifest.put(m, reference.new("{registry.host}/{repo}:put2"))
        assert(manifest.head("{registry.host}/{repo}:put1").Digest == "{img.digest}")
        local p = manifest.get("{registry.host}/{repo}:put2")
        assert(p:descriptor().Digest == "{img.digest}")
        p:delete()
        """,
        client,
    )
    # deleting by digest removes every tag on it
    assert im.get_manifest(registry.host, repo, img.digest).status_code == 404
    assert ("manifest_delete", f"{registry.host}/{repo}:put2@{img.digest}") in client.calls


def test_manifest_delete_module_function_and_ratelimit_without_headers(registry, repo):
    img = im.build_image(seed=4)
    im.push_image(registry.host, repo, img, tag="gone")
    run_lua(
        f"""
        local h = manifest.head("{registry.host}/{repo}:gone")
        local rl = h:ratelimit()
        assert(rl.Set == false and rl.Remain == 0 and type(rl.Policies) == "table")
        manifest.delete("{registry.host}/{repo}:gone")
        local ok, err = pcall(manifest.get, "{registry.host}/{repo}:gone")
        assert(not ok and err:find("not found"), err)
        """,
        client_for(registry),
    )
    assert im.get_manifest(registry.host, repo, img.digest).status_code == 404


def test_missing_manifest_fails_with_a_one_line_error(registry, repo):
    with pytest.raises(ScriptError) as info:
        run_lua(f'local x = 1\nmanifest.get("{registry.host}/{repo}:nope")', client_for(registry))
    err = info.value
    assert err.line == 2
    assert "manifest.get:" in err.message and f"{repo}:nope" in err.message
    assert "\n" not in str(err)


# ------------------------------------------------------------------ image


def test_image_copy_counts_and_options(registry, registry2, pushed, repo, tmp_path):
    idx = pushed["idx"]
    client = client_for(registry, registry2)
    tgt = f"{registry2.host}/{repo}"
    sb = run_lua(
        f"""
        image.copy("{pushed['ref']}:v1", "{tgt}:v1")
        assert(manifest.getList("{tgt}:v1"):descriptor().Digest == "{idx.digest}")
        """,
        client,
    )
    blobs = idx.all_blobs()
    assert sb.stats.images_copied == 1
    assert sb.stats.blobs_copied == len(blobs)
    assert sb.stats.bytes_copied == sum(len(b) for b in blobs.values())
    for digest, data in blobs.items():
        assert im.get_blob(registry2.host, repo, digest) == data
    # copying again transfers nothing
    again = run_lua(f'image.copy("{pushed["ref"]}:v1", "{tgt}:v1", {{forceRecursive = false}})',
                    client)
    assert again.stats.images_copied == 0 and again.stats.blobs_copied == 0
    # platforms: only that entry of the index is copied (docker-registry would refuse an
    # index with missing entries, an OCI layout takes it)
    arm = idx.child("linux/arm64")
    amd = idx.child("linux/amd64")
    one = run_lua(f'image.copy("{pushed["ref"]}:v1", "ocidir://{tmp_path}:v1", '
                  '{platforms = {"linux/arm64"}})', client)
    stored = {p.name for p in (tmp_path / "blobs" / "sha256").iterdir()}
    assert arm.digest.split(":")[1] in stored and amd.digest.split(":")[1] not in stored
    assert one.stats.blobs_copied == len(arm.blobs)


def test_image_copy_same_registry_mounts(registry, pushed, repo):
    img = pushed["img"]
    sb = run_lua(f'image.copy("{pushed["ref"]}:img", reference.new("{registry.host}/{repo}:m"))',
                 client_for(registry))
    assert sb.stats.blobs_mounted == len(img.blobs)
    assert sb.stats.blobs_copied == 0
    assert im.head_manifest(registry.host, repo, "m").headers["Docker-Content-Digest"] == img.digest


def test_image_copy_unknown_option_is_warned(registry, pushed, repo, logcap):
    run_lua(f'image.copy("{pushed["ref"]}:img", "{registry.host}/{repo}:w", {{fancy = true, digestTags = "yes"}})',
            client_for(registry))
    warns = [r for r in logcap.records if r["level"] == "warn"]
    assert {r.get("option") for r in warns} == {"fancy", "digestTags"}


def test_export_and_import_tar(registry, pushed, repo, tmp_path):
    img = pushed["img"]
    tar_path = tmp_path / "img.tar"
    run_lua(
        f"""
        image.exportTar("{pushed['ref']}:img", "{tar_path}")
        image.importTar("{registry.host}/{repo}:imported", "{tar_path}")
        """,
        client_for(registry),
    )
    with tarfile.open(tar_path) as tar:
        names = tar.getnames()
    assert "index.json" in names and "oci-layout" in names
    assert im.head_manifest(registry.host, repo, "imported").headers["Docker-Content-Digest"] == img.digest


def test_blob_get_head_put_between_registries(registry, registry2, pushed, repo):
    img = pushed["img"]
    layer = img.layers[1]
    client = client_for(registry, registry2)
    run_lua(
        f"""
        local b = blob.get("{pushed['ref']}", "{layer['digest']}")
        assert(b.Size == {layer['size']} and b.Digest == "{layer['digest']}")
        local d, s = blob.put("{registry2.host}/{repo}", b)
        assert(d == "{layer['digest']}" and s == {layer['size']})
        local h = blob.head("{registry2.host}/{repo}", d)
        assert(h.Size == s)
        -- same registry: mounted rather than sent
        local d2 = blob.put("{registry.host}/{repo}", blob.head("{pushed['ref']}", d))
        assert(d2 == d)
        local d3, s3 = blob.put("{registry2.host}/{repo}", "small text")
        assert(s3 == 10)
        local ic = image.config("{pushed['ref']}:img")
        local d4, s4 = blob.put("{registry2.host}/{repo}", ic)
        assert(d4 == "{img.config['digest']}" and s4 == {img.config['size']})
        """,
        client,
    )
    assert im.get_blob(registry2.host, repo, layer["digest"]) == img.blobs[layer["digest"]]
    assert im.blob_exists(registry.host, repo, layer["digest"])
    assert ("blob_mount", f"{registry.host}/{repo}:latest") in client.calls
    assert im.get_blob(registry2.host, repo, img.config["digest"]) == img.blobs[img.config["digest"]]


# ------------------------------------------------------------------ dry-run


def test_dry_run_writes_nothing(registry, pushed, repo, tmp_path, logcap):
    img = pushed["img"]
    im.push_image(registry.host, repo, img, tag="a")
    im.push_manifest(registry.host, repo, "b", img.manifest, img.media_type)
    tar_in = tmp_path / "in.tar"
    run_lua(f'image.exportTar("{pushed["ref"]}:img", "{tar_in}")', client_for(registry))
    before_catalog = im.list_catalog(registry.host)
    client = client_for(registry)
    tar_out = tmp_path / "out.tar"
    sb = run_lua(
        f"""
        local r = "{registry.host}/{repo}"
        tag.delete(r .. ":a")
        local m = manifest.get(r .. ":b")
        m:delete()
        manifest.delete(r .. ":a")
        m:put(r .. ":c")
        manifest.put(m, r .. ":d")
        local d, s = blob.put(r, "dry content")
        assert(d == "sha256:" .. "{_sha('dry content')}" and s == 11, d)
        local b = blob.get("{pushed['ref']}", "{img.layers[0]['digest']}")
        local d2, s2 = blob.put("{registry.host}/dry/other", b)
        assert(d2 == "{img.layers[0]['digest']}" and s2 == {img.layers[0]['size']})
        image.copy("{pushed['ref']}:v1", r .. ":copied")
        image.copy("{pushed['ref']}:v1", "{registry.host}/dry/new:x")
        image.exportTar(r .. ":a", "{tar_out}")
        image.importTar(r .. ":imported", "{tar_in}")
        """,
        client,
        dry_run=True,
    )
    assert client.writes() == []
    assert sorted(im.list_tags(registry.host, repo)) == ["a", "b"]
    assert im.list_catalog(registry.host) == before_catalog
    assert not tar_out.exists()
    assert not im.blob_exists(registry.host, repo, "sha256:" + _sha("dry content"))
    assert sb.stats.tags_deleted == 0 and sb.stats.images_copied == 0
    dry = [r for r in logcap.records if r.get("dry-run") is True]
    assert [r["msg"] for r in dry] == [
        "Delete tag", "Delete manifest", "Delete manifest", "Put manifest", "Put manifest",
        "Put blob", "Put blob", "Copy image", "Copy image", "Export image", "Import image"]
    assert all(r["script"] == "test" and r["level"] == "info" for r in dry)


def _sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


# ------------------------------------------------------------------ rate limits


@pytest.fixture
def limited_front(token_front_factory):
    return token_front_factory(rate_limit=100)


def _front_client(front):
    return RegClient([Host(name=front.host, tls="disabled", user="alice",
                           password="s3cret-Pa55")])


def test_ratelimit_table_from_headers(limited_front, pushed):
    front = limited_front
    front.set_remaining(42)
    ref = f"{front.host}/{pushed['repo']}"
    run_lua(
        f"""
        local h = manifest.head("{ref}:img")
        local rl = h:ratelimit()
        assert(rl.Set == true and rl.Limit == 100 and rl.Remain == 42, rl.Remain)
        assert(rl.Policies[1] == "100;w=21600", tostring(rl.Policies[1]))
        assert(rl.remain == 42)
        assert(image.ratelimitWait("{ref}:img", 40) == true)
        assert(h:ratelimitWait(10, "1s", "1s") == true)
        -- a GET carries the limit too (and counts against it)
        local rl2 = manifest.get("{ref}:img"):ratelimit()
        assert(rl2.Set and rl2.Limit == 100 and rl2.Remain == 41, rl2.Remain)
        """,
        _front_client(front),
    )


def test_ratelimit_wait_times_out_and_returns_false(limited_front, pushed, logcap):
    front = limited_front
    front.set_remaining(3)
    ref = f"{front.host}/{pushed['repo']}"
    start = time.monotonic()
    run_lua(
        f"""
        assert(image.ratelimitWait("{ref}:img", 50, "100ms", "600ms") == false)
        """,
        _front_client(front),
    )
    elapsed = time.monotonic() - start
    assert 0.55 <= elapsed < 2.0
    delays = logcap.messages(msg="Delaying for ratelimit")
    assert delays and delays[0]["current"] == 3 and delays[0]["target"] == 50
    assert delays[0]["delay"] == "100ms"


def test_ratelimit_wait_returns_true_once_the_limit_recovers(limited_front, pushed):
    front = limited_front
    front.set_remaining(1)
    timer = threading.Timer(0.4, front.set_remaining, args=(90,))
    timer.start()
    try:
        run_lua(f'assert(image.ratelimitWait("{front.host}/{pushed["repo"]}:img", 50, "100ms"))',
                _front_client(front))
    finally:
        timer.cancel()


def test_ratelimit_wait_ends_at_the_script_timeout(limited_front, pushed):
    front = limited_front
    front.set_remaining(0)
    start = time.monotonic()
    with pytest.raises(ScriptTimeout):
        # default frequency 5m and timeout 6h: only the script's timeout ends it
        run_lua(f'image.ratelimitWait("{front.host}/{pushed["repo"]}:img", 10)',
                _front_client(front), timeout=1.0)
    assert time.monotonic() - start < 1.8


def test_ratelimit_wait_bad_duration(registry, pushed):
    with pytest.raises(ScriptError, match=r'Failed parsing rate limit frequency 5 minutes'):
        run_lua(f'image.ratelimitWait("{pushed["ref"]}:img", 1, "5 minutes")', client_for(registry))


# ------------------------------------------------------------------ throttling and timeouts


def test_heavy_calls_wait_for_a_parallel_slot(registry, pushed):
    limits = Limits.in_memory(prefix=f"test-heavy-{uuid.uuid4().hex[:8]}")
    client = RegClient([Host(name=registry.host, tls="disabled")], limits=limits)
    holding = threading.Event()
    release = threading.Event()

    def hold():
        with limits.heavy_slot(1):
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(5)
        start = time.monotonic()
        # manifest.get is not heavy: it runs while the slot is taken
        run_lua(f'manifest.get("{pushed["ref"]}:img")', client, parallel=1, timeout=5)
        assert time.monotonic() - start < 2
        with pytest.raises(ScriptTimeout):
            run_lua(f'image.config("{pushed["ref"]}:img")', client, parallel=1, timeout=0.7)
        # with two slots it goes through
        run_lua(f'image.config("{pushed["ref"]}:img")', client, parallel=2, timeout=5)
    finally:
        release.set()
        holder.join()


def test_image_copy_is_cancelled_at_the_script_timeout(registry, registry2, repo):
    from tests.support.fronts import FaultFront

    img = im.build_image(seed=5, layers=1, layer_size=2 * 1024 * 1024)
    im.push_image(registry.host, repo, img, tag="big")
    slow = FaultFront(registry, bandwidth=256 * 1024)  # about 8 s for the layer
    try:
        client = client_for(slow, registry2)
        start = time.monotonic()
        with pytest.raises(ScriptTimeout):
            run_lua(f'image.copy("{slow.host}/{repo}:big", "{registry2.host}/{repo}:big")',
                    client, timeout=1.0)
        assert time.monotonic() - start < 3.5
    finally:
        slow.stop()
    assert im.get_manifest(registry2.host, repo, "big").status_code == 404
