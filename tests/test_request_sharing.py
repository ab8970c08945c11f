"""Requests a process does not make twice: a host's challenge is learnt once and a token
asked once per scope, however many threads start at the same time; the HEAD that
image.ratelimitWait just made serves the image.copy of the same reference (Docker-Hub-like
token front, real docker-registry processes)."""

from __future__ import annotations

import threading

from regbot.config import parse_config
from regbot.engine import Engine
from regbot.runner import RunOptions, run_script
from tests.reg_helpers import make_scheme, plain, ref
from tests.support import images


def test_threads_starting_together_share_one_challenge_and_one_token(token_front, registry,
                                                                    repo):
    images.push_image(registry.host, repo, images.build_image(seed=801), tag="v1")
    scheme = make_scheme([plain(token_front.host, user="alice", password="s3cret-Pa55",
                                req_concurrent=8)])
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def read() -> None:
        try:
            barrier.wait()
            scheme.manifest_head(ref(token_front.host, repo, "v1"))
            scheme.tag_list(ref(token_front.host, repo))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    # one 401 taught the host's challenge; then one token for the scope, asked before
    # every later request instead of after a 401 of its own
    assert len(token_front.challenges) == 1, token_front.challenges
    assert len(token_front.token_requests) == 1, token_front.token_requests


def test_the_copy_after_a_ratelimit_wait_reuses_its_head(token_front, registry, registry2,
                                                          repo):
    images.push_image(registry.host, repo, images.build_image(seed=802), tag="v1")
    config = parse_config(
        "version: 1\ncreds:\n"
        f"  - registry: hub.test\n    hostname: {token_front.host}\n    tls: disabled\n"
        "    user: alice\n    pass: s3cret-Pa55\n"
        f"  - registry: local.test\n    hostname: {registry2.host}\n    tls: disabled\n"
        "scripts:\n  - name: mirror\n    script: |\n"
        f'      src, tgt = "hub.test/{repo}:v1", "local.test/{repo}:v1"\n'
        "      if not image.ratelimitWait(src, 1) then error('rate limited') end\n"
        "      image.copy(src, tgt)\n")
    engine = Engine.embedded(config)
    assert run_script(engine, config.scripts[0], RunOptions()).status == "ok"
    token_front.requests.clear()
    # the rerun finds the target up to date: one HEAD of the source, not two
    again = run_script(engine, config.scripts[0], RunOptions())
    assert again.status == "ok" and again.images_copied == 0
    heads = [path for method, path in token_front.requests
             if method == "HEAD" and "/manifests/" in path]
    assert heads == [f"/v2/{repo}/manifests/v1"], token_front.requests
    # and nothing asked for a new token or met a 401 on the rerun: the engine kept them
    assert all(method != "GET" or "/token" not in path for method, path in token_front.requests)
