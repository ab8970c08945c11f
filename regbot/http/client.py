"""HTTP transport for registries: per-host sessions, TLS, auth, redirects, retries, mirrors.

Schemes describe a call with `Request` (registry name, repository, path, body); this
module turns it into URLs on the right host (mirrors first for reads), applies the
host's `pathPrefix`, drives the auth flow, follows redirects itself (so Authorization
never reaches another host, e.g. blob storage), retries connection failures, 5xx and 429
with exponential backoff and jitter (honouring `Retry-After`), and wraps every request in
`limits.request_slot(...)` so `reqConcurrent`/`reqPerSec` hold across the cluster.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import os
import random
import shutil
import ssl
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

from regbot.errors import RegistryError, TooLarge, TransportError
from regbot.hosts import TLS_DISABLED, TLS_ENABLED, TLS_INSECURE, Host, HostTable
from regbot.http.auth import Authenticator, Reply, TokenCall, is_local, repository_scope

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10
READ_CHUNK = 64 * 1024
MAX_TOKEN_BODY = 1024 * 1024

Body = bytes | Callable[[], Iterable[bytes]] | Iterable[bytes] | None


@dataclass
class Request:
    """One registry call, independent of which host ends up answering it.

    `path` is below `/v2/<repository>/` (or below `/v2/` without a repository);
    `url` replaces the built URL (an upload `Location`, a `Link` next page) and then
    `host` names the registry entry whose host it points at (a mirror's, for pages).
    `mount_from` is a repository on the same registry to mount from (adds `from=` and
    its pull scope, both with the host's pathPrefix applied).
    """

    method: str
    registry: str
    repository: str = ""
    path: str = ""
    query: list[tuple[str, str]] = field(default_factory=list)
    url: str = ""
    host: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: Body = None
    length: int | None = None
    mirrors: bool = False
    catalog: bool = False
    mount_from: str = ""
    ref: object = ""


class Response:
    """A response with its body not read yet; `host` is the Host that answered."""

    def __init__(self, raw: requests.Response, host: Host, request_url: str, ref: object) -> None:
        self.raw = raw
        self.host = host
        self.request_url = request_url  # before redirects, for a resumed (Range) request
        self.ref = ref

    @property
    def status(self) -> int:
        return self.raw.status_code

    @property
    def headers(self) -> Any:
        return self.raw.headers

    @property
    def url(self) -> str:
        return self.raw.url

    def header_values(self, name: str) -> list[str]:
        return _header_values(self.raw, name)

    def header_map(self) -> dict[str, list[str]]:
        """Every header as Go's http.Header holds it: canonical names (`Etag`,
        `Docker-Content-Digest`), each with its values in the order received."""
        out: dict[str, list[str]] = {}
        for name in self.raw.headers:
            out.setdefault(canonical_header(name), []).extend(self.header_values(name))
        return out

    def iter_bytes(self, chunk_size: int = READ_CHUNK) -> Iterator[bytes]:
        """The body in chunks; a broken connection raises TransportError."""
        try:
            yield from self.raw.iter_content(chunk_size)
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise TransportError(self.ref, f"reading the response failed: {describe(exc)}") from None

    def read(self, limit: int | None = None) -> bytes:
        """The whole body; more than `limit` bytes raises TooLarge without reading on."""
        length = self.raw.headers.get("Content-Length", "")
        if limit is not None and length.isdigit() and int(length) > limit:
            self.close()
            raise TooLarge(self.ref, f"response of {length} bytes exceeds the {limit} byte limit")
        parts, total = [], 0
        for chunk in self.iter_bytes():
            total += len(chunk)
            if limit is not None and total > limit:
                self.close()
                raise TooLarge(self.ref, f"response exceeds the {limit} byte limit")
            parts.append(chunk)
        return b"".join(parts)

    def read_prefix(self, limit: int) -> bytes:
        """At most `limit` bytes of the body (an error body), never raising; closes."""
        data = b""
        try:
            for chunk in self.raw.iter_content(READ_CHUNK):
                data += chunk
                if len(data) >= limit:
                    break
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError):
            pass
        self.close()
        return data[:limit]

    def close(self) -> None:
        if _bodiless(self.raw):
            # requests closes the connection of a response whose body was not read, so
            # every HEAD, upload POST and blob PUT cost a new connection (a TLS handshake
            # on real registries). With nothing to read, marking it read lets the
            # connection go back to the pool instead.
            with contextlib.suppress(Exception):  # a broken connection is just closed
                _ = self.raw.content
        self.raw.close()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _bodiless(raw: Any) -> bool:
    """True for an unread response that has no body to read: HEAD, 204/304, or
    `Content-Length: 0` (reading it never waits on the server)."""
    if getattr(raw, "_content_consumed", True):
        return False
    request = getattr(raw, "request", None)
    if request is not None and request.method == "HEAD":
        return True
    status = getattr(raw, "status_code", 0)
    headers = getattr(raw, "headers", None) or {}
    return status in (204, 304) or headers.get("Content-Length", "").strip() == "0"


def canonical_header(name: str) -> str:
    """textproto.CanonicalMIMEHeaderKey: each dash-separated word capitalised."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def _header_values(raw: requests.Response, name: str) -> list[str]:
    getlist = getattr(getattr(raw.raw, "headers", None), "getlist", None)
    if getlist is not None:
        return list(getlist(name))
    value = raw.headers.get(name)
    return [value] if value else []


# --- bodies --------------------------------------------------------------------------


class _SizedIter:
    """An iterator with a length, so requests sends Content-Length, not chunked."""

    def __init__(self, it: Iterator[bytes], length: int) -> None:
        self._it = it
        self._length = length

    def __iter__(self) -> Iterator[bytes]:
        return self._it

    def __len__(self) -> int:
        return self._length


class _Body:
    """A request body and whether it can be sent again after a failed attempt:
    bytes and callables (which re-open the source) can; a plain iterator only until
    its first chunk was taken."""

    def __init__(self, body: Body, length: int | None) -> None:
        self.body = body
        self.length = length
        self._iter: Iterator[bytes] | None = None
        self._consumed = False

    @property
    def resendable(self) -> bool:
        if self.body is None or isinstance(self.body, bytes | bytearray) or callable(self.body):
            return True
        return not self._consumed

    def open(self) -> Any:
        body = self.body
        if body is None or isinstance(body, bytes | bytearray):
            return body
        if callable(body):
            it = self._track(iter(body()))
        else:
            if self._consumed:
                raise RuntimeError("a one-shot request body cannot be sent twice")
            if self._iter is None:
                self._iter = self._track(iter(body))
            it = self._iter
        if self.length == 0:
            for _ in it:
                pass
            return b""
        return _SizedIter(it, self.length) if self.length is not None else it

    def _track(self, it: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in it:
            self._consumed = True
            if chunk:
                yield bytes(chunk)


@dataclass
class _Call:
    """What the auth flow sees of a registry call: it may set headers on it."""

    method: str
    url: str
    headers: dict[str, str]
    body: _Body


# --- per-host state ------------------------------------------------------------------


@dataclass
class _Backoff:
    failures: int = 0
    until: float = 0.0


class _TLSAdapter(HTTPAdapter):
    """An adapter whose connections use one prepared SSL context."""

    def __init__(self, context: ssl.SSLContext | None, **kwargs: Any) -> None:
        self._context = context
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        if self._context is not None:
            kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        if self._context is not None:
            kwargs["ssl_context"] = self._context
        return super().proxy_manager_for(proxy, **kwargs)


def _no_auth(request: Any) -> Any:
    """A session-wide no-op auth: keeps requests from adding ~/.netrc credentials."""
    return request


class HTTPClient:
    """Thread safe. One pooled `requests.Session` per host (pool sized to its
    concurrency), backoff state per host, auth state per host (and repository when
    `repoAuth`)."""

    def __init__(
        self,
        hosts: HostTable,
        limits: Any,
        user_agent: str,
        *,
        retries: int = 5,
        backoff_base: float = 0.25,
        backoff_max: float = 30.0,
        retry_after_max: float = 60.0,
        connect_timeout: float = 15.0,
        read_timeout: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.hosts = hosts
        self.limits = limits
        self.user_agent = user_agent
        self.retries = retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.retry_after_max = retry_after_max
        self.timeout = (connect_timeout, read_timeout)
        self._sleep = sleep
        self._lock = threading.Lock()
        self._sessions: dict[str, requests.Session] = {}
        self._backoff: dict[str, _Backoff] = {}
        self._auth: dict[tuple[str, str], Authenticator] = {}

    # --- the public call ---

    def send(self, req: Request) -> Response:
        """Send to the first host that answers it: mirrors by priority for reads that
        allow them, the registry itself last. A mirror that fails (connection, 401/403/
        404, 429/5xx after retries) is skipped; the last host's answer is returned as is
        (any status) or its TransportError raised."""
        upstream = self.hosts.get(req.registry)
        if req.url:
            candidates = [self.hosts.get(req.host) if req.host else upstream]
        elif req.mirrors and upstream.mirrors:
            candidates = [*self.hosts.mirrors(upstream.name), upstream]
        else:
            candidates = [upstream]
        for index, host in enumerate(candidates):
            last = index == len(candidates) - 1
            if not last and self._backoff_of(host).until > time.monotonic():
                log.debug("mirror %s is backing off, skipped for %s", host.name, req.ref)
                continue
            if not last and req.method == "HEAD" and host.disable_head:
                # regclient drops a mirror with apiOpts disableHead for HEAD requests.
                log.debug("mirror %s has HEAD disabled, skipped for %s", host.name, req.ref)
                continue
            try:
                # A mirror gets one attempt (its failure is remembered as backoff, which
                # sorts it last next time); retries are for the last host only.
                resp = self._send_to(host, req, upstream, self.retries if last else 0)
            except RegistryError as exc:
                if last:
                    raise
                log.info("mirror %s failed for %s (%s), trying the next host", host.name, req.ref, exc)
                continue
            if not last and (resp.status in (401, 403, 404) or resp.status in RETRY_STATUS):
                log.info("mirror %s answered %s for %s, trying the next host", host.name, resp.status, req.ref)
                resp.close()
                continue
            return resp
        raise AssertionError("unreachable: the candidate list always holds the registry")

    def close(self, registry: str | None = None) -> None:
        """Close pooled connections of one registry (and its mirrors), or all."""
        with self._lock:
            if registry is None:
                names = list(self._sessions)
            else:
                host = self.hosts.get(registry)
                names = [host.name, *host.mirrors]
            sessions = [self._sessions.pop(n) for n in names if n in self._sessions]
        for session in sessions:
            session.close()

    # --- one host ---

    def repo_path(self, host: Host, repository: str) -> str:
        prefix = host.path_prefix.strip("/")
        return f"{prefix}/{repository}" if prefix and repository else repository

    def _send_to(self, host: Host, req: Request, upstream: Host, retries: int) -> Response:
        repo = "" if req.catalog else self.repo_path(host, req.repository)
        url = req.url or self._build_url(host, req, repo, upstream)
        scopes: list[str] = []
        if req.catalog:
            scopes.append("registry:catalog:*")
        elif repo:
            scopes.append(repository_scope(repo, push=req.method not in ("GET", "HEAD")))
        if req.mount_from:
            scopes.append(repository_scope(self.repo_path(host, req.mount_from)))
        # identity: sizes, digests and Range offsets are about the bytes as stored.
        headers = {"User-Agent": self.user_agent, "Accept-Encoding": "identity", **req.headers}
        # apiOpts disableHead: the registry's HEAD answers are not to be trusted, so a GET
        # stands in (its body is never read: the response is closed unread).
        method = "GET" if req.method == "HEAD" and host.disable_head else req.method
        call = _Call(method, url, headers, _Body(req.body, req.length))
        auth = self._authenticator(host, repo)
        flow = auth.flow(call, scopes)
        pending: requests.Response | None = None
        out = next(flow)
        try:
            while True:
                if isinstance(out, TokenCall):
                    reply = self._token_reply(host, out, req.ref, retries)
                else:
                    if pending is not None:
                        pending.close()  # the 401 being answered by a retry
                        if not call.body.resendable:
                            raise TransportError(req.ref, f"{req.method} needs authentication but its body cannot be sent again")
                    pending = self._transport(host, call, req.ref, auth.host_netloc, retries)
                    reply = Reply(
                        pending.status_code, pending.headers, raw=pending,
                        header_values=lambda name, raw=pending: _header_values(raw, name),
                    )
                out = flow.send(reply)
        except StopIteration as stop:
            final: Reply = stop.value
        except BaseException:
            if pending is not None:
                pending.close()
            raise
        return Response(final.raw, host, url, req.ref)

    def _build_url(self, host: Host, req: Request, repo: str, upstream: Host) -> str:
        path = "/v2/"
        if repo:
            path += f"{repo}/{req.path}"
        elif req.path:
            path += req.path
        query = list(req.query)
        if req.mount_from:
            query.append(("from", self.repo_path(host, req.mount_from)))
        if host is not upstream and host.hostname != upstream.hostname:
            query.append(("ns", upstream.hostname))  # as regclient/containerd tell mirrors
        return host.base_url + path + ("?" + urlencode(query) if query else "")

    def _authenticator(self, host: Host, repo: str) -> Authenticator:
        key = (host.name, repo if host.repo_auth else "")
        with self._lock:
            auth = self._auth.get(key)
            if auth is None:
                auth = Authenticator(
                    host.name,
                    urlsplit(host.base_url).netloc,
                    lambda name=host.name: self.hosts.credentials(name),
                    client_id=self.user_agent,
                )
                self._auth[key] = auth
            return auth

    def _token_reply(self, host: Host, token_call: TokenCall, ref: object, retries: int) -> Reply:
        url = token_call.url
        if token_call.params:
            url += ("&" if urlsplit(url).query else "?") + urlencode(token_call.params)
        body = urlencode(token_call.form).encode() if token_call.form is not None else None
        headers = {"User-Agent": self.user_agent, "Accept": "application/json", **token_call.headers}
        call = _Call(token_call.method, url, headers, _Body(body, len(body) if body else None))
        raw = self._transport(host, call, ref, urlsplit(url).netloc, retries)
        with raw:
            data = b""
            try:
                for chunk in raw.iter_content(READ_CHUNK):
                    data += chunk
                    if len(data) > MAX_TOKEN_BODY:
                        break
            except (requests.RequestException, OSError) as exc:
                raise TransportError(host.name, f"reading the token answer failed: {describe(exc)}") from None
            return Reply(raw.status_code, raw.headers, body=data)

    # --- transport: slots, retries, redirects ---

    def _transport(
        self, host: Host, call: _Call, ref: object, auth_netloc: str, retries: int
    ) -> requests.Response:
        attempt = 0
        while True:
            self._wait_backoff(host)
            data = call.body.open()
            try:
                with self.limits.request_slot(host.name, host.concurrency, host.req_per_sec):
                    resp = self._follow(host, call, data, ref, auth_netloc)
            except requests.exceptions.SSLError as exc:
                raise TransportError(ref, f"{call.method} {_safe_url(call.url)}: TLS failed: {describe(exc)}") from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                attempt += 1
                self._fail(host, None)
                if attempt > retries or not call.body.resendable:
                    raise TransportError(
                        ref, f"{call.method} {_safe_url(call.url)}: {describe(exc)}"
                        + (f" (after {attempt} attempts)" if attempt > 1 else "")
                    ) from None
                log.info("%s %s: %s, retrying (%d)", call.method, _safe_url(call.url), describe(exc), attempt)
                continue
            if resp.status_code in RETRY_STATUS:
                attempt += 1
                self._fail(host, self._retry_after(resp.headers.get("Retry-After")))
                if attempt > retries or not call.body.resendable:
                    return resp
                log.info("%s %s: HTTP %d, retrying (%d)", call.method, _safe_url(call.url), resp.status_code, attempt)
                resp.close()
                continue
            self._succeed(host)
            return resp

    def _follow(self, host: Host, call: _Call, data: Any, ref: object, auth_netloc: str) -> requests.Response:
        session = self._session(host)
        method, url = call.method, call.url
        headers = dict(call.headers)
        authorization = headers.pop("Authorization", None)
        for _ in range(MAX_REDIRECTS + 1):
            sent = dict(headers)
            if authorization and urlsplit(url).netloc == auth_netloc:
                sent["Authorization"] = authorization
            elsewhere = urlsplit(url).netloc != urlsplit(call.url).netloc
            resp = session.request(
                method, url, headers=sent, data=data, stream=True,
                allow_redirects=False, timeout=self.timeout,
                verify=session.verify if host.tls != TLS_INSECURE else False,
                # a redirect to another host (blob storage) gets that host's proxy
                proxies=requests.utils.get_environ_proxies(url) if elsewhere else None,
            )
            log.debug("%s %s -> %d", method, _safe_url(url), resp.status_code)
            location = resp.headers.get("Location")
            if resp.status_code not in REDIRECT_STATUS or not location:
                return resp
            target = urljoin(url, location)
            resp.close()
            _check_redirect(url, target, ref)
            if resp.status_code == 303 or (resp.status_code in (301, 302) and method not in ("GET", "HEAD")):
                method, data = "GET", None
                headers = {k: v for k, v in headers.items() if k.lower() not in ("content-type", "content-length")}
            elif data is not None:
                if not call.body.resendable:
                    raise TransportError(ref, f"{method} redirected but its body cannot be sent again")
                data = call.body.open()
            url = target
        raise TransportError(ref, f"{call.method} {_safe_url(call.url)}: more than {MAX_REDIRECTS} redirects")

    def _retry_after(self, value: str | None) -> float | None:
        if not value:
            return None
        value = value.strip()
        if value.isdigit():
            seconds = float(value)
        else:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                return None
            if when is None:
                return None
            seconds = when.timestamp() - time.time()
        return min(max(seconds, 0.0), self.retry_after_max)

    def _backoff_of(self, host: Host) -> _Backoff:
        with self._lock:
            return self._backoff.setdefault(host.name, _Backoff())

    def _wait_backoff(self, host: Host) -> None:
        state = self._backoff_of(host)
        delay = state.until - time.monotonic()
        if delay > 0:
            log.debug("host %s backing off for %.2fs", host.name, delay)
            self._sleep(delay)

    def _fail(self, host: Host, retry_after: float | None) -> None:
        state = self._backoff_of(host)
        with self._lock:
            state.failures += 1
            if retry_after is not None:
                delay = retry_after
            else:
                full = min(self.backoff_max, self.backoff_base * (2 ** (state.failures - 1)))
                delay = full / 2 + random.uniform(0, full / 2)  # "equal jitter"
            state.until = max(state.until, time.monotonic() + delay)

    def _succeed(self, host: Host) -> None:
        state = self._backoff_of(host)
        with self._lock:
            state.failures = 0

    # --- sessions and TLS ---

    def _session(self, host: Host) -> requests.Session:
        with self._lock:
            session = self._sessions.get(host.name)
            if session is None:
                session = self._new_session(host)
                self._sessions[host.name] = session
            return session

    def _new_session(self, host: Host) -> requests.Session:
        context = None
        if host.tls != TLS_DISABLED:
            context = self._ssl_context(host)
        session = requests.Session()
        session.auth = _no_auth
        # The environment (proxies, CA bundle) is read once per host here, not by requests
        # on every call: that lookup walked os.environ for each request.
        session.trust_env = False
        session.proxies = requests.utils.get_environ_proxies(host.base_url)
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if bundle and host.tls == TLS_ENABLED:
            session.verify = bundle
        adapter = _TLSAdapter(
            context, pool_connections=4, pool_maxsize=max(host.concurrency, 1), max_retries=0
        )
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    def _ssl_context(self, host: Host) -> ssl.SSLContext:
        material = self.hosts.tls_material(host.name)
        context = ssl.create_default_context()
        if host.tls == TLS_INSECURE:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
            log.warning("registry %s: TLS certificates are not verified (tls: insecure)", host.name)
        elif material.ca_pem:
            try:
                context.load_verify_locations(cadata=material.ca_pem)
            except (ssl.SSLError, ValueError) as exc:
                raise TransportError(host.name, f"regcert/certs.d CA is not valid PEM: {exc}") from None
        if material.client_cert and material.client_key:
            _load_client_pair(context, material.client_cert, material.client_key, host.name)
        return context


def _load_client_pair(context: ssl.SSLContext, cert: str, key: str, name: str) -> None:
    """Python's ssl reads a client pair only from files: write them to a private (0700)
    directory as 0600 files, load them, and remove them at once."""
    directory = tempfile.mkdtemp(prefix="regbot-mtls-")
    try:
        cert_path = os.path.join(directory, "client.cert")
        key_path = os.path.join(directory, "client.key")
        for path, text in ((cert_path, cert), (key_path, key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(text if text.endswith("\n") else text + "\n")
        try:
            context.load_cert_chain(cert_path, key_path)
        except (ssl.SSLError, ValueError):
            raise TransportError(name, "clientCert/clientKey could not be loaded (not a matching PEM pair)") from None
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _check_redirect(src: str, dst: str, ref: object) -> None:
    a, b = urlsplit(src), urlsplit(dst)
    if b.scheme not in ("http", "https"):
        raise TransportError(ref, f"refusing a redirect to a non-http URL {_safe_url(dst)}")
    if a.scheme == "https" and b.scheme != "https":
        raise TransportError(ref, f"refusing a redirect from https to {_safe_url(dst)}")
    if not is_local(a.hostname or "") and is_local(b.hostname or ""):
        raise TransportError(ref, f"refusing a redirect to a local address {_safe_url(dst)}")


def _safe_url(url: str) -> str:
    """The URL without its query (upload state, signed storage URLs) for messages."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def describe(exc: BaseException) -> str:
    """A short reason for a transport exception (the innermost cause), never a URL query."""
    seen = set()
    current: BaseException | None = exc
    best = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        best = current
        nested = None
        for arg in getattr(current, "args", ()):
            if isinstance(arg, BaseException):
                nested = arg
                break
            reason = getattr(arg, "reason", None)
            if isinstance(reason, BaseException):
                nested = reason
                break
        current = nested or current.__cause__ or current.__context__
    if isinstance(best, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {best.verify_message}"
    if isinstance(best, ssl.SSLError):
        reason = str(best.reason or best)
        if "ALERT" in reason:
            return f"the server refused the handshake ({reason}; does it require a client certificate?)"
        return reason
    if isinstance(best, ConnectionRefusedError):
        return "connection refused"
    if isinstance(best, TimeoutError | requests.Timeout | urllib3.exceptions.TimeoutError):
        return "timed out"
    text = str(best)
    if "?" in text:
        text = text.split("?", 1)[0]
    return f"{type(best).__name__}: {text}"[:200]
