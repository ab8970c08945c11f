"""A TCP relay on 127.0.0.1 that can cut the network, as a partition does.

    relay = TcpRelay(redis.port)        # 127.0.0.1:relay.port -> 127.0.0.1:redis.port
    url = relay.url("redis", "/0")      # what the clients are given
    relay.cut()                         # nothing gets through any more
    relay.restore()                     # new connections go through again
    relay.stop()

`cut()` is a blackhole, not a restart: no RST, no FIN. Open connections are held silent
(nothing read from either side, nothing written), new ones are accepted and held silent
too, so a client only learns of the cut through its own timeouts. The kernel still
answers TCP keepalive probes for the relay's sockets (it is loopback), so a client must
notice by an application timeout (socket_timeout, health checks), the stricter case.
`restore()` drops every connection held (closed; the clients must reconnect) and forwards
new ones again.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field

_CHUNK = 65536
_TICK = 0.05  # seconds a pump waits before it looks at the cut again


@dataclass(eq=False)
class _Pair:
    client: socket.socket
    upstream: socket.socket | None
    generation: int
    closed: threading.Event = field(default_factory=threading.Event)

    def close(self) -> None:
        self.closed.set()
        for sock in (self.client, self.upstream):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()


class TcpRelay:
    """Forwards 127.0.0.1:`port` to `upstream_host`:`upstream_port`, one thread per
    connection; `cut()`/`restore()` as the module docstring says."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: set[_Pair] = set()
        self._generation = 0
        self._cut = threading.Event()
        self._stopped = threading.Event()
        self.cuts = 0
        self.held = 0  # connections dropped by restore()
        self._acceptor = threading.Thread(target=self._accept, name="relay-accept",
                                          daemon=True)
        self._acceptor.start()

    def url(self, scheme: str, path: str = "", userinfo: str = "") -> str:
        at = f"{userinfo}@" if userinfo else ""
        return f"{scheme}://{at}127.0.0.1:{self.port}{path}"

    @property
    def is_cut(self) -> bool:
        return self._cut.is_set()

    def cut(self) -> None:
        with self._lock:
            self._cut.set()
            self.cuts += 1

    def restore(self) -> None:
        """End the cut: drop what was held, forward new connections."""
        with self._lock:
            held = [pair for pair in self._pairs if pair.generation == self._generation]
            self._generation += 1
            self._cut.clear()
        self.held += len(held)
        for pair in held:
            pair.close()

    def cut_for(self, seconds: float) -> None:
        self.cut()
        try:
            time.sleep(seconds)
        finally:
            self.restore()

    def stop(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self._acceptor.join(timeout=5)
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            pair.close()

    # --- the threads ---

    def _accept(self) -> None:
        self._listener.settimeout(_TICK * 4)
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed by stop()
            threading.Thread(target=self._serve, args=(client,), name="relay-conn",
                             daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = None
        if not self.is_cut:
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()  # upstream down: as the upstream itself would refuse
                return
            upstream.settimeout(None)
        with self._lock:
            pair = _Pair(client, upstream, self._generation)
            self._pairs.add(pair)
        try:
            if upstream is None:
                pair.closed.wait()  # accepted during the cut: held until restore()
            else:
                self._pump(pair)
        finally:
            pair.close()
            with self._lock:
                self._pairs.discard(pair)

    def _pump(self, pair: _Pair) -> None:
        assert pair.upstream is not None
        other = {pair.client: pair.upstream, pair.upstream: pair.client}
        with selectors.DefaultSelector() as sel:
            for sock in other:
                sel.register(sock, selectors.EVENT_READ)
            while not pair.closed.is_set():
                if self.is_cut:
                    pair.closed.wait(_TICK)  # silent: read nothing, write nothing
                    continue
                for key, _ in sel.select(timeout=_TICK):
                    if self.is_cut:
                        break
                    sock = key.fileobj
                    try:
                        data = sock.recv(_CHUNK)
                        if not data:
                            return  # one side closed: so does the relay
                        other[sock].sendall(data)
                    except OSError:
                        return
