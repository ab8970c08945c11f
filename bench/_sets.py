"""The image sets the benchmarks copy, built deterministically and pushed with the test
helpers (tests/support/images.py, plain `requests`, never the regbot client).

    tags, stored, blobs = push_copy_set(host, "bench/app", count=8)    # 3-platform indexes
    mirror = push_mirror_set(host, repos=10, tags=20)                  # the mirror benchmark's
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from tests.support import images

MiB = 1024 * 1024
COPY_PLATFORMS = ("linux/amd64", "linux/arm64", "linux/arm/v7")
PUSH_THREADS = 4  # the source is filled before any timing: only setup time is at stake


def gzip_layer(size: int, seed: int) -> tuple[dict, bytes]:
    """A layer as registries hold them: a gzip stream (stored, not compressed: the bytes
    are random anyway) of about `size` bytes. Real gzip matters to skopeo, which would
    compress a layer it finds uncompressed, changing its digest."""
    data = gzip.compress(images.random_blob(size, seed=seed), compresslevel=0, mtime=0)
    return {"mediaType": images.MT_OCI_LAYER, "digest": images.sha256(data),
            "size": len(data)}, data


def push_copy_set(host: str, repo: str, count: int, platforms: Sequence[str] = COPY_PLATFORMS,
                  layers: int = 2, shared: int = 1, layer_size: int = 8 * MiB
                  ) -> tuple[list[str], int, dict[str, int]]:
    """`count` OCI indexes (tags img-00, img-01, ...) of one image per platform, each of
    `layers` layers of `layer_size`, the first `shared` of them common to every image of
    that platform. Returns the tags, the bytes a full copy stores (blobs and manifests,
    each once) and the distinct blobs (digest -> size).

    The defaults with count=8 are issue 9's set: 3 shared + 8 x 3 own layers of 8 MiB,
    216 MiB of layers."""
    bases = {p: [gzip_layer(layer_size, images.hash_seed("base", p, n)) for n in range(shared)]
             for p in platforms}
    tags, stored = [], 0
    blobs: dict[str, int] = {}
    for i in range(count):
        children = []
        for p in platforms:
            own = [gzip_layer(layer_size, images.hash_seed("image", i, p, n))
                   for n in range(layers - shared)]
            children.append(images.build_image(p, layers=0, shared_layers=bases[p] + own,
                                               labels={"bench.image": str(i)}))
        index = images.build_index(children=children)
        tag = f"img-{i:02d}"
        images.push_image(host, repo, index, tag=tag)
        tags.append(tag)
        for m in index.all_manifests():
            stored += m.size
            for digest, data in m.blobs.items():
                blobs[digest] = len(data)
    return tags, stored + sum(blobs.values()), blobs


@dataclass
class MirrorSet:
    """What push_mirror_set put in the source: repository -> its tags, and the numbers a
    full copy moves."""

    tags: dict[str, list[str]]
    blobs: int  # distinct blobs to copy (per repository: the shared layer, and per tag a
    #             config and a layer)
    bytes: int  # their bytes plus the manifests'

    @property
    def images(self) -> int:
        return sum(len(t) for t in self.tags.values())


def mirror_repo(n: int) -> str:
    return f"mirror/app-{n:03d}"


def push_mirror_set(host: str, repos: int, tags: int, shared_size: int = 64 * 1024,
                    own_size: int = 4 * 1024) -> MirrorSet:
    """Issue 10's mirror: `repos` repositories of `tags` tags (v0000, v0001, ...), each its
    own single-platform image of a config, a `shared_size` layer common to every image of
    its repository and a unique `own_size` layer."""
    builds: list[tuple[str, str, images.Image]] = []
    by_repo: dict[str, list[str]] = {}
    for r in range(repos):
        repo = mirror_repo(r)
        base = images.build_image(layers=1, layer_size=shared_size,
                                  seed=images.hash_seed("mirror-base", r))
        for t in range(tags):
            tag = f"v{t:04d}"
            image = images.build_image(layers=1, layer_size=own_size,
                                       seed=images.hash_seed("mirror", r, t),
                                       shared_layers=base.layers_with_data(),
                                       labels={"bench.tag": f"{repo}:{tag}"})
            builds.append((repo, tag, image))
            by_repo.setdefault(repo, []).append(tag)
    # The shared layer first, so the images pushed in parallel find it there.
    firsts = {repo: image for repo, _tag, image in reversed(builds)}
    for repo, image in firsts.items():
        images.push_blob(host, repo, image.blobs[image.layers[0]["digest"]])
    with ThreadPoolExecutor(PUSH_THREADS) as pool:
        list(pool.map(lambda b: images.push_image(host, b[0], b[2], tag=b[1]), builds))
    blob_sizes: dict[tuple[str, str], int] = {}
    stored = 0
    for repo, _tag, image in builds:
        stored += image.size
        for digest, data in image.blobs.items():
            blob_sizes[(repo, digest)] = len(data)
    return MirrorSet(by_repo, len(blob_sizes), stored + sum(blob_sizes.values()))
