"""At scale: a tag list of 10,000 tags that the registry pages (`n`, `last`, `Link`), and a
script copying 2,000 tags whose process memory stays flat.

Both run against the in-memory registry (tests/support/memregistry.py): the point of the
first is pagination, which docker-registry 2.8 does not do for tag lists (it answers them
whole); the second needs thousands of small requests, which the in-memory registry
answers quickly enough to keep the test short (about 20 s; docker-registry takes about
12 ms a manifest PUT, a minute for the seeding alone). There the registries run in a
process of their own, so the memory measured is the script's process alone.
"""

from __future__ import annotations

import gc
import os
import threading
import tracemalloc

from regbot.config import parse_config
from regbot.copy.progress import ProgressEvent, ProgressListener
from regbot.engine import Engine
from regbot.runner import RunOptions, run_script
from regbot.types.ref import Reference
from tests.sandbox_support import client_for, run_lua
from tests.support import images
from tests.support.memregistry import MemRegistry, separate_process

TAG_COUNT = 10_000
PAGE = 100
LIST_PEAK_BOUND = 4 * 1024 * 1024
LIST_SCRIPT = """
local tags = tag.ls("{host}/{repo}")
assert(#tags == {count}, "tags: " .. #tags)
local seen, previous = {{}}, nil
for _, t in ipairs(tags) do
  assert(not seen[t], "twice: " .. t)
  assert(previous == nil or previous < t, "out of order: " .. t)
  seen[t], previous = true, t
end
assert(tags[1] == "{first}" and tags[#tags] == "{last}")
"""


def many_tags(count: int) -> list[str]:
    """Names whose lexical order differs from their numeric one (v10 before v2)."""
    return [f"v{i}" for i in range(count)]


def tag_everything(mem: MemRegistry, repo: str, image: images.Image, tags: list[str]) -> None:
    """Point every tag at `image` (pushed once): as many manifest PUTs would, quicker
    (`reg.tags` is the registry's documented state; nothing is serving a request yet)."""
    mem.tags.setdefault(repo, {}).update(dict.fromkeys(tags, image.digest))


def tag_list_requests(mem: MemRegistry, repo: str) -> list[str]:
    return [path for method, path in mem.requests
            if method == "GET" and path.startswith(f"/v2/{repo}/tags/list")]


def test_tag_ls_follows_the_pages_of_10000_tags_in_order(repo):
    image = images.build_image(layers=1, layer_size=64, seed=1101)
    with MemRegistry(page_size=PAGE) as mem:
        images.push_image(mem.host, repo, image, tag="v0")
        tags = many_tags(TAG_COUNT)
        tag_everything(mem, repo, image, tags)
        expected = sorted(tags)  # the registry's order: lexical, "v10" before "v2"
        tracemalloc.start()
        try:
            run_lua(LIST_SCRIPT.format(host=mem.host, repo=repo, count=TAG_COUNT,
                                       first=expected[0], last=expected[-1]), client_for(mem))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        lua_requests = tag_list_requests(mem, repo)
        target = Reference.parse(f"{mem.host}/{repo}")
        listing = client_for(mem).tag_list(target)
        # a limit above the registry's page size is reached over several pages
        some = client_for(mem).tag_list(target, limit=250, last="v5")
    assert listing == expected  # every tag once, in order
    after = [t for t in expected if t > "v5"]
    assert some == after[:250]
    # Python's share of listing 10,000 tags (the registry here included): the names and a
    # page at a time, not a copy of the list per page or per conversion (measured < 1 MiB)
    assert peak < LIST_PEAK_BOUND, f"peak {peak / 2**20:.1f} MiB"
    # one request a page, each asking for the names after the last one of the page before
    assert len(lua_requests) == TAG_COUNT // PAGE, lua_requests[:3]
    assert lua_requests[0] == f"/v2/{repo}/tags/list"
    for n, path in enumerate(lua_requests[1:], start=1):
        assert path == f"/v2/{repo}/tags/list?last={expected[n * PAGE - 1]}&n={PAGE}", path


COPIES = 2_000
MEMORY_BOUND = 20 * 1024 * 1024  # bytes the script process may grow by from copy 500 to 2,000


def resident_bytes() -> int:
    """This process's resident set size (Linux)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class MemorySampler(ProgressListener):
    """Samples this process's memory when the 500th and the last copy end (copies end on
    the copy threads, so the sample is taken there, under a lock)."""

    def __init__(self, at: tuple[int, ...]) -> None:
        self.at = at
        self.ended = 0
        self.samples: dict[int, int] = {}
        self._lock = threading.Lock()

    def copy_ended(self, event: ProgressEvent) -> None:
        with self._lock:
            self.ended += 1
            if self.ended in self.at:
                gc.collect()  # what is still referenced, not what awaits collection
                self.samples[self.ended] = resident_bytes()


def test_a_script_copying_2000_tags_keeps_its_memory_flat(tmp_path, repo):
    image = images.build_image(layers=1, layer_size=64, seed=1102)
    tags = many_tags(COPIES)
    with separate_process(2, page_size=PAGE) as (src, dst):
        images.push_image(src, repo, image, tag=tags[0])
        sess = images.session(None)
        for tag in tags[1:]:
            images.push_manifest(src, repo, tag, image.manifest, image.media_type, sess=sess)
        config = parse_config(
            "version: 1\ncreds:\n"
            f"  - registry: src.test\n    hostname: {src}\n    tls: disabled\n"
            f"  - registry: dst.test\n    hostname: {dst}\n    tls: disabled\n"
            "scripts:\n  - name: many\n    script: |\n"
            f'      for _, t in ipairs(tag.ls("src.test/{repo}")) do\n'
            f'        image.copy("src.test/{repo}:" .. t, "dst.test/{repo}:" .. t)\n'
            "      end\n", "regbot.yml")
        sampler = MemorySampler(at=(500, COPIES))
        result = run_script(Engine.embedded(config), config.scripts[0], RunOptions(),
                            progress=sampler)
        copied = client_for_hosts(dst).tag_list(Reference.parse(f"{dst}/{repo}"))
    assert result.status == "ok", result.error
    assert result.images_copied == COPIES and sampler.ended == COPIES
    assert copied == sorted(tags)
    growth = sampler.samples[COPIES] - sampler.samples[500]
    assert growth < MEMORY_BOUND, f"grew {growth / 2**20:.1f} MiB over {COPIES - 500} copies"


def client_for_hosts(*hosts: str):
    from regbot.client import RegClient
    from regbot.hosts import Host

    return RegClient([Host(name=h, tls="disabled") for h in hosts])
