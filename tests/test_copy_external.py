"""includeExternal: a foreign layer (a descriptor with `urls`) that the source registry
lacks is read from its URLs, in order, verified, and pushed to the target; without the
option it is left out. Source and target are real docker-registry processes; only the
external URLs are a small test server (a registry cannot play that part)."""

from __future__ import annotations

import threading

import pytest

from regbot.client import RegClient
from regbot.copy import CopyOptions, copy_image
from regbot.errors import DigestMismatch, NotFound
from regbot.hosts import TLS_DISABLED, Host
from regbot.types.ref import Reference
from tests.support.httpserver import Handler, ThreadedService
from tests.support.images import (
    blob_exists,
    build_image,
    get_blob,
    get_manifest,
    push_image,
)
from tests.support.registry import start_registry


class BlobServer(ThreadedService):
    """Serves blobs at /<name>/<digest>: `good/` the real bytes, `bad/` altered bytes,
    anything else 404. Records (path, Authorization header) of every request."""

    def __init__(self) -> None:
        super().__init__()
        self.blobs: dict[str, bytes] = {}
        self.seen: list[tuple[str, str]] = []
        self._seen_lock = threading.Lock()

    def handle(self, h: Handler) -> None:
        with self._seen_lock:
            self.seen.append((h.route, h.headers.get("Authorization", "")))
        kind, _, digest = h.route.strip("/").partition("/")
        data = self.blobs.get(digest)
        if data is None or kind not in ("good", "bad"):
            h.send(404, {"Content-Type": "text/plain"}, b"no such blob")
            return
        if kind == "bad":
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        h.send(200, {"Content-Type": "application/octet-stream"}, data)


# docker-registry refuses manifests naming foreign URLs unless they are allowed (then it
# does not ask for the blob either), as registries hosting foreign layers are set up.
ALLOW_URLS = "validation:\n  manifests:\n    urls:\n      allow:\n        - '^http://127\\.0\\.0\\.1:'\n"


@pytest.fixture(scope="module")
def src():
    reg = start_registry(extra=ALLOW_URLS)
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def tgt():
    reg = start_registry(extra=ALLOW_URLS)
    yield reg
    reg.stop()


@pytest.fixture
def blobs():
    with BlobServer() as srv:
        yield srv


def foreign_image(blobs: BlobServer, *paths: str, seed: int):
    """A Docker image with one foreign layer whose URLs are `paths` on `blobs`."""
    img = build_image(docker=True, layers=1, external_layers=1, seed=seed,
                      external_url=f"{blobs.url}/good")
    (digest,) = img.external
    blobs.blobs[digest] = img.external[digest]
    layer = next(d for d in img.layers if d.get("urls"))
    layer["urls"] = [f"{blobs.url}/{p}/{digest}" for p in paths]
    # The manifest bytes name the URLs: rebuild it with the ones asked for.
    rebuilt = build_image(docker=True, layers=0, seed=seed,
                          shared_layers=[(d, {**img.blobs, **img.external}[d["digest"]])
                                         for d in img.layers])
    return rebuilt, digest


def client_for(*servers, **host_kw) -> RegClient:
    return RegClient([Host(name=s.host, tls=TLS_DISABLED, **host_kw) for s in servers])


def test_foreign_layer_missing_from_source_is_fetched_from_its_urls(src, tgt,
                                                                    repo, blobs):
    # The first URL answers 404, the second has the blob: regclient tries them in order.
    img, ext = foreign_image(blobs, "missing", "good", seed=301)
    push_image(src.host, repo, img, "v1")  # the foreign layer is not pushed
    assert not blob_exists(src.host, repo, ext)
    client = client_for(src, tgt)
    copy_image(client, Reference.parse(f"{src.host}/{repo}:v1"),
               Reference.parse(f"{tgt.host}/{repo}:v1"),
               CopyOptions(include_external=True))
    assert get_blob(tgt.host, repo, ext) == img.external[ext]
    assert get_manifest(tgt.host, repo, "v1").content == img.manifest
    paths = [p for p, _ in blobs.seen]
    assert paths[:2] == [f"/missing/{ext}", f"/good/{ext}"]


