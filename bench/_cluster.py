"""Celery clusters for the benchmarks: a private redis-server and `regbot worker` nodes
started the way the cluster tests start them (tests/support/celery_cluster.py).

    with Clusters(tmp) as clusters:                     # starts redis-server on 127.0.0.1
        with clusters.nodes("k2", config, [NodeSpec("k2-n1", transfers=2)]) as nodes:
            env = nodes.cluster_env()                   # for `regbot once` on that cluster
    # nodes stopped (SIGTERM, SIGKILL after a grace period), then redis-server

Each `nodes()` gets a Redis database of its own, emptied first, as broker, result backend
and shared state.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from _common import ensure_tool, step

if TYPE_CHECKING:
    from tests.support.celery_cluster import NodeSet


@dataclass
class NodeSpec:
    name: str
    transfers: int = 2
    queues: str = "scripts,transfers"


class Clusters:
    """A private redis-server for the clusters of one benchmark; __exit__ stops it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._dbs = 0

    def __enter__(self) -> Clusters:
        from tests.support.redis_server import start_redis

        if not ensure_tool("redis-server", "redis-server"):
            raise SystemExit("redis-server is needed (Debian package redis-server)")
        with step("starting a private redis-server"):
            self.redis = start_redis()
        return self

    def __exit__(self, *exc: object) -> None:
        self.redis.stop()

    def redis_db(self) -> str:
        """A fresh Redis database for one run (16 per server: cycle, emptied first)."""
        db = 1 + self._dbs % 15
        self._dbs += 1
        client = self.redis.client(db)
        try:
            client.flushdb()
        finally:
            client.close()
        return self.redis.url_for(db)

    @contextlib.contextmanager
    def nodes(self, label: str, config: Path, specs: Sequence[NodeSpec]) -> Iterator[NodeSet]:
        """The nodes of `specs` on a fresh Redis database, ready; stopped on the way out."""
        from tests.support.celery_cluster import NodeSet

        # Nodes log at info: "ready." and each task's "succeeded" line are Celery INFO lines
        # (NodeSet.wait_ready and WorkerNode.transfers_done read them).
        url = self.redis_db()
        nodes = NodeSet(self.root / label, config, url, url)
        try:
            for spec in specs:
                nodes.start(spec.name, transfers=spec.transfers, queues=spec.queues)
            nodes.wait_ready()
            yield nodes
        except BaseException:
            # Interrupted or failed: Redis may already be gone (a terminal's Ctrl-C reaches
            # redis-server too), and then a warm shutdown would wait for it: be quick.
            stop_nodes(nodes, grace=3.0)
            raise
        else:
            stop_nodes(nodes, grace=20.0)


def stop_nodes(nodes: NodeSet, grace: float) -> None:
    """SIGTERM every node at once (warm shutdown), SIGKILL what is left after `grace`."""
    for node in nodes.nodes:
        if node.alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(node.proc.pid, signal.SIGTERM)  # a node leads its own session
    for node in nodes.nodes:
        node.stop(grace=grace)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so everything started is stopped on the way out."""
    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt("SIGTERM")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupted_exit() -> int:
    print("interrupted: everything the benchmark started is stopped", file=sys.stderr)
    return 130
