"""HTTP fronts on 127.0.0.1 that proxy to a registry and add what a plain registry lacks.

`upstream` is anything with a `.host` ("127.0.0.1:PORT": RegistryProcess, MemRegistry,
another front) or a "host:port" string. Bodies are streamed both ways; headers are kept
(hop-by-hop ones aside); a `Location` pointing at the upstream is rewritten to the front.
Fronts can be stacked (a FaultFront in front of a TokenAuthFront, ...).

TokenAuthFront(upstream, user="alice", password="s3cret-Pa55", rate_limit=None,
               window=21600, service="registry.test", token_ttl=300, upstream_auth=None)
    Docker Hub-like Bearer token auth. /v2/... without a valid token -> 401 with
    `WWW-Authenticate: Bearer realm="http://<front>/token",service="...",scope="repository:<repo>:pull"`
    (`pull,push` for POST/PUT/PATCH/DELETE; a cross-repo mount adds
    `repository:<from>:pull`; /v2/_catalog asks `registry:catalog:*`; /v2/ has no scope).
    GET /token?service=..&scope=..(repeatable) with Basic auth issues
    {"token","access_token","expires_in","issued_at"}; a wrong password -> 401; no
    credentials -> an anonymous token limited to `pull`. POST /token (OAuth2 password
    grant form) works too. Tokens are checked against repository + action (DELETE is
    allowed by `push` or `delete`). The client's Authorization header is not passed upstream;
    `upstream_auth=(user, password)` sends Basic auth upstream instead (e.g. auth_registry).
    With `rate_limit=n`: every manifest GET counts; manifest GET/HEAD answers carry
    `RateLimit-Limit: n;w=<window>`, `RateLimit-Remaining: <left>;w=<window>`,
    `Docker-RateLimit-Source: 127.0.0.1`; at 0 left a manifest GET gets 429 TOOMANYREQUESTS.
    Counters: `.token_requests` [(scope, user)] (user "" = anonymous; never a password),
    `.requests` [(method, path)], `.challenges` [(method, path)] (answered 401 with the
    Bearer challenge), `.manifest_gets`, `.remaining`, `.set_remaining(n)`,
    `.issued_tokens()` (for log-leak checks), `.max_concurrent`.

FaultFront(upstream, bandwidth=None)
    `add(method, path_regex, kind, times=1, **kw) -> Fault`: the next `times` requests
    whose method matches (`"*"` = any) and whose path+query matches `re.search(path_regex)`
    get the fault (times=-1: forever), later ones pass through. First matching active fault
    wins. Kinds and keyword options:
      status       status=503 (any code), body=OCI error JSON by default
      retry_after  429 with `Retry-After: <seconds>` (seconds=1)
      truncate     forward, send the full Content-Length, close after bytes=N (default half)
      corrupt      forward, XOR 0xFF into the body byte at offset=N (default middle): same
                   length and headers, wrong digest
      delay        sleep seconds=S, then pass through
      drop         close the connection without an answer
    `Fault.hits` counts uses; `front.hits(kind=None)` totals; `.requests` [(method, path)];
    `.max_concurrent` (most requests in flight at once; `.reset_gauge()`); `bandwidth`
    (bytes/second per request, both directions) throttles bodies; `.clear()` drops faults.
"""

from __future__ import annotations

import base64
import http.client
import re
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.support.httpserver import IO_CHUNK, Handler, ThreadedService

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
              "te", "trailer", "trailers", "transfer-encoding", "upgrade", "host", "expect"}
_REPO_PATH = re.compile(r"^/v2/(?P<repo>.+?)/(?P<kind>manifests|blobs|tags|referrers)(?:/|$)")


def upstream_host(upstream: Any) -> str:
    return upstream if isinstance(upstream, str) else upstream.host


