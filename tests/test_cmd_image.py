"""`regbot image copy/export/import`, `tag rm`, `manifest rm`: what they write, with
every copy flag, against real docker-registry processes."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
import requests

from tests.support import images
from tests.support.regbot_cli import isolated_env, run_on_pty, run_regbot
from tests.support.registry import start_registry


@pytest.fixture
def env(tmp_path, registry, registry2):
    env = isolated_env(tmp_path)
    for reg in (registry, registry2):
        proc = run_regbot("registry", "set", "--tls", "disabled", reg.host, env=env)
        assert proc.returncode == 0, proc.stderr
    return env


def regbot(env, *args, **kw):
    return run_regbot(*args, env=env, **kw)


def digest_of(host, repo, tag):
    resp = images.head_manifest(host, repo, tag)
    return resp.headers.get("Docker-Content-Digest") if resp.status_code == 200 else None


def test_copy_between_registries_and_retag(env, registry, registry2, repo):
    idx = images.build_index(seed=41)
    images.push_image(registry.host, repo, idx, tag="v1")
    proc = regbot(env, "image", "copy", f"{registry.host}/{repo}:v1", f"{registry2.host}/{repo}:v1")
    assert (proc.returncode, proc.stdout) == (0, f"{registry2.host}/{repo}:v1\n"), proc.stderr
    assert digest_of(registry2.host, repo, "v1") == idx.digest
    for child in idx.children:
        assert all(images.blob_exists(registry2.host, repo, d) for d in child.blobs)
    proc = regbot(env, "image", "cp", f"{registry2.host}/{repo}:v1", f"{registry2.host}/{repo}:v2")
    assert proc.returncode == 0 and digest_of(registry2.host, repo, "v2") == idx.digest


def test_copy_platform(env, registry, registry2, repo):
    idx = images.build_index(("linux/amd64", "linux/arm64"), seed=42)
    images.push_image(registry.host, repo, idx, tag="v1")
    proc = regbot(env, "image", "copy", "--platform", "linux/arm64",
                  f"{registry.host}/{repo}:v1", f"{registry2.host}/{repo}:arm")
    assert proc.returncode == 0, proc.stderr
    assert digest_of(registry2.host, repo, "arm") == idx.child("linux/arm64").digest
    assert digest_of(registry2.host, repo, idx.child("linux/amd64").digest) is None


def test_copy_digest_tags(env, registry, registry2, repo):
    img = images.build_image(seed=43)
    images.push_image(registry.host, repo, img, tag="v1")
    sig_tag = img.digest.replace(":", "-") + ".sig"
    images.push_image(registry.host, repo, images.build_image(seed=44, layers=1), tag=sig_tag)
    src, tgt = f"{registry.host}/{repo}:v1", f"{registry2.host}/{repo}:v1"
    assert regbot(env, "image", "copy", src, tgt).returncode == 0
    assert sorted(images.list_tags(registry2.host, repo)) == ["v1"]
    assert regbot(env, "image", "copy", "--digest-tags", src, tgt).returncode == 0
    assert sorted(images.list_tags(registry2.host, repo)) == sorted(["v1", sig_tag])


def _add_referrer(host, repo, subject, seed):
    sig = images.build_artifact(subject, "application/vnd.example.sig", f"sig {seed}".encode())
    images.push_image(host, repo, sig)
    fallback = images.build_referrers_index([sig])
    images.push_manifest(host, repo, images.referrers_tag(subject.digest), fallback.manifest,
                         fallback.media_type)
    return sig


def test_copy_referrers_and_fast(env, registry, registry2, repo):
    img = images.build_image(seed=45)
    images.push_image(registry.host, repo, img, tag="v1")
    src, tgt = f"{registry.host}/{repo}:v1", f"{registry2.host}/{repo}:v1"
    assert regbot(env, "image", "copy", src, tgt).returncode == 0
    sig = _add_referrer(registry.host, repo, img, 1)
    # --fast: the target has the image, so its referrers are not looked at
    assert regbot(env, "image", "copy", "--referrers", "--fast", src, tgt).returncode == 0
    assert digest_of(registry2.host, repo, sig.digest) is None
    assert regbot(env, "image", "copy", "--referrers", src, tgt).returncode == 0
    assert digest_of(registry2.host, repo, sig.digest) == sig.digest


def test_copy_force_recursive_repairs_a_missing_blob(env, registry, registry2, repo):
    img = images.build_image(seed=46)
    images.push_image(registry.host, repo, img, tag="v1")
    src, tgt = f"{registry.host}/{repo}:v1", f"{registry2.host}/{repo}:v1"
    assert regbot(env, "image", "copy", src, tgt).returncode == 0
    layer = img.layers[0]["digest"]
    resp = requests.delete(f"{registry2.url}/v2/{repo}/blobs/{layer}", timeout=10)
    assert resp.status_code == 202
    assert regbot(env, "image", "copy", src, tgt).returncode == 0
    assert not images.blob_exists(registry2.host, repo, layer)  # up to date by manifest
    assert regbot(env, "image", "copy", "--force-recursive", src, tgt).returncode == 0
    assert images.blob_exists(registry2.host, repo, layer)


def test_copy_include_external(tmp_path):
    src, tgt = start_registry(validation_disabled=True), start_registry(validation_disabled=True)
    try:
        env = isolated_env(tmp_path)
        for reg in (src, tgt):
            assert run_regbot("registry", "set", "--tls", "disabled", reg.host, env=env).returncode == 0
        img = images.build_image(seed=47, layers=1, external_layers=1)
        images.push_image(src.host, "app/win", img, tag="v1", push_external=True)
        (external,) = img.external
        args = [f"{src.host}/app/win:v1", f"{tgt.host}/app/win:v1"]
        assert run_regbot("image", "copy", *args, env=env).returncode == 0
        assert not images.blob_exists(tgt.host, "app/win", external)
        proc = run_regbot("image", "copy", "--include-external", "--force-recursive", *args, env=env)
        assert proc.returncode == 0, proc.stderr
        assert images.blob_exists(tgt.host, "app/win", external)
    finally:
        src.stop()
        tgt.stop()


def test_copy_shows_progress_on_a_terminal(env, registry, registry2, repo):
    img = images.build_image(seed=48, layers=3, layer_size=256 * 1024)
    images.push_image(registry.host, repo, img, tag="v1")
    status, screen = run_on_pty(["image", "copy", f"{registry.host}/{repo}:v1",
                                 f"{registry2.host}/{repo}:v1"], {**env, "COLUMNS": "160"})
    assert status == 0, screen
    assert "blobs" in screen and "bytes" in screen
    assert "4/4" in screen  # three layers and the config
    assert f"{registry2.host}/{repo}:v1" in screen
    assert "scripts" not in screen


def test_dry_run_writes_nothing(env, registry, registry2, repo):
    img = images.build_image(seed=49)
    images.push_image(registry.host, repo, img, tag="v1")
    images.push_image(registry.host, repo, img, tag="v2")
    for args in (["image", "copy", f"{registry.host}/{repo}:v1", f"{registry2.host}/{repo}:v1"],
                 ["tag", "rm", f"{registry.host}/{repo}:v2"],
                 ["manifest", "rm", f"{registry.host}/{repo}@{img.digest}"]):
        proc = regbot(env, "--dry-run", *args)
        assert proc.returncode == 0, proc.stderr
        assert "dry-run=true" in proc.stderr
    assert digest_of(registry2.host, repo, "v1") is None
    assert sorted(images.list_tags(registry.host, repo)) == ["v1", "v2"]


def test_tag_rm_keeps_sibling_tags(env, registry, repo):
    img = images.build_image(seed=50)
    for tag in ("latest", "ci-001", "stable"):
        images.push_image(registry.host, repo, img, tag=tag)
    proc = regbot(env, "tag", "rm", f"{registry.host}/{repo}:ci-001")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert sorted(images.list_tags(registry.host, repo)) == ["latest", "stable"]
    assert digest_of(registry.host, repo, "stable") == img.digest
    missing = regbot(env, "tag", "rm", f"{registry.host}/{repo}:ci-001")
    assert missing.returncode == 1 and "ci-001" in missing.stderr
    assert regbot(env, "tag", "rm", "--ignore-missing", f"{registry.host}/{repo}:ci-001").returncode == 0
    assert regbot(env, "tag", "rm", f"{registry.host}/{repo}@{img.digest}").returncode == 2


def test_manifest_rm_takes_every_tag_on_the_digest(env, registry, repo):
    img, other = images.build_image(seed=51), images.build_image(seed=52)
    for tag in ("a", "b"):
        images.push_image(registry.host, repo, img, tag=tag)
    images.push_image(registry.host, repo, other, tag="c")
    by_tag = regbot(env, "manifest", "rm", f"{registry.host}/{repo}:a")
    assert by_tag.returncode == 2 and "digest required" in by_tag.stderr
    proc = regbot(env, "manifest", "rm", f"{registry.host}/{repo}@{img.digest}")
    assert proc.returncode == 0, proc.stderr
    assert images.list_tags(registry.host, repo) == ["c"]
    proc = regbot(env, "manifest", "rm", "--force-tag-dereference", f"{registry.host}/{repo}:c")
    assert proc.returncode == 0, proc.stderr
    assert digest_of(registry.host, repo, other.digest) is None

    idx = images.build_index(("linux/amd64", "linux/arm64"), seed=59)
    images.push_image(registry.host, repo, idx, tag="multi")
    proc = regbot(env, "manifest", "rm", "--platform", "linux/arm64",
                  f"{registry.host}/{repo}@{idx.digest}")
    assert proc.returncode == 0, proc.stderr
    assert digest_of(registry.host, repo, idx.child("linux/arm64").digest) is None
    assert digest_of(registry.host, repo, idx.child("linux/amd64").digest) is not None


def test_export_and_import(env, registry, registry2, repo, tmp_path):
    idx = images.build_index(seed=53)
    images.push_image(registry.host, repo, idx, tag="v1")
    tar_path = tmp_path / "image.tar"
    proc = regbot(env, "image", "export", f"{registry.host}/{repo}:v1", str(tar_path))
    assert (proc.returncode, proc.stdout) == (0, ""), proc.stderr
    with tarfile.open(tar_path) as tar:
        names = tar.getnames()
        index = json.load(tar.extractfile("index.json"))
    assert "oci-layout" in names and f"blobs/sha256/{idx.digest.split(':')[1]}" in names
    assert index["manifests"][0]["digest"] == idx.digest
    proc = regbot(env, "image", "import", f"{registry2.host}/{repo}:imported", str(tar_path))
    assert proc.returncode == 0, proc.stderr
    assert digest_of(registry2.host, repo, "imported") == idx.digest

    streamed = regbot(env, "image", "export", "--platform", "linux/arm64",
                      f"{registry.host}/{repo}:v1", text=False)
    assert streamed.returncode == 0, streamed.stderr
    with tarfile.open(fileobj=io.BytesIO(streamed.stdout)) as tar:
        index = json.load(tar.extractfile("index.json"))
    assert index["manifests"][0]["digest"] == idx.child("linux/arm64").digest

    missing = regbot(env, "image", "import", f"{registry2.host}/{repo}:x", str(tmp_path / "no.tar"))
    assert missing.returncode == 1 and "no.tar" in missing.stderr


def test_errors_are_one_line(env, registry, repo):
    images.push_image(registry.host, repo, images.build_image(seed=54), tag="v1")
    images.push_image(registry.host, repo, images.build_index(seed=58), tag="multi")
    cases = [
        (["manifest", "get", f"{registry.host}/{repo}:nope"], 1, ["MANIFEST_UNKNOWN", f"{repo}:nope"]),
        (["tag", "ls", f"{registry.host}/no/such"], 1, ["NAME_UNKNOWN", "no/such"]),
        (["image", "inspect", f"{registry.host}/{repo}:nope"], 1, ["MANIFEST_UNKNOWN"]),
        (["blob", "head", f"{registry.host}/{repo}", "sha256:" + "1" * 64], 1, ["sha256:111"]),
        (["manifest", "get", f"{registry.host}/{repo}:multi", "--platform", "linux/s390x"], 1,
         ["platform not found: linux/s390x", f"{repo}:multi"]),
        # a single image is shown whatever the platform asked for, as regctl does
        (["manifest", "get", f"{registry.host}/{repo}:v1", "--platform", "linux/s390x"], 0, []),
    ]
    for args, status, words in cases:
        proc = regbot(env, *args)
        assert proc.returncode == status, (args, proc.stderr)
        if status:
            line, = proc.stderr.strip().splitlines()
            assert line.startswith("regbot: error: ") and all(w in line for w in words), line
    for args in (["image", "digest", f"{registry.host}/Bad/Ref"],
                 ["blob", "get", f"{registry.host}/{repo}", "sha256:abc"],
                 ["manifest", "get", f"{registry.host}/{repo}:v1", "--platform", "linux//x"],
                 ["tag", "ls", f"{registry.host}/{repo}", "--include", "("],
                 ["tag", "ls"]):
        proc = regbot(env, *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr


def test_bad_format_is_refused_before_any_write(env, registry, registry2, repo):
    images.push_image(registry.host, repo, images.build_image(seed=55), tag="v1")
    proc = regbot(env, "image", "copy", f"{registry.host}/{repo}:v1", f"{registry2.host}/{repo}:v1",
                  "--format", "{{.CommonName")
    assert proc.returncode == 2 and "--format" in proc.stderr
    assert digest_of(registry2.host, repo, "v1") is None
    proc = regbot(env, "tag", "ls", f"{registry.host}/{repo}", "--format", "{{.NoSuchField}}")
    assert proc.returncode == 2 and "NoSuchField" in proc.stderr


def test_hosts_come_from_the_config_file_when_given(env, tmp_path, registry, repo):
    images.push_image(registry.host, repo, images.build_image(seed=56), tag="v1")
    config = tmp_path / "regbot.yml"
    config.write_text("version: 1\ncreds:\n  - registry: registry:5000\n"
                      f"    hostname: {registry.host}\n    tls: disabled\nscripts: []\n")
    proc = regbot(env, "-c", str(config), "tag", "ls", f"registry:5000/{repo}")
    assert (proc.returncode, proc.stdout) == (0, "v1\n"), proc.stderr
    # the user config's hosts are not used alongside -c: this registry is plain http
    other = tmp_path / "other.yml"
    other.write_text("version: 1\nscripts: []\n")
    proc = regbot(env, "-c", str(other), "tag", "ls", f"{registry.host}/{repo}")
    assert proc.returncode == 1


def test_inspect_refuses_an_artifact(env, registry, repo):
    img = images.build_image(seed=57)
    images.push_image(registry.host, repo, img, tag="v1")
    sig = images.build_artifact(img)
    images.push_image(registry.host, repo, sig, tag="sig")
    proc = regbot(env, "image", "inspect", f"{registry.host}/{repo}:sig")
    assert proc.returncode == 1 and "artifacts are not supported" in proc.stderr
