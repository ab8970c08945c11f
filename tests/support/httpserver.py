"""A threaded HTTP/1.1 server base on 127.0.0.1, for the small fake servers of the tests.

Subclass `ThreadedService` and implement `handle(self, h: Handler)`; the server starts in
the constructor on a free port:

    class Hello(ThreadedService):
        def handle(self, h):
            h.send(200, {"Content-Type": "text/plain"}, b"hi")

    with Hello() as srv:          # srv.host == "127.0.0.1:PORT", srv.url == "http://..."
        requests.get(srv.url + "/x")

`Handler` (a BaseHTTPRequestHandler) adds: `method`, `path` (with query), `route` (path
without query), `query` (dict of first values), `iter_body()` (streams the request body,
Content-Length or chunked), `read_body()`, `send(status, headers, body)`,
`send_json(status, obj, headers)`, `send_error_oci(status, code, message, detail)`,
`start_chunked(status, headers)` + `write_chunk(data)` + `end_chunked()`, `abort()` (close
the connection with no or partial answer).

Connections are HTTP/1.1 keep-alive; `stop()` closes the listener and every open
connection, so a stopped server really stops answering.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

IO_CHUNK = 64 * 1024


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 120  # idle keep-alive connections end eventually
    # Headers and body leave in two writes: without TCP_NODELAY the body waits for the
    # client's delayed ACK (40 ms a response on Linux), which thousands of requests feel.
    disable_nagle_algorithm = True
    server: _Server

    # Every method goes to the service.
    def _dispatch(self) -> None:
        self._body_done = False
        try:
            self.server.service._run(self)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _dispatch

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        pass  # quiet: tests read the counters instead

    # --- request ---

    @property
    def method(self) -> str:
        return self.command

    @property
    def route(self) -> str:
        return urlsplit(self.path).path

    @property
    def query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.path).query,
                                             keep_blank_values=True).items()}

    @property
    def query_all(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.path).query, keep_blank_values=True)

    @property
    def is_chunked(self) -> bool:
        return "chunked" in self.headers.get("Transfer-Encoding", "").lower()

    @property
    def has_body(self) -> bool:
        return self.is_chunked or int(self.headers.get("Content-Length") or 0) > 0

    def iter_body(self, chunk: int = IO_CHUNK) -> Iterator[bytes]:
        """Stream the request body once (Content-Length or chunked transfer encoding)."""
        if self._body_done:
            return
        self._body_done = True
        if self.is_chunked:
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    raise ConnectionResetError("client closed inside a chunked body")
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                left = size
                while left:
                    data = self.rfile.read(min(left, chunk))
                    if not data:
                        raise ConnectionResetError("client closed inside a chunk")
                    left -= len(data)
                    yield data
                self.rfile.readline(16)
            return
        left = int(self.headers.get("Content-Length") or 0)
        while left > 0:
            data = self.rfile.read(min(left, chunk))
            if not data:
                raise ConnectionResetError("client closed inside the body")
            left -= len(data)
            yield data

    def read_body(self) -> bytes:
        return b"".join(self.iter_body())

    def drain(self) -> None:
        """Discard an unread request body so the connection can be reused."""
        for _ in self.iter_body():
            pass

    # --- response ---

    def send(self, status: int, headers: dict[str, str] | list[tuple[str, str]] | None = None,
             body: bytes = b"") -> None:
        self.drain()
        self.send_response(status)
        items = headers.items() if isinstance(headers, dict) else (headers or [])
        has_length = False
        for name, value in items:
            has_length |= name.lower() == "content-length"
            self.send_header(name, value)
        if not has_length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(obj).encode()
        self.send(status, {"Content-Type": "application/json", **(headers or {})}, body)

    def send_error_oci(self, status: int, code: str, message: str, detail: Any = None,
                       headers: dict[str, str] | None = None) -> None:
        err: dict[str, Any] = {"code": code, "message": message}
        if detail is not None:
            err["detail"] = detail
        self.send_json(status, {"errors": [err]}, headers)

    def start_chunked(self, status: int, headers: list[tuple[str, str]],
                      relay: bool = False) -> None:
        """Begin a chunked answer; relay=True adds no Server/Date (a proxy relays them)."""
        if relay:
            self.send_response_only(status)
        else:
            self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def write_chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    def abort(self) -> None:
        """Close the connection now (after whatever was written)."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    service: ThreadedService

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.service._lock:
            self.service._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.service._lock:
            self.service._conns.discard(request)
        super().shutdown_request(request)


class ThreadedService:
    """Base of a threaded HTTP server on 127.0.0.1 (port 0 = a free one)."""

    def __init__(self, port: int = 0) -> None:
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._in_flight = 0
        self.max_concurrent = 0
        self._server = _Server(("127.0.0.1", port), Handler)
        self._server.service = self
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        self._stopped = False

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def reset_gauge(self) -> None:
        with self._lock:
            self.max_concurrent = self._in_flight

    def _run(self, h: Handler) -> None:
        # The gauge counts requests being handled at once (for concurrency-limit tests).
        with self._lock:
            self._in_flight += 1
            self.max_concurrent = max(self.max_concurrent, self._in_flight)
        try:
            self.handle(h)
        finally:
            with self._lock:
                self._in_flight -= 1

    def handle(self, h: Handler) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)

    def __enter__(self) -> ThreadedService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
