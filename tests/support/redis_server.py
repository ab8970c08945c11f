"""Start real `redis-server` processes on loopback ports (the fixtures are in tests/conftest.py).

The `redis_server` fixture is session-wide: tests sharing it keep apart by key prefix (or by database,
`url_for(db)`, `flushed_db`), and clean up what they write. `broker` is the beat and Flower
tests' broker: database BROKER_DB of that server.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.support.processes import free_port, spawn, stop_process, wait_for_port

REDIS_BINARY = shutil.which("redis-server")
BROKER_DB = 15  # the `broker` fixture's database (tests/test_cluster.py keeps off 14 and 15)


@dataclass
class RedisProcess:
    """One running redis-server without persistence, bound to 127.0.0.1."""

    port: int
    root: Path
    proc: subprocess.Popen
    log_path: Path

    @property
    def url(self) -> str:
        return self.url_for(0)

    def url_for(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, db=db)

    def stop(self) -> None:
        stop_process(self.proc)
        shutil.rmtree(self.root, ignore_errors=True)

    def halt(self, *, keep_data: bool) -> None:
        """Stop the server, an outage: `keep_data` saves its data to come back with
        (`SHUTDOWN SAVE`), else it comes back empty, as a Redis without persistence does."""
        client = self.client()
        try:
            client.shutdown(save=keep_data, nosave=not keep_data)
        except redis.ConnectionError:
            pass  # the server closes the connection as it goes
        finally:
            client.close()
        self.proc.wait(timeout=30)
        if not keep_data:
            (self.root / "dump.rdb").unlink(missing_ok=True)

    def resume(self) -> None:
        """Start the server again on the same port (and directory) after `halt`."""
        self.proc = spawn(_server_argv(self.port, self.root), self.root / "redis-again.log")
        wait_for_port(self.port, proc=self.proc)
        _wait_for_ping(self)


def start_redis() -> RedisProcess:
    """A fresh redis-server on a free port; raises RuntimeError if it does not come up."""
    if REDIS_BINARY is None:
        raise RuntimeError("redis-server is not installed")
    root = Path(tempfile.mkdtemp(prefix="regbot-redis-"))
    port = free_port()
    log_path = root / "redis.log"
    proc = spawn(_server_argv(port, root), log_path)
    server = RedisProcess(port, root, proc, log_path)
    try:
        wait_for_port(port, proc=proc)
        _wait_for_ping(server)
    except Exception:
        server.stop()
        raise
    return server


def _server_argv(port: int, root: Path) -> list[str]:
    assert REDIS_BINARY is not None
    return [REDIS_BINARY, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(root)]


def _wait_for_ping(server: RedisProcess, timeout: float = 10.0) -> None:
    """The port opens before Redis has loaded; PING answers once it serves commands."""
    deadline = time.monotonic() + timeout
    client = server.client()
    try:
        while True:
            try:
                if client.ping():
                    return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)
    finally:
        client.close()


@contextmanager
def flushed_db(server: RedisProcess, db: int) -> Iterator[str]:
    """The URL of database `db` of `server`, emptied before and after the block."""
    client = server.client(db)
    client.flushdb()
    try:
        yield server.url_for(db)
    finally:
        client.flushdb()
        client.close()