class _Throttle:
    """Keeps a byte stream under `rate` bytes/second (None = unlimited)."""

    def __init__(self, rate: int | None) -> None:
        self.rate = rate
        self.start = time.monotonic()
        self.sent = 0

    @property
    def chunk(self) -> int:
        return min(IO_CHUNK, max(1024, self.rate // 20)) if self.rate else IO_CHUNK

    def pace(self, n: int) -> None:
        """Call before sending n bytes: waits until sending them keeps under the rate."""
        if not self.rate:
            return
        self.sent += n
        ahead = self.sent / self.rate - (time.monotonic() - self.start)
        if ahead > 0:
            time.sleep(ahead)


class ProxyService(ThreadedService):
    """Forwards requests to `upstream`; subclasses decide when (handle) and how (forward)."""

    def __init__(self, upstream: Any, bandwidth: int | None = None) -> None:
        self.upstream = upstream_host(upstream)
        self.bandwidth = bandwidth
        self.upstream_auth: tuple[str, str] | None = None
        self.requests: list[tuple[str, str]] = []
        super().__init__()

    def _pieces(self, h: Handler, throttle: _Throttle) -> Iterator[bytes]:
        for data in h.iter_body(throttle.chunk):
            throttle.pace(len(data))
            yield data

    def forward(
        self,
        h: Handler,
        *,
        strip_auth: bool = False,
        add_headers: Iterable[tuple[str, str]] = (),
        corrupt_at: int | None = None,
        truncate_after: int | None = None,
    ) -> int:
        """Send the request upstream and stream the answer back; returns the status.

        corrupt_at=-1 flips the middle byte; truncate_after=-1 stops at half the body."""
        host, _, port = self.upstream.partition(":")
        conn = http.client.HTTPConnection(host, int(port or 80), timeout=300)
        try:
            conn.putrequest(h.method, h.path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", self.upstream)
            for name, value in h.headers.items():
                if name.lower() in HOP_BY_HOP or name.lower() == "content-length":
                    continue
                if strip_auth and name.lower() == "authorization":
                    continue
                conn.putheader(name, value)
            if strip_auth and self.upstream_auth:
                basic = base64.b64encode(":".join(self.upstream_auth).encode()).decode()
                conn.putheader("Authorization", f"Basic {basic}")
            throttle = _Throttle(self.bandwidth)
            if h.is_chunked:
                conn.putheader("Transfer-Encoding", "chunked")
                conn.endheaders()
                for data in self._pieces(h, throttle):
                    conn.send(b"%x\r\n%s\r\n" % (len(data), data))
                conn.send(b"0\r\n\r\n")
            else:
                if "Content-Length" in h.headers:
                    conn.putheader("Content-Length", h.headers["Content-Length"])
                conn.endheaders()
                for data in self._pieces(h, throttle):
                    conn.send(data)
            resp = conn.getresponse()
            self._relay(h, resp, list(add_headers), corrupt_at, truncate_after)
            return resp.status
        finally:
            conn.close()

    def _relay(self, h: Handler, resp: http.client.HTTPResponse,
               add_headers: list[tuple[str, str]], corrupt_at: int | None,
               truncate_after: int | None) -> None:
        front = f"http://{self.host}"
        upstream_url = f"http://{self.upstream}"
        headers: list[tuple[str, str]] = []
        length: int | None = None
        for name, value in resp.getheaders():
            low = name.lower()
            if low in HOP_BY_HOP:
                continue
            if low == "content-length":
                length = int(value)
            if low == "location" and value.startswith(upstream_url):
                value = front + value[len(upstream_url):]
            headers.append((name, value))
        headers.extend(add_headers)
        no_body = h.method == "HEAD" or resp.status in (204, 304) or resp.status < 200
        if length is None and not no_body:
            h.start_chunked(resp.status, headers, relay=True)
            for data in iter(lambda: resp.read(IO_CHUNK), b""):
                h.write_chunk(data)
            h.end_chunked()
            return
        h.send_response_only(resp.status)  # upstream's Date/Server are relayed as they are
        for name, value in headers:
            h.send_header(name, value)
        h.end_headers()
        if no_body:
            return
        total = length or 0
        if corrupt_at is not None and corrupt_at < 0:
            corrupt_at = total // 2
        if truncate_after is not None and truncate_after < 0:
            truncate_after = total // 2
        throttle = _Throttle(self.bandwidth)
        sent = 0
        for data in iter(lambda: resp.read(throttle.chunk), b""):
            throttle.pace(len(data))
            if corrupt_at is not None and sent <= corrupt_at < sent + len(data):
                i = corrupt_at - sent
                data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
            if truncate_after is not None and sent + len(data) >= truncate_after:
                h.wfile.write(data[: truncate_after - sent])
                h.abort()
                return
            h.wfile.write(data)
            sent += len(data)
        if truncate_after is not None:
            h.abort()  # asked to truncate at or past the end: still close early

    def _log(self, h: Handler) -> None:
        with self._lock:
            self.requests.append((h.method, h.path))


# ---------------------------------------------------------------- token auth


@dataclass
class _Token:
    user: str
    grants: dict[str, set[str]]  # "repository:<name>" / "registry:catalog" -> actions
    expires: float


class TokenAuthFront(ProxyService):
    def __init__(self, upstream: Any, user: str = "alice", password: str = "s3cret-Pa55",
                 rate_limit: int | None = None, window: int = 21600,
                 service: str = "registry.test", token_ttl: int = 300,
                 upstream_auth: tuple[str, str] | None = None) -> None:
        self.user = user
        self._password = password
        self.rate_limit = rate_limit
        self.window = window
        self.service = service
        self.token_ttl = token_ttl
        self.remaining = rate_limit or 0
        self.token_requests: list[tuple[str, str]] = []
        self.challenges: list[tuple[str, str]] = []  # (method, path) answered 401 + Bearer
        self.manifest_gets = 0
        self._tokens: dict[str, _Token] = {}
        self._rl_lock = threading.Lock()
        super().__init__(upstream)
        self.upstream_auth = upstream_auth

    def __repr__(self) -> str:
        return f"TokenAuthFront(host={self.host!r}, upstream={self.upstream!r}, user={self.user!r})"

    def set_remaining(self, n: int) -> None:
        with self._rl_lock:
            self.remaining = n

    def issued_tokens(self) -> list[str]:
        with self._lock:
            return list(self._tokens)

    # --- token endpoint ---

    def _check_basic(self, h: Handler) -> tuple[bool, str]:
        """(ok, user); ok is False for wrong credentials, user is "" for anonymous."""
        auth = h.headers.get("Authorization", "")
        if not auth.lower().startswith("basic "):
            return True, ""
        try:
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        except ValueError:
            return False, ""
        ok = secrets.compare_digest(user, self.user) and secrets.compare_digest(
            password, self._password)
        return ok, user

    def _token_endpoint(self, h: Handler) -> None:
        if h.method == "POST":
            from urllib.parse import parse_qs

            form = {k: v for k, v in parse_qs(h.read_body().decode()).items()}
            scopes = [s for v in form.get("scope", []) for s in v.split(" ") if s]
            user = form.get("username", [""])[0]
            password = form.get("password", [""])[0]
            ok = (not user) or (user == self.user and password == self._password)
        else:
            scopes = [s for v in h.query_all.get("scope", []) for s in v.split(" ") if s]
            ok, user = self._check_basic(h)
        with self._lock:
            self.token_requests.append((" ".join(scopes), user))
        if not ok:
            h.send_json(401, {"details": "incorrect username or password"},
                        {"WWW-Authenticate": 'Basic realm="token"'})
            return
        grants: dict[str, set[str]] = {}
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) < 3:
                continue
            resource = f"{parts[0]}:{':'.join(parts[1:-1])}"
            actions = {a for a in parts[-1].split(",") if a}
            if not user:
                actions &= {"pull"}
            grants.setdefault(resource, set()).update(actions)
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = _Token(user, grants, time.time() + self.token_ttl)
        issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        h.send_json(200, {"token": token, "access_token": token,
                          "expires_in": self.token_ttl, "issued_at": issued})

    # --- registry requests ---

    def _needed(self, h: Handler) -> list[tuple[str, set[str]]]:
        """(resource, acceptable actions) pairs the request needs; [] = any valid token."""
        route = h.route
        if route.rstrip("/") == "/v2":
            return []
        if route == "/v2/_catalog":
            return [("registry:catalog", {"*"})]
        m = _REPO_PATH.match(route)
        if not m:
            return []
        write = h.method not in ("GET", "HEAD")
        if not write:
            need = [(f"repository:{m['repo']}", {"pull"})]
        elif h.method == "DELETE":
            need = [(f"repository:{m['repo']}", {"push", "delete"})]
        else:
            need = [(f"repository:{m['repo']}", {"push"})]
        source = h.query.get("from")
        if write and h.query.get("mount") and source:
            need.append((f"repository:{source}", {"pull"}))
        return need

    def _challenge_scope(self, h: Handler) -> str:
        out = []
        for resource, actions in self._needed(h):
            if resource == "registry:catalog":
                out.append("registry:catalog:*")
            elif actions == {"pull"}:
                out.append(f"{resource}:pull")
            else:
                out.append(f"{resource}:pull,push")
        return " ".join(out)

    def _authorized(self, h: Handler) -> bool:
        auth = h.headers.get("Authorization", "")
        if not auth.lower().startswith("bearer "):
            return False
        with self._lock:
            tok = self._tokens.get(auth[7:].strip())
        if tok is None or tok.expires < time.time():
            return False
        for resource, actions in self._needed(h):
            granted = tok.grants.get(resource, set())
            if "*" not in granted and not (granted & actions):
                return False
        return True

    def handle(self, h: Handler) -> None:
        self._log(h)
        if h.route == "/token":
            self._token_endpoint(h)
            return
        if not self._authorized(h):
            with self._lock:
                self.challenges.append((h.method, h.path))
            challenge = f'Bearer realm="http://{self.host}/token",service="{self.service}"'
            scope = self._challenge_scope(h)
            if scope:
                challenge += f',scope="{scope}"'
            h.send_error_oci(401, "UNAUTHORIZED", "authentication required", None,
                             {"WWW-Authenticate": challenge})
            return
        extra: list[tuple[str, str]] = []
        m = _REPO_PATH.match(h.route)
        if m and m["kind"] == "manifests" and h.method in ("GET", "HEAD"):
            with self._rl_lock:
                if h.method == "GET":
                    self.manifest_gets += 1
                exhausted = False
                if self.rate_limit is not None and h.method == "GET":
                    if self.remaining <= 0:
                        exhausted = True
                    else:
                        self.remaining -= 1
                left = self.remaining
            if self.rate_limit is not None:
                extra = [("RateLimit-Limit", f"{self.rate_limit};w={self.window}"),
                         ("RateLimit-Remaining", f"{left};w={self.window}"),
                         ("Docker-RateLimit-Source", "127.0.0.1")]
            if exhausted:
                h.send_error_oci(
                    429, "TOOMANYREQUESTS",
                    "You have reached your pull rate limit. You may increase the limit by "
                    "authenticating and upgrading: https://www.docker.com/increase-rate-limit",
                    None, dict(extra))
                return
        self.forward(h, strip_auth=True, add_headers=extra)


# ---------------------------------------------------------------- faults

FAULT_KINDS = ("status", "retry_after", "truncate", "corrupt", "delay", "drop")


@dataclass
class Fault:
    method: str
    path_regex: str
    kind: str
    times: int = 1
    options: dict[str, Any] = field(default_factory=dict)
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times == 0:
            return False
        if self.method not in ("*", method.upper()):
            return False
        return re.search(self.path_regex, path) is not None


class FaultFront(ProxyService):
    def __init__(self, upstream: Any, bandwidth: int | None = None) -> None:
        self.faults: list[Fault] = []
        super().__init__(upstream, bandwidth)

    def __repr__(self) -> str:
        return f"FaultFront(host={self.host!r}, upstream={self.upstream!r})"

    def add(self, method: str, path_regex: str, kind: str, times: int = 1, **kw: Any) -> Fault:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {FAULT_KINDS}")
        fault = Fault(method.upper(), path_regex, kind, times, kw)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()

    def hits(self, kind: str | None = None) -> int:
        with self._lock:
            return sum(f.hits for f in self.faults if kind is None or f.kind == kind)

    def _take(self, h: Handler) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(h.method, h.path):
                    fault.hits += 1
                    if fault.times > 0:
                        fault.times -= 1
                    return fault
        return None

    def handle(self, h: Handler) -> None:
        self._log(h)
        fault = self._take(h)
        if fault is None:
            self.forward(h)
            return
        opts = fault.options
        if fault.kind == "status":
            status = int(opts.get("status", 503))
            body = opts.get("body")
            if body is None:
                h.send_error_oci(status, "UNAVAILABLE" if status == 503 else "UNKNOWN",
                                 f"injected fault: HTTP {status}",
                                 headers=opts.get("headers"))
            else:
                h.send(status, opts.get("headers"), body)
        elif fault.kind == "retry_after":
            h.send_error_oci(429, "TOOMANYREQUESTS", "injected fault: too many requests",
                             headers={"Retry-After": str(opts.get("seconds", 1))})
        elif fault.kind == "delay":
            time.sleep(float(opts.get("seconds", 1)))
            self.forward(h)
        elif fault.kind == "drop":
            h.abort()
        elif fault.kind == "truncate":
            self.forward(h, truncate_after=int(opts.get("bytes", -1)))
        elif fault.kind == "corrupt":
            self.forward(h, corrupt_at=int(opts.get("offset", -1)))