def test_without_include_external_the_foreign_layer_is_left_out(src, tgt, repo,
                                                                blobs):
    img, ext = foreign_image(blobs, "good", seed=302)
    push_image(src.host, repo, img, "v1")
    client = client_for(src, tgt)
    copy_image(client, Reference.parse(f"{src.host}/{repo}:v1"),
               Reference.parse(f"{tgt.host}/{repo}:v1"))
    assert get_manifest(tgt.host, repo, "v1").content == img.manifest
    assert not blob_exists(tgt.host, repo, ext)
    assert blobs.seen == []


def test_external_bytes_are_verified(src, tgt, repo, blobs):
    img, ext = foreign_image(blobs, "bad", seed=303)
    push_image(src.host, repo, img, "v1")
    client = client_for(src, tgt)
    with pytest.raises(DigestMismatch) as info:
        copy_image(client, Reference.parse(f"{src.host}/{repo}:v1"),
                   Reference.parse(f"{tgt.host}/{repo}:v1"),
                   CopyOptions(include_external=True))
    assert ext in str(info.value)
    assert "\n" not in str(info.value)
    assert not blob_exists(tgt.host, repo, ext)
    assert get_manifest(tgt.host, repo, "v1").status_code == 404


def test_no_url_has_it_one_line_error(src, tgt, repo, blobs):
    img, ext = foreign_image(blobs, "missing", "gone", seed=304)
    push_image(src.host, repo, img, "v1")
    client = client_for(src, tgt)
    with pytest.raises(NotFound) as info:
        copy_image(client, Reference.parse(f"{src.host}/{repo}:v1"),
                   Reference.parse(f"{tgt.host}/{repo}:v1"),
                   CopyOptions(include_external=True))
    message = str(info.value)
    assert "\n" not in message
    assert f"{blobs.url}/missing/{ext}: HTTP 404" in message
    assert f"{blobs.url}/gone/{ext}: HTTP 404" in message
    assert get_manifest(tgt.host, repo, "v1").status_code == 404


def test_registry_credentials_are_not_sent_to_external_urls(tgt, repo, blobs):
    auth_src = start_registry(user="alice", password="s3cret-Pa55", extra=ALLOW_URLS)
    try:
        img, ext = foreign_image(blobs, "good", seed=305)
        push_image(auth_src.host, repo, img, "v1", auth=("alice", auth_src.password))
        client = RegClient([
            Host(name=auth_src.host, tls=TLS_DISABLED, user="alice",
                 password=auth_src.password),
            Host(name=tgt.host, tls=TLS_DISABLED),
        ])
        copy_image(client, Reference.parse(f"{auth_src.host}/{repo}:v1"),
                   Reference.parse(f"{tgt.host}/{repo}:v1"),
                   CopyOptions(include_external=True))
    finally:
        auth_src.stop()
    assert get_blob(tgt.host, repo, ext) == img.external[ext]
    assert blobs.seen and all(auth == "" for _, auth in blobs.seen)


def test_lua_image_copy_include_external(src, tgt, repo, blobs):
    from regbot.sandbox.runtime import Sandbox

    img, ext = foreign_image(blobs, "good", seed=306)
    push_image(src.host, repo, img, "v1")
    sb = Sandbox("external", client_for(src, tgt))
    sb.run(f"""
        image.copy("{src.host}/{repo}:v1", "{tgt.host}/{repo}:plain")
        image.copy("{src.host}/{repo}:v1", "{tgt.host}/{repo}:v1", {{includeExternal = true}})
    """)
    assert get_manifest(tgt.host, repo, "plain").content == img.manifest
    assert get_blob(tgt.host, repo, ext) == img.external[ext]


def test_regctl_image_copy_include_external(src, tgt, repo, blobs, tmp_path):
    from tests.support.regbot_cli import isolated_env, run_regbot

    img, ext = foreign_image(blobs, "good", seed=307)
    push_image(src.host, repo, img, "v1")
    env = isolated_env(tmp_path)
    for reg in (src, tgt):
        assert run_regbot("registry", "set", "--tls", "disabled", reg.host, env=env).returncode == 0
    proc = run_regbot("image", "copy", "--include-external", f"{src.host}/{repo}:v1",
                      f"{tgt.host}/{repo}:v1", env=env)
    assert proc.returncode == 0, proc.stderr
    assert get_blob(tgt.host, repo, ext) == img.external[ext]
