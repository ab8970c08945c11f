"""The quick start's world, stood up on local registries.

The quick start (`regbot.yml` at the repository root, copied from the regbot quick start)
mirrors from Docker Hub into `registry:5000`. Here an "upstream" docker-registry behind the
Docker-Hub-like token front stands in for docker.io and a second docker-registry for
`registry:5000`, both through `creds` hostname overrides; the three scripts are used
byte for byte.

    world = build_world(tmp_path, upstream_host, local_host)
    # run regbot with `-c world.config` and `env=world.env`, then check with the expect_* helpers
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import images

QUICKSTART_FILE = Path(__file__).resolve().parents[2] / "regbot.yml"

ALPINE_MINORS = ["3.9", "3.17", "3.18", "3.19", "3.20"]
ALPINE_OTHER = ["3.20.1", "edge", "latest"]
DEBIAN_MINORS = ["11.9", "12.7", "12.8", "13.1"]
DEBIAN_TESTING = ["testing-20260101", "testing-20260201", "testing-20260301",
                  "testing-20260401", "testing-20260501"]
# Already in the local registry before the run, older than every upstream testing tag.
LOCAL_OLD_TESTING = ["testing-20250101", "testing-20250601"]
OLD_DATE = "2020-01-01T00:00:00Z"
NEW_DATE = "2099-01-01T00:00:00Z"
CREATED = "org.opencontainers.image.created"

HUB_USER = "hubuser"
HUB_PASSWORD = "hub-pa55-Wd-9x"


def scripts_text() -> str:
    """The `defaults:` and `scripts:` part of the quick start file, unchanged."""
    text = QUICKSTART_FILE.read_text()
    return text[text.index("defaults:"):]


def config_text(upstream_host: str, local_host: str, token_file: Path) -> str:
    """The quick start file with its creds pointed at local registries."""
    creds = (
        "version: 1\n"
        "creds:\n"
        "  - registry: registry:5000\n"
        f"    hostname: {local_host}\n"
        "    tls: disabled\n"
        "    scheme: http\n"
        "  - registry: docker.io\n"
        f"    hostname: {upstream_host}\n"
        "    tls: disabled\n"
        '    user: "{{env \\"HUB_USER\\"}}"\n'
        f'    pass: "{{{{file \\"{token_file}\\"}}}}"\n'
    )
    return creds + scripts_text()


@dataclass
class World:
    config: Path
    env: dict[str, str]
    upstream_host: str  # the raw upstream registry (no auth), for checks
    local_host: str
    example_digests: dict[str, str] = field(default_factory=dict)


def fill_upstream(host: str, seed: int = 1) -> None:
    for n, tag in enumerate(ALPINE_MINORS + ALPINE_OTHER):
        img = images.build_index(("linux/amd64", "linux/arm64"), seed=seed * 1000 + n,
                                 layer_size=512)
        images.push_image(host, "library/alpine", img, tag=tag)
    for n, tag in enumerate(DEBIAN_MINORS + DEBIAN_TESTING):
        img = images.build_index(("linux/amd64", "linux/arm64"), seed=seed * 2000 + n,
                                 layer_size=512)
        images.push_image(host, "library/debian", img, tag=tag)


def fill_local(host: str, seed: int = 1) -> dict[str, str]:
    """The quick start's "Load example images" step: ci-001..003, latest and stable on one
    old image, plus ci-004 built recently; returns tag -> digest."""
    old = images.build_index(("linux/amd64", "linux/arm64"), seed=seed * 3000,
                             labels={CREATED: OLD_DATE}, created=OLD_DATE, layer_size=256)
    new = images.build_index(("linux/amd64", "linux/arm64"), seed=seed * 3000 + 1,
                             labels={CREATED: NEW_DATE}, created=NEW_DATE, layer_size=256)
    digests = {}
    for tag in ("latest", "ci-001", "ci-002", "ci-003", "stable"):
        digests[tag] = images.push_image(host, "regclient/example", old, tag=tag)
    digests["ci-004"] = images.push_image(host, "regclient/example", new, tag="ci-004")
    for n, tag in enumerate(LOCAL_OLD_TESTING):
        img = images.build_index(("linux/amd64",), seed=seed * 4000 + n, layer_size=256)
        images.push_image(host, "library/debian", img, tag=tag)
    return digests


def build_world(tmp_path: Path, front_host: str, upstream_host: str, local_host: str) -> World:
    token_file = tmp_path / "hub_token"
    token_file.write_text(HUB_PASSWORD + "\n")
    config = tmp_path / "regbot.yml"
    config.write_text(config_text(front_host, local_host, token_file))
    env = dict(os.environ, HUB_USER=HUB_USER)
    fill_upstream(upstream_host)
    digests = fill_local(local_host)
    return World(config, env, upstream_host, local_host, digests)


def local_tags(world: World, repo: str) -> set[str]:
    try:
        return set(images.list_tags(world.local_host, repo))
    except Exception as err:  # a repository that does not exist yet has no tags
        if re.search(r"404|NAME_UNKNOWN", str(err)):
            return set()
        raise


def expected_after_run() -> dict[str, set[str]]:
    return {
        "library/alpine": {"3.18", "3.19", "3.20"},
        "library/debian": {"12.7", "12.8", "13.1",
                           "testing-20260301", "testing-20260401", "testing-20260501"},
        "regclient/example": {"latest", "stable", "ci-004"},
    }


def expected_before_run() -> dict[str, set[str]]:
    return {
        "library/alpine": set(),
        "library/debian": set(LOCAL_OLD_TESTING),
        "regclient/example": {"latest", "ci-001", "ci-002", "ci-003", "stable", "ci-004"},
    }
