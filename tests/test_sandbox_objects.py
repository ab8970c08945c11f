"""Manifest, config and blob objects: Go and JSON names, edits, export, tostring (ocidir)."""

from __future__ import annotations

import hashlib
import json

import pytest

from regbot.errors import ScriptError
from regbot.types.platform import local_platform
from tests.sandbox_support import RecordingClient, run_lua
from tests.support import images as im

LOCAL = str(local_platform())
OTHER = "linux/arm64" if LOCAL != "linux/arm64" else "linux/amd64"


@pytest.fixture(scope="module")
def client():
    return RecordingClient([])


@pytest.fixture
def layout(tmp_path):
    """An OCI layout holding an index (v1), an image (img), a Docker image (docker) and an
    artifact referring to the image (sig)."""
    idx = im.build_index(platforms=(LOCAL, OTHER), labels={"version": "1"},
                         annotations={"org.example.idx": "yes"})
    img = im.build_image(seed=7, labels={"org.opencontainers.image.created": "2020-01-02T00:00:00Z",
                                         "k": "v"},
                         annotations={"a.b": "c"})
    docker = im.build_image(seed=8, docker=True)
    sig = im.build_artifact(img)
    im.write_ocidir(tmp_path, idx, tag="v1")
    im.write_ocidir(tmp_path, img, tag="img")
    im.write_ocidir(tmp_path, docker, tag="docker")
    im.write_ocidir(tmp_path, sig, tag="sig")
    return {"path": f"ocidir://{tmp_path}", "dir": tmp_path, "idx": idx, "img": img,
            "docker": docker, "sig": sig}


def test_manifest_fields_by_go_and_json_name(client, layout):
    img, idx = layout["img"], layout["idx"]
    layer = img.layers[0]
    run_lua(
        f"""
        local m = manifest.get("{layout['path']}:img")
        assert(m.MediaType == "{im.MT_OCI_MANIFEST}" and m.mediaType == m.MediaType)
        assert(m.SchemaVersion == 2 and m.schemaVersion == 2)
        assert(m.Versioned.SchemaVersion == 2)
        assert(m.Config.Digest == "{img.config['digest']}", m.Config.Digest)
        assert(m.config.digest == m.Config.Digest and m.Config.MediaType == "{im.MT_OCI_CONFIG}")
        assert(m.Config.Size == {img.config['size']})
        assert(#m.Layers == 2 and #m.layers == 2)
        assert(m.Layers[1].Digest == "{layer['digest']}" and m.layers[1].digest == m.Layers[1].Digest)
        assert(m.Layers[1].Size == 1024 and m.Layers[1].MediaType == "{im.MT_OCI_LAYER}")
        local n = 0
        for i, l in ipairs(m.Layers) do n = n + l.size end
        assert(n == 2048)
        assert(m.Annotations["a.b"] == "c" and m.annotations["a.b"] == "c")
        -- absent fields read as Go's zero values
        assert(m.ArtifactType == "" and m.Subject == nil and m.Manifests == nil)
        assert(type(m.Layers[1].URLs) == "table" and #m.Layers[1].URLs == 0)
        assert(m.Layers[1].Platform == nil)
        -- pairs lists the document's JSON fields
        local keys = {{}}
        for k in pairs(m) do keys[#keys + 1] = k end
        table.sort(keys)
        assert(table.concat(keys, ",") == "annotations,config,layers,mediaType,schemaVersion", table.concat(keys, ","))

        local l = manifest.getList("{layout['path']}:v1")
        assert(l.MediaType == "{im.MT_OCI_INDEX}" and #l.Manifests == 2)
        assert(l.Manifests[1].Platform.Architecture == "{idx.children[0].platform.split('/')[1]}")
        assert(l.manifests[2].platform.architecture == l.Manifests[2].Platform.Architecture)
        assert(l.Manifests[1].Platform.OS == "linux" and l.manifests[1].platform.os == "linux")
        assert(l.Manifests[1].Digest == "{idx.children[0].digest}")
        assert(l.Annotations["org.example.idx"] == "yes")
        assert(l.Layers == nil and l.Config == nil)

        local s = manifest.get("{layout['path']}:sig")
        assert(s.ArtifactType == "application/vnd.example.signature.v1")
        assert(s.artifactType == s.ArtifactType)
        assert(s.Subject.Digest == "{img.digest}" and s.subject.mediaType == "{im.MT_OCI_MANIFEST}")

        local d = manifest.get("{layout['path']}:docker")
        assert(d.MediaType == "{im.MT_DOCKER_MANIFEST}" and d.Config.MediaType == "{im.MT_DOCKER_CONFIG}")
        """,
        client,
    )


