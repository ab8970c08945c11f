"""regctl's output, captured once, and the registry content it was captured from.

`fill(host)` pushes deterministic images (the same digests every time) into a registry;
CASES are the command lines run against it. tests/fixtures/regctl/<name>.out holds what
the Go `regctl` printed for each (captured with tests/fixtures/regctl/capture.py, which
needs the Go peer; the tests never do), with the registry's address written as {REG}
and each `Date:` header as <DATE>.

    normalize(output, host) -> the text as stored in a fixture
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.support import images

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "regctl"
CREATED = "org.opencontainers.image.created"
OLD_DATE = "2020-01-01T00:00:00Z"

CONFIG_DIGEST = "sha256:62a4fa7353e0bfeffed40fe82ef350b0a462b25b318179b3dfcf659ed6b3e993"
LAYER_DIGEST = "sha256:15d31c5881b8f4006f69d35422dca0556d92f3d834cdfd253dc4c810710f7750"


def fill(host: str) -> dict[str, images.Image]:
    """The content every case reads (and image_copy adds copy/example:v1)."""
    example = images.build_index(("linux/amd64", "linux/arm64"), seed=7, layer_size=300,
                                 labels={CREATED: OLD_DATE}, created=OLD_DATE,
                                 annotations={"org.opencontainers.image.title": "example",
                                              "com.example.team": "registry"})
    for tag in ("latest", "ci-001", "ci-002", "stable"):
        images.push_image(host, "regclient/example", example, tag=tag)
    debian = images.build_image(seed=9, docker=True, layer_size=200, labels={"a": "b"})
    images.push_image(host, "library/debian", debian, tag="12.7")
    alpine = images.build_index(("linux/amd64", "linux/arm/v7"), docker=True, seed=12,
                                layer_size=100)
    images.push_image(host, "library/alpine", alpine, tag="3.20")
    big = images.build_image(seed=11, layers=1, layer_size=150_000)
    images.push_image(host, "app/big", big, tag="v1")
    signature = images.build_artifact(big)
    images.push_image(host, "app/big", signature, tag="sig")
    return {"example": example, "debian": debian, "alpine": alpine, "big": big,
            "signature": signature}


REG = "{REG}"
CASES: dict[str, list[str]] = {
    "tag_ls": ["tag", "ls", f"{REG}/regclient/example"],
    "tag_ls_filter": ["tag", "ls", f"{REG}/regclient/example", "--include", "ci-.*",
                      "--include", "stable", "--exclude", "ci-002"],
    "tag_ls_json": ["tag", "ls", f"{REG}/regclient/example", "--format", "{{json .}}"],
    "tag_ls_json_pretty": ["tag", "ls", f"{REG}/regclient/example", "--format", "{{jsonPretty .}}"],
    "tag_ls_body": ["tag", "ls", f"{REG}/regclient/example", "--format", "body"],
    "tag_ls_raw": ["tag", "ls", f"{REG}/regclient/example", "--format", "raw"],
    "tag_ls_fields": ["tag", "ls", f"{REG}/regclient/example", "--format",
                      "{{.Name}} {{len .Tags}}{{range .Tags}} [{{.}}]{{end}}\n"],
    "repo_ls": ["repo", "ls", REG],
    "repo_ls_json": ["repo", "ls", REG, "--format", "{{json .}}"],
    "repo_ls_headers": ["repo", "ls", REG, "--format", "headers"],
    "manifest_get_index": ["manifest", "get", f"{REG}/regclient/example"],
    "manifest_get_platform": ["manifest", "get", f"{REG}/regclient/example", "--platform",
                              "linux/arm64"],
    "manifest_get_docker": ["manifest", "get", f"{REG}/library/debian:12.7"],
    "manifest_get_docker_list": ["manifest", "get", f"{REG}/library/alpine:3.20"],
    "manifest_get_docker_list_arm": ["manifest", "get", f"{REG}/library/alpine:3.20",
                                     "--platform", "linux/arm"],
    "manifest_get_big": ["manifest", "get", f"{REG}/app/big:v1"],
    "manifest_get_artifact": ["manifest", "get", f"{REG}/app/big:sig"],
    "manifest_get_body": ["manifest", "get", f"{REG}/regclient/example", "--format", "body"],
    "manifest_get_raw": ["manifest", "get", f"{REG}/regclient/example:ci-001", "--format", "raw"],
    "manifest_get_json": ["manifest", "get", f"{REG}/library/debian:12.7", "--format",
                          "{{json .}}"],
    "manifest_get_json_pretty": ["manifest", "get", f"{REG}/regclient/example", "--format",
                                 "{{jsonPretty .}}"],
    "manifest_get_range": ["manifest", "get", f"{REG}/regclient/example", "--format",
                           '{{range .Manifests}}{{.Digest}} {{.Platform.OS}}/'
                           '{{.Platform.Architecture}}{{"\\n"}}{{end}}'],
    "manifest_get_fields": ["manifest", "get", f"{REG}/library/debian:12.7", "--format",
                            "{{.Config.Digest}} {{len .Layers}} {{.GetDescriptor.MediaType}} "
                            "{{.GetDescriptor.Size}} {{.SchemaVersion}}\n"],
    "manifest_head": ["manifest", "head", f"{REG}/regclient/example"],
    "manifest_head_platform": ["manifest", "head", f"{REG}/regclient/example", "--platform",
                               "linux/arm64"],
    "manifest_head_headers": ["manifest", "head", f"{REG}/library/debian:12.7", "--format",
                              "headers"],
    "image_digest": ["image", "digest", f"{REG}/regclient/example:stable"],
    "image_digest_platform": ["image", "digest", f"{REG}/regclient/example", "--platform",
                              "linux/amd64"],
    "image_inspect": ["image", "inspect", f"{REG}/regclient/example", "--platform", "linux/amd64"],
    "image_inspect_docker": ["image", "inspect", f"{REG}/library/debian:12.7"],
    "image_inspect_json": ["image", "inspect", f"{REG}/regclient/example", "--platform",
                           "linux/arm64", "--format", "{{json .}}"],
    "image_inspect_fields": ["image", "inspect", f"{REG}/regclient/example", "-p", "linux/arm64",
                             "--format", "{{.Config.Labels}} {{.Architecture}} {{.OS}} "
                             "{{index .RootFS.DiffIDs 0}} {{len .History}}\n"],
    "image_inspect_raw": ["image", "inspect", f"{REG}/library/debian:12.7", "--format", "raw"],
    "blob_head": ["blob", "head", f"{REG}/library/debian", LAYER_DIGEST],
    "blob_get_config": ["blob", "get", f"{REG}/library/debian", CONFIG_DIGEST],
    "blob_get_headers": ["blob", "get", f"{REG}/library/debian", CONFIG_DIGEST, "--format",
                         "headers"],
    "blob_get_descriptor": ["blob", "get", f"{REG}/library/debian", LAYER_DIGEST, "--format",
                            "{{json .GetDescriptor}}"],
    "image_copy": ["image", "copy", f"{REG}/regclient/example:latest", f"{REG}/copy/example:v1"],
    "image_copy_format": ["image", "copy", f"{REG}/library/debian:12.7",
                          f"{REG}/copy/debian:12", "--format", "{{.Repository}} {{.Tag}}\n"],
}


# `registry` commands, run in this order with {REG} a plain registry and {AUTH} the
# htpasswd one (user AUTH_USER); the fixtures of the *_out ones hold what they printed,
# registry_file.out the config file they left.
AUTH_USER, AUTH_PASSWORD = "alice", "s3cret-Pa55"
REGISTRY_STEPS: list[tuple[str, list[str]]] = [
    ("", ["registry", "set", "--tls", "disabled", REG]),
    ("", ["registry", "set", "--tls", "disabled", "{AUTH}", "--skip-check"]),
    ("", ["registry", "set", "mirror.example:5000", "--hostname", "127.0.0.1:9", "--tls",
          "insecure", "--mirror", "a.example", "--mirror", "b.example", "--priority", "3",
          "--repo-auth", "--blob-chunk", "1000", "--blob-max", "-1", "--req-concurrent", "5",
          "--req-per-sec", "2.5", "--api-opts", "disableHead=true", "--skip-check"]),
    ("", ["registry", "set", "docker.io", "--req-per-sec", "1", "--skip-check"]),
    ("", ["registry", "login", "{AUTH}", "-u", AUTH_USER, "--pass-stdin"]),
    ("registry_config_all", ["registry", "config"]),
    ("registry_config_host", ["registry", "config", "{AUTH}"]),
    ("registry_config_user", ["registry", "config", "{AUTH}", "--format", "{{.User}}\n"]),
    ("registry_config_hub", ["registry", "config", "docker.io"]),
]


def registry_argv(args: list[str], host: str, auth_host: str) -> list[str]:
    return [a.replace(REG, host).replace("{AUTH}", auth_host) for a in args]


def normalize_hosts(text: str, host: str, auth_host: str) -> str:
    return text.replace(auth_host, "{AUTH}").replace(host, REG)


def argv(name: str, host: str) -> list[str]:
    return [arg.replace(REG, host) for arg in CASES[name]]


def normalize(output: str, host: str) -> str:
    return re.sub(r"(?m)^Date: .*$", "Date: <DATE>", output.replace(host, REG))


def expected(name: str) -> str:
    return (FIXTURES / f"{name}.out").read_text(encoding="utf-8")
