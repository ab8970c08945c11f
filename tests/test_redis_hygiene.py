"""Redis stays clean: after cluster runs, every key either expires on its own or belongs to
the documented long-lived set (README "What a cluster keeps in Redis"). A private
redis-server, a real worker node, real registries."""

from __future__ import annotations

import re

import pytest

from tests.support import images
from tests.support.celery_cluster import NodeSet
from tests.support.redis_server import REDIS_BINARY, start_redis

# Keys that live as long as the cluster: Celery's exchange bindings (kombu), and while a
# beat runs its leader lock (which has a TTL anyway). Everything of regbot's expires.
# kombu keeps its queue bindings and their deadlines for as long as the queues exist.
LONG_LIVED = (re.compile(r"_kombu\.binding.+"),)


@pytest.mark.skipif(REDIS_BINARY is None, reason="redis-server not installed")
def test_every_key_a_run_leaves_expires_or_is_documented(tmp_path, registry, registry2, repo):
    server = start_redis()
    nodes = None
    try:
        url = server.url
        config = tmp_path / "regbot.yml"
        config.write_text(
            "version: 1\ncreds:\n"
            f"  - registry: src.test\n    hostname: {registry.host}\n    tls: disabled\n"
            f"  - registry: dst.test\n    hostname: {registry2.host}\n    tls: disabled\n"
            # every blob through the transfers queue, so its keys are made too
            "defaults:\n  transferMin: 0\n"
            "scripts:\n  - name: copy\n    script: |\n"
            f'      image.copy("src.test/{repo}:v1", "dst.test/{repo}:v1")\n'
            f'      image.copy("src.test/{repo}:v1", "dst.test/{repo}:v2")\n')
        images.push_image(registry.host, repo, images.build_image(layers=3, seed=951), tag="v1")
        nodes = NodeSet(tmp_path / "cluster", config, url, url)
        node = nodes.start("tidy", transfers=1)
        nodes.wait_ready()
        for _ in range(2):  # a cold run and an up-to-date one
            proc = nodes.once(timeout=120)
            assert proc.returncode == 0, proc.stdout + proc.stderr + nodes.logs()
        assert node.transfers_done() >= 4, nodes.logs()
        client = server.client()
        leftovers = {}
        for raw in client.scan_iter(count=1000):
            key = raw.decode()
            ttl = client.ttl(key)
            if ttl == -1 and not any(p.fullmatch(key) for p in LONG_LIVED):
                leftovers[key] = client.type(key).decode()
        assert leftovers == {}, leftovers
        # and what regbot keeps is under its prefix
        names = [k.decode() for k in client.scan_iter(count=1000)]
        assert all(k.startswith(("regbot:", "celery-task-meta-", "_kombu.", "unacked"))
                   for k in names), names
    finally:
        if nodes is not None:
            nodes.stop_all()
        server.stop()