def test_manifest_get_resolves_platform(client, layout):
    idx = layout["idx"]
    local_child = idx.child(LOCAL)
    other_child = idx.child(OTHER)
    run_lua(
        f"""
        local m = manifest.get("{layout['path']}:v1")
        assert(m:descriptor().Digest == "{local_child.digest}", m:descriptor().Digest)
        local o = manifest.get("{layout['path']}:v1", "{OTHER}")
        assert(o:descriptor().Digest == "{other_child.digest}")
        assert(o.Config.Digest == "{other_child.config['digest']}")
        -- an unparsable platform falls back to the local one, as regclient does
        local bad = manifest.get("{layout['path']}:v1", "nonsense")
        assert(bad:descriptor().Digest == "{local_child.digest}")
        local ok, err = pcall(manifest.get, "{layout['path']}:v1", "plan9/mips")
        assert(not ok and err:find("no manifest for platform plan9/mips"), err)
        -- image.manifest* are the same functions
        assert(image.manifest("{layout['path']}:v1", "{OTHER}"):descriptor().Digest == "{other_child.digest}")
        assert(image.manifestList("{layout['path']}:v1"):descriptor().Digest == "{idx.digest}")
        assert(image.manifestHead("{layout['path']}:v1"):descriptor().Digest == "{idx.digest}")
        """,
        client,
    )


def test_descriptor_head_and_tostring(client, layout):
    from regbot.sandbox.runtime import Sandbox

    idx, img = layout["idx"], layout["img"]
    sb_out = {}

    sb = Sandbox("t", client)
    sb.register_function("out", "put", lambda k, v: sb_out.__setitem__(k.decode(), v.decode()))
    sb.run(
        f"""
        local d = manifest.descriptor("{layout['path']}:v1")
        assert(d.MediaType == "{im.MT_OCI_INDEX}" and d.mediaType == d.MediaType)
        assert(d.Digest == "{idx.digest}" and d.digest == d.Digest)
        assert(d.Size == {idx.size} and d.size == d.Size)
        assert(type(d.Annotations) == "table" and d.ArtifactType == "")
        local h = manifest.head("{layout['path']}:img")
        assert(h.MediaType == "{im.MT_OCI_MANIFEST}" and h.Digest == "{img.digest}")
        assert(h.Size == {img.size} and h:descriptor().Digest == "{img.digest}")
        local m = manifest.get("{layout['path']}:img")
        assert(manifest.descriptor(m).Digest == "{img.digest}")
        out.put("head", tostring(h))
        out.put("manifest", tostring(m))
        out.put("ref", tostring(reference.new("{layout['path']}:img")))
        """
    )
    assert json.loads(sb_out["head"]) == {"mediaType": im.MT_OCI_MANIFEST, "digest": img.digest,
                                          "size": img.size}
    assert json.loads(sb_out["manifest"]) == img.data
    assert sb_out["manifest"].startswith('{\n  "schemaVersion": 2,\n  "mediaType"')
    assert sb_out["ref"] == f"{layout['path']}:img"


