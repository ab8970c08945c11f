"""The HTTP transport (regbot/http/client.py) with small fake servers: redirects without
leaking Authorization, retries and which bodies may be re-sent, backoff per host,
Retry-After, request slots, User-Agent, connection failures."""

from __future__ import annotations

import base64
import email.utils
import threading
import time
from contextlib import contextmanager

import pytest

from regbot.errors import TransportError
from regbot.hosts import HostTable
from regbot.http.client import HTTPClient, Request, _check_redirect
from tests.reg_helpers import USER_AGENT, make_limits, plain
from tests.support.httpserver import ThreadedService
from tests.support.registry import free_port

PASSWORD = "redirect-Secret-9"
BASIC = "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()


class Recorder(ThreadedService):
    """Answers from `script(h)` -> (status, headers, body); records every request."""

    def __init__(self, script) -> None:
        self.script = script
        self.seen: list[dict] = []
        super().__init__()

    def handle(self, h) -> None:
        body = h.read_body()
        with self._lock:
            self.seen.append({"method": h.method, "path": h.path, "headers": dict(h.headers), "body": body})
        status, headers, payload = self.script(h)
        h.send(status, headers, payload)


@pytest.fixture
def servers():
    started = []

    def start(script):
        srv = Recorder(script)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


class SlotRecorder:
    """Limits whose request_slot records each use (and delegates to the real one)."""

    def __init__(self) -> None:
        self.real = make_limits()
        self.calls: list[tuple[str, int, float]] = []
        self.lock = threading.Lock()

    @contextmanager
    def request_slot(self, host, concurrent, per_sec):
        with self.lock:
            self.calls.append((host, concurrent, per_sec))
        with self.real.request_slot(host, concurrent, per_sec):
            yield

    def __getattr__(self, name):
        return getattr(self.real, name)


def client(hosts, limits=None, **kw):
    kw.setdefault("retries", 2)
    kw.setdefault("backoff_base", 0.01)
    return HTTPClient(HostTable(hosts, skip_docker_config=True), limits or make_limits(), USER_AGENT, **kw)


def test_redirect_to_storage_drops_authorization(servers):
    storage = servers(lambda h: (200, {"Content-Type": "application/octet-stream"}, b"blob bytes"))

    def registry(h):
        if h.headers.get("Authorization") != BASIC:
            return 401, {"WWW-Authenticate": 'Basic realm="r"'}, b""
        return 307, {"Location": f"{storage.url}/store/abc?signature=xyz"}, b""

    reg = servers(registry)
    limits = SlotRecorder()
    http = client([plain(reg.host, user="alice", password=PASSWORD, req_concurrent=2)], limits)
    resp = http.send(Request("GET", reg.host, "lib/app", "blobs/sha256:" + "a" * 64, ref="x"))
    assert resp.status == 200 and resp.read() == b"blob bytes"
    assert [r["headers"].get("Authorization") for r in reg.seen] == [None, BASIC]
    assert len(storage.seen) == 1 and "Authorization" not in storage.seen[0]["headers"]
    assert storage.seen[0]["path"] == "/store/abc?signature=xyz"
    assert all(r["headers"]["User-Agent"] == USER_AGENT for r in reg.seen + storage.seen)
    # every request (each attempt) went through a slot of that registry's host
    assert limits.calls == [(reg.host, 2, 0.0)] * 2


def test_redirect_policy():
    _check_redirect("https://reg.test/v2/x", "https://storage.test/b", "r")
    _check_redirect("http://127.0.0.1:5000/v2/x", "http://localhost:9000/b", "r")
    for target in ("http://storage.test/b", "https://127.0.0.1/b", "https://[::1]/b", "ftp://x/y"):
        with pytest.raises(TransportError, match="refusing"):
            _check_redirect("https://reg.test/v2/x", target, "r")


def test_redirect_loop_is_cut(servers):
    loop = servers(lambda h: (302, {"Location": "/v2/again"}, b""))
    with pytest.raises(TransportError, match="redirects"):
        client([plain(loop.host)]).send(Request("GET", loop.host, "a", "manifests/x", ref="x"))
    assert len(loop.seen) == 11


def test_303_after_put_becomes_get_without_body(servers):
    def script(h):
        if h.method == "PUT":
            return 303, {"Location": "/v2/done"}, b""
        return 200, {}, b"ok"

    srv = servers(script)
    resp = client([plain(srv.host)]).send(Request("PUT", srv.host, "a", "x", body=b"payload", length=7))
    assert resp.status == 200
    assert [(r["method"], r["body"]) for r in srv.seen] == [("PUT", b"payload"), ("GET", b"")]


def test_which_bodies_are_resent_after_a_5xx(servers):
    srv = servers(lambda h: (503, {}, b""))
    http = client([plain(srv.host)], retries=2)
    resp = http.send(Request("PUT", srv.host, "a", "x", body=iter([b"one", b"-shot"])))
    assert resp.status == 503 and len(srv.seen) == 1  # a consumed iterator cannot go again
    assert srv.seen[0]["body"] == b"one-shot"
    srv.seen.clear()
    opened = []

    def reopen():
        opened.append(1)
        return iter([b"again"])

    assert http.send(Request("PUT", srv.host, "a", "x", body=reopen, length=5)).status == 503
    assert len(srv.seen) == 3 and len(opened) == 3
    assert all(r["body"] == b"again" and r["headers"]["Content-Length"] == "5" for r in srv.seen)
    srv.seen.clear()
    assert http.send(Request("PUT", srv.host, "a", "x", body=b"bytes", length=5)).status == 503
    assert len(srv.seen) == 3