def test_edit_through_either_name_then_export(client, layout):
    img = layout["img"]
    path = layout["path"]
    run_lua(
        f"""
        local m = manifest.get("{path}:img")
        local same = m:export()
        assert(same:descriptor().Digest == "{img.digest}", "unchanged export keeps the bytes")

        m.Annotations["new"] = "value"          -- Go name
        assert(m.annotations["new"] == "value")
        m.annotations["a.b"] = nil              -- JSON name
        m.Config.MediaType = "application/vnd.example.config+json"
        assert(m.config.mediaType == "application/vnd.example.config+json")
        m.layers[2].Annotations = {{["org.example"] = "layer"}}
        m.ArtifactType = "application/vnd.example"
        assert(m.artifactType == "application/vnd.example")
        m.Subject = {{MediaType = "{im.MT_OCI_MANIFEST}", Digest = "{layout['docker'].digest}", Size = 10}}
        assert(m.subject.digest == "{layout['docker'].digest}" and m.Subject.Size == 10)

        local e = m:export()
        assert(e:descriptor().Digest ~= "{img.digest}")
        assert(e.Annotations["new"] == "value" and e.Annotations["a.b"] == nil)
        assert(e.Config.MediaType == "application/vnd.example.config+json")
        assert(e.Layers[2].Annotations["org.example"] == "layer")
        assert(e.Subject.Digest == "{layout['docker'].digest}")
        e:put("{path}:edited")
        local back = manifest.get("{path}:edited")
        assert(back:descriptor().Digest == e:descriptor().Digest)
        assert(back.ArtifactType == "application/vnd.example")
        -- the original object is untouched by export
        assert(manifest.get("{path}:img"):descriptor().Digest == "{img.digest}")

        -- whole arrays and new elements, Go names in plain tables
        local m2 = manifest.get("{path}:img")
        table.insert(m2.Layers, {{MediaType = "{im.MT_OCI_LAYER}", Digest = m2.Layers[1].Digest, Size = 1024}})
        local e2 = m2:export()
        assert(#e2.Layers == 3 and e2.Layers[3].digest == m2.Layers[1].Digest)
        manifest.put(e2, "{path}:three")
        """,
        client,
    )
    edited = _layout_manifest(layout["dir"], "edited")
    assert edited["annotations"] == {"new": "value"}
    assert edited["config"]["mediaType"] == "application/vnd.example.config+json"
    assert edited["layers"][1]["annotations"] == {"org.example": "layer"}
    assert edited["layers"][0] == img.layers[0]
    assert edited["subject"] == {"mediaType": im.MT_OCI_MANIFEST,
                                 "digest": layout["docker"].digest, "size": 10}
    assert list(edited) == ["schemaVersion", "mediaType", "artifactType", "config", "layers",
                            "subject", "annotations"]
    three = _layout_manifest(layout["dir"], "three")
    assert [layer["digest"] for layer in three["layers"]] == [
        img.layers[0]["digest"], img.layers[1]["digest"], img.layers[0]["digest"]]
    assert three["layers"][2] == img.layers[0]


def test_export_rejects_wrong_types(client, layout):
    with pytest.raises(ScriptError, match=r"manifest.export: manifest.Layers\[1\].Size: expected a number"):
        run_lua(
            f"""
            local m = manifest.get("{layout['path']}:img")
            m.Layers[1].Size = "big"
            m:export()
            """,
            client,
        )
    with pytest.raises(ScriptError, match="was read by HEAD and has no body"):
        run_lua(f'manifest.head("{layout["path"]}:img"):export()', client)


def test_image_config_fields_edit_export_and_put(client, layout):
    img = layout["img"]
    path = layout["path"]
    diff_ids = [layer["digest"] for layer in img.layers]
    run_lua(
        f"""
        local ic = image.config("{path}:img")
        assert(ic.Config.Labels["k"] == "v" and ic.config.Labels["k"] == "v")
        assert(ic.Config.Labels["org.opencontainers.image.created"] == "2020-01-02T00:00:00Z")
        assert(ic.Architecture == "amd64" and ic.architecture == "amd64")
        assert(ic.Platform.Architecture == "amd64" and ic.Platform.OS == "linux")
        assert(ic.OS == "linux" and ic.os == "linux" and ic.Variant == "")
        assert(ic.Created == "2024-01-02T03:04:05Z" and ic.created == ic.Created)
        assert(ic.RootFS.Type == "layers" and ic.rootfs.type == "layers")
        assert(ic.RootFS.DiffIDs[1] == "{diff_ids[0]}" and ic.rootfs.diff_ids[2] == "{diff_ids[1]}")
        assert(#ic.History == 3 and ic.History[3].EmptyLayer == true and ic.history[3].empty_layer)
        assert(ic.History[1].CreatedBy:find("ADD layer 0"))
        assert(ic.Config.Env[1]:find("PATH=") and ic.Config.Cmd[1] == "/bin/sh")
        assert(ic.Config.WorkingDir == "/" and ic.Config.User == "")
        assert(type(ic.Config.ExposedPorts) == "table" and ic.Config.StopSignal == "")
        -- a manifest object and a config object stand for their reference
        local m = manifest.get("{path}:img")
        assert(image.config(m).Config.Labels.k == "v")
        assert(m:config().Config.Labels.k == "v")
        assert(image.config(ic).Created == ic.Created)
        assert(tostring(reference.new(ic)) == "{path}:img")
        assert(tostring(reference.new(m)) == "{path}:img")
        -- an index resolves to the local platform
        assert(manifest.getList("{path}:v1"):config().Config.Labels.version == "1")

        -- edit the config, push it as a blob, point a manifest at it
        ic.Config.Labels["org.example.new"] = "added"
        ic.Platform.Variant = "v9"
        ic.Config.ExposedPorts["80/tcp"] = {{}}
        local same = image.config("{path}:img"):export()
        local nic = ic:export()
        assert(nic.Config.Labels["org.example.new"] == "added" and nic.Variant == "v9")
        local digest, size = blob.put("{path}", nic)
        m.Config.Digest = digest
        m.Config.Size = size
        m:export():put("{path}:newconfig")
        local back = image.config("{path}:newconfig")
        assert(back.Config.Labels["org.example.new"] == "added", "label")
        assert(back.variant == "v9")
        """,
        client,
    )
    raw_manifest = _layout_manifest(layout["dir"], "newconfig")
    config_digest = raw_manifest["config"]["digest"]
    blob = (layout["dir"] / "blobs" / "sha256" / config_digest.split(":")[1]).read_bytes()
    assert "sha256:" + hashlib.sha256(blob).hexdigest() == config_digest
    config = json.loads(blob)
    assert config["config"]["Labels"]["org.example.new"] == "added"
    assert config["config"]["ExposedPorts"] == {"80/tcp": {}}
    assert config["variant"] == "v9"
    assert config["rootfs"]["diff_ids"] == diff_ids
    assert raw_manifest["config"]["size"] == len(blob)


def test_config_tostring_and_unchanged_export(client, layout):
    img = layout["img"]
    from regbot.sandbox.runtime import Sandbox

    got = {}
    sb = Sandbox("t", client)
    sb.register_function("out", "put", lambda k, v: got.__setitem__(k.decode(), v))
    sb.run(
        f"""
        local ic = image.config("{layout['path']}:img")
        out.put("json", tostring(ic))
        out.put("digest", (blob.put("{layout['path']}", ic:export())))
        """
    )
    config_blob = img.blobs[img.config["digest"]]
    assert json.loads(got["json"]) == json.loads(config_blob)
    # unchanged: the exact bytes (and digest) of the original config
    assert got["digest"].decode() == img.config["digest"]