def test_retry_after_and_backoff_per_host(servers):
    sleeps: list[float] = []
    busy = servers(lambda h: (503, {}, b""))
    fine = servers(lambda h: (200, {}, b""))
    http = client([plain(busy.host), plain(fine.host)], retries=3, backoff_base=0.4, sleep=sleeps.append)
    assert http.send(Request("GET", busy.host, "a", "x")).status == 503
    assert len(sleeps) == 3
    # exponential with jitter: each wait in [d/2, d] for d = 0.4, 0.8, 1.6
    assert 0.15 <= sleeps[0] <= 0.4 and 0.35 <= sleeps[1] <= 0.8 and 0.75 <= sleeps[2] <= 1.6
    sleeps.clear()
    assert http.send(Request("GET", fine.host, "a", "x")).status == 200
    assert sleeps == []  # another host is not slowed by this one's backoff

    assert http._retry_after("2") == 2.0
    assert http._retry_after("99999") == 60.0  # capped
    soon = email.utils.formatdate(time.time() + 3, usegmt=True)
    assert 1.5 < http._retry_after(soon) <= 3.0
    assert http._retry_after(email.utils.formatdate(time.time() - 30, usegmt=True)) == 0.0
    assert http._retry_after("soon") is None and http._retry_after(None) is None


def test_retry_after_header_sets_the_wait(servers):
    calls = []

    def script(h):
        calls.append(1)
        if len(calls) == 1:
            return 429, {"Retry-After": "7"}, b""
        return 200, {}, b""

    srv = servers(script)
    sleeps: list[float] = []
    http = client([plain(srv.host)], sleep=sleeps.append)
    assert http.send(Request("GET", srv.host, "a", "x")).status == 200
    assert len(sleeps) == 1 and 6.5 < sleeps[0] <= 7.0


def test_connection_refused_is_retried_then_reported():
    port = free_port()
    sleeps: list[float] = []
    http = client([plain(f"127.0.0.1:{port}")], retries=2, sleep=sleeps.append)
    with pytest.raises(TransportError) as info:
        http.send(Request("GET", f"127.0.0.1:{port}", "a", "blobs/uploads/x", query=[("_state", "s3cr3t")], ref="the-ref"))
    text = str(info.value)
    assert "connection refused" in text and "after 3 attempts" in text
    assert "the-ref" in text and "s3cr3t" not in text
    assert len(sleeps) == 2


def test_connections_are_reused_after_bodiless_and_read_answers(servers):
    """HEADs, empty answers and fully read bodies hand their connection back to the pool;
    only an answer left unread (a blob not wanted after all) costs its connection."""
    ports: list[int] = []

    def answer(h):
        ports.append(h.client_address[1])
        if h.method == "HEAD":
            return 200, {"Content-Length": "5"}, b""
        if h.path.endswith("/empty"):
            return 202, {"Content-Length": "0"}, b""
        return 200, {"Content-Type": "text/plain"}, b"x" * 100_000

    srv = servers(answer)
    http = client([plain(srv.host)])
    for _ in range(3):
        http.send(Request("HEAD", srv.host, "lib/app", "manifests/v1", ref="x")).close()
        http.send(Request("POST", srv.host, "lib/app", "empty", body=b"", length=0, ref="x")).close()
        with http.send(Request("GET", srv.host, "lib/app", "full", ref="x")) as resp:
            assert len(resp.read()) == 100_000
    assert len(set(ports)) == 1, ports
    http.send(Request("GET", srv.host, "lib/app", "full", ref="x")).close()  # left unread
    http.send(Request("HEAD", srv.host, "lib/app", "manifests/v1", ref="x")).close()
    assert len(set(ports)) == 2


@pytest.fixture
def proxy_env(monkeypatch):
    """Proxy variables for one test; the per-host proxy choice is read afresh."""
    from regbot.http import client as http_client

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
                 "http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    http_client._proxy_for.cache_clear()
    yield monkeypatch
    http_client._proxy_for.cache_clear()


def test_requests_go_through_the_proxy_the_environment_names(servers, proxy_env):
    """HTTP_PROXY carries requests to a registry (absolute-form request target); a host in
    NO_PROXY is reached directly."""
    proxy = servers(lambda h: (200, {"Docker-Content-Digest": "sha256:" + "e" * 64}, b""))
    direct = servers(lambda h: (200, {}, b""))
    proxy_env.setenv("HTTP_PROXY", f"http://{proxy.host}")
    proxy_env.setenv("NO_PROXY", "direct.invalid," + direct.host.split(":")[0])
    http = client([plain("registry.invalid:5000"), plain(direct.host)])
    resp = http.send(Request("HEAD", "registry.invalid:5000", "lib/app", "manifests/v1", ref="x"))
    resp.close()
    assert resp.status == 200
    assert [r["path"] for r in proxy.seen] == ["http://registry.invalid:5000/v2/lib/app/manifests/v1"]
    http.send(Request("HEAD", direct.host, "lib/app", "manifests/v1", ref="x")).close()
    assert [r["path"] for r in direct.seen] == ["/v2/lib/app/manifests/v1"]
    assert len(proxy.seen) == 1