def test_blob_get_head_put_on_ocidir(client, layout, tmp_path_factory):
    img = layout["img"]
    layer = img.layers[0]
    other = tmp_path_factory.mktemp("other")
    run_lua(
        f"""
        local b = blob.get("{layout['path']}", "{layer['digest']}")
        assert(b.Digest == "{layer['digest']}" and b.digest == b.Digest)
        assert(b.Size == 1024 and b.size == 1024 and tostring(b) == b.Digest)
        local d, s = blob.put("ocidir://{other}", b)
        assert(d == "{layer['digest']}" and s == 1024)
        -- digest from the reference
        local h = blob.head("{layout['path']}@{layer['digest']}")
        assert(h.Size == 1024 and h.Digest == "{layer['digest']}")
        local d2, s2 = blob.put("ocidir://{other}", h)
        assert(d2 == d and s2 == s)
        local d3, s3 = blob.put("ocidir://{other}", "hello world")
        assert(d3 == "sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9" and s3 == 11)
        local ok, err = pcall(blob.get, "{layout['path']}")
        assert(not ok and err:find("a digest is needed"), err)
        ok, err = pcall(blob.put, "{layout['path']}", {{}})
        assert(not ok and err:find("content expected"), err)
        """,
        client,
    )
    stored = other / "blobs" / "sha256" / layer["digest"].split(":")[1]
    assert stored.read_bytes() == img.blobs[layer["digest"]]
    assert (other / "blobs" / "sha256" /
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9").read_bytes() == b"hello world"


def test_binary_blob_content_is_kept_exactly(client, tmp_path):
    data = bytes(range(256)) * 4
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    run_lua(
        f"""
        local s = ""
        for i = 0, 255 do s = s .. string.char(i) end
        s = string.rep(s, 4)
        local d, n = blob.put("ocidir://{tmp_path}", s)
        assert(d == "{digest}" and n == 1024, d)
        """,
        client,
    )
    assert (tmp_path / "blobs" / "sha256" / digest.split(":")[1]).read_bytes() == data


def _layout_manifest(root, tag):
    index = json.loads((root / "index.json").read_text())
    for entry in index["manifests"]:
        if (entry.get("annotations") or {}).get(im.REF_NAME) == tag:
            digest = entry["digest"]
            return json.loads((root / "blobs" / "sha256" / digest.split(":")[1]).read_text())
    raise KeyError(tag)


def test_image_copy_options_map_to_copy_options(client, monkeypatch):
    from regbot.copy import CopyOptions
    from regbot.copy.progress import CopyResult

    seen = []

    def fake_copy(cl, src, tgt, options=None, *, executor=None, progress=None, cancel=None, run=None, source_head=None):
        seen.append((str(src), str(tgt), options, cancel))
        return CopyResult(skipped=False, blobs_copied=2, blobs_skipped=1, blobs_mounted=3,
                          bytes_copied=99)

    monkeypatch.setattr("regbot.copy.copy_image", fake_copy)
    sb = run_lua(
        """
        image.copy("ocidir://a:1", "ocidir://b:1", {platforms = {"linux/amd64", "linux/arm64/v8"},
          digestTags = true, forceRecursive = true, includeExternal = true, referrers = true,
          fastCheck = true})
        image.copy(reference.new("ocidir://a:2"), "ocidir://b:2")
        image.copy("ocidir://a:3", "ocidir://b:3", {})
        """,
        client,
        timeout=30,
    )
    assert [s[:2] for s in seen] == [("ocidir://a:1", "ocidir://b:1"),
                                     ("ocidir://a:2", "ocidir://b:2"),
                                     ("ocidir://a:3", "ocidir://b:3")]
    assert seen[0][2] == CopyOptions(platforms=["linux/amd64", "linux/arm64/v8"],
                                     digest_tags=True, force_recursive=True,
                                     include_external=True, referrers=True, fast_check=True)
    assert seen[1][2] == CopyOptions() and seen[2][2] == CopyOptions()
    assert seen[0][3] is not None and seen[0][3].remaining() <= 30
    assert (sb.stats.images_copied, sb.stats.blobs_copied, sb.stats.blobs_skipped,
            sb.stats.blobs_mounted, sb.stats.bytes_copied) == (3, 6, 3, 9, 297)
    with pytest.raises(ScriptError, match="option platforms must be an array of strings"):
        run_lua('image.copy("ocidir://a:1", "ocidir://b:1", {platforms = "linux/amd64"})', client)
