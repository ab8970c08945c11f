"""HTTP transport for registries: per-host connection pools (urllib3), TLS, auth, redirects, retries, mirrors.

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
import functools
import logging
import os
import random
import shutil
import ssl
import tempfile
import threading
import time
import urllib.request
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import urllib3

from regbot.errors import RegistryError, TooLarge, TransportError
from regbot.hosts import TLS_DISABLED, TLS_INSECURE, Host, HostTable
from regbot.http.auth import Authenticator, Reply, TokenCall, is_local, repository_scope

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10
READ_CHUNK = 256 * 1024  # read1 hands out what has arrived: small on a slow link
MAX_TOKEN_BODY = 1024 * 1024
IDLE_CONNECTIONS = 16  # kept per host beyond reqConcurrent

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
    """A response with its body not read yet; `host` is the Host that answered, `url`
    the URL that answered (after redirects), `request_url` the one asked (before them,
    for a resumed Range request)."""

    def __init__(self, raw: urllib3.BaseHTTPResponse, host: Host, request_url: str, ref: object,
                 url: str = "", *, bodiless: bool = False) -> None:
        self.raw = raw
        self.host = host
        self.request_url = request_url
        self.url = url or request_url
        self.ref = ref
        self._bodiless = bodiless

    @property
    def status(self) -> int:
        return self.raw.status

    @property
    def headers(self) -> Any:
        return self.raw.headers

    def header_values(self, name: str) -> list[str]:
        return list(self.raw.headers.getlist(name))

    def header_map(self) -> dict[str, list[str]]:
        """Every header as Go's http.Header holds it: canonical names (`Etag`,
        `Docker-Content-Digest`), each with its values in the order received."""
        out: dict[str, list[str]] = {}
        for name in self.raw.headers:
            out.setdefault(canonical_header(name), []).extend(self.header_values(name))
        return out

    def iter_available(self) -> Iterator[bytes]:
        """Chunks of up to READ_CHUNK bytes as they arrive: large on a fast network (few
        Python calls per GiB), small on a slow one (progress and cancellation stay
        prompt). Transport errors are raised as they are (a blob read resumes on them)."""
        read1 = self.raw.read1
        while chunk := read1(READ_CHUNK):
            yield chunk

    def iter_bytes(self) -> Iterator[bytes]:
        """The body in chunks; a broken connection raises TransportError."""
        try:
            yield from self.iter_available()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
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
            for chunk in self.iter_available():
                data += chunk
                if len(data) >= limit:
                    break
        except (urllib3.exceptions.HTTPError, OSError):
            pass
        self.close()
        return data[:limit]

    def close(self) -> None:
        """Give the connection back to its pool: as it is when the body was read to its
        end or there is none (HEAD, 204/304, `Content-Length: 0`), closed otherwise
        (reading on could mean a whole blob)."""
        raw = self.raw
        if self._bodiless or raw.status in (204, 304) or _ended(raw):
            raw.drain_conn()  # nothing left to wait for: the connection is reusable
        else:
            raw.close()
        raw.release_conn()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ended(raw: urllib3.BaseHTTPResponse) -> bool:
    """True once nothing is left to read of the body (or it is empty)."""
    if raw.headers.get("Content-Length", "").strip() == "0":
        return True
    return bool(raw.closed) or raw.length_remaining == 0


def canonical_header(name: str) -> str:
    """textproto.CanonicalMIMEHeaderKey: each dash-separated word capitalised."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


# --- bodies --------------------------------------------------------------------------


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
        if body is None or isinstance(body, bytes):
            return body
        if isinstance(body, bytearray):
            return bytes(body)
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
        return it

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


@functools.lru_cache(maxsize=256)
def _proxy_for(scheme: str, netloc: str) -> str | None:
    """The proxy the environment (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`)
    gives for a URL of `scheme` and `netloc`, or None; read once per host (walking
    os.environ cost more than the request itself)."""
    proxies = urllib.request.getproxies_environment()
    if not proxies or urllib.request.proxy_bypass_environment(netloc, proxies):
        return None
    return proxies.get(scheme) or proxies.get("all")


class HTTPClient:
    """Thread safe. One urllib3 connection pool manager per host (pools sized to its
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
        self.timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self._sleep = sleep
        self._lock = threading.Lock()
        self._pools: dict[str, urllib3.PoolManager] = {}
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
                names = list(self._pools)
            else:
                host = self.hosts.get(registry)
                names = [host.name, *host.mirrors]
            pools = [self._pools.pop(n) for n in names if n in self._pools]
        for pool in pools:
            pool.clear()

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
        pending: Response | None = None
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
                    reply = Reply(pending.status, pending.headers, raw=pending,
                                  header_values=pending.header_values)
                out = flow.send(reply)
        except StopIteration as stop:
            final: Reply = stop.value
        except BaseException:
            if pending is not None:
                pending.close()
            raise
        return final.raw

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
        resp = self._transport(host, call, ref, urlsplit(url).netloc, retries)
        with resp:
            data = b""
            try:
                for chunk in resp.iter_available():
                    data += chunk
                    if len(data) > MAX_TOKEN_BODY:
                        break
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise TransportError(host.name, f"reading the token answer failed: {describe(exc)}") from None
            return Reply(resp.status, resp.headers, body=data)

    # --- transport: slots, retries, redirects ---

    def _transport(
        self, host: Host, call: _Call, ref: object, auth_netloc: str, retries: int
    ) -> Response:
        attempt = 0
        while True:
            self._wait_backoff(host)
            data = call.body.open()
            try:
                with self.limits.request_slot(host.name, host.concurrency, host.req_per_sec):
                    resp = self._follow(host, call, data, ref, auth_netloc)
            except urllib3.exceptions.SSLError as exc:
                raise TransportError(ref, f"{call.method} {_safe_url(call.url)}: TLS failed: {describe(exc)}") from None
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                attempt += 1
                self._fail(host, None)
                if attempt > retries or not call.body.resendable:
                    raise TransportError(
                        ref, f"{call.method} {_safe_url(call.url)}: {describe(exc)}"
                        + (f" (after {attempt} attempts)" if attempt > 1 else "")
                    ) from None
                log.info("%s %s: %s, retrying (%d)", call.method, _safe_url(call.url), describe(exc), attempt)
                continue
            if resp.status in RETRY_STATUS:
                attempt += 1
                self._fail(host, self._retry_after(resp.headers.get("Retry-After")))
                if attempt > retries or not call.body.resendable:
                    return resp
                log.info("%s %s: HTTP %d, retrying (%d)", call.method, _safe_url(call.url), resp.status, attempt)
                resp.close()
                continue
            self._succeed(host)
            return resp

    def _follow(self, host: Host, call: _Call, data: Any, ref: object, auth_netloc: str) -> Response:
        pools = self._pools_of(host)
        method, url = call.method, call.url
        headers = dict(call.headers)
        authorization = headers.pop("Authorization", None)
        for _ in range(MAX_REDIRECTS + 1):
            sent = dict(headers)
            if authorization and urlsplit(url).netloc == auth_netloc:
                sent["Authorization"] = authorization
            if data is not None and call.body.length is not None:
                sent["Content-Length"] = str(call.body.length if data else 0)
            elif data is None and method in ("POST", "PUT", "PATCH"):
                sent["Content-Length"] = "0"
            raw = pools.request(
                method, url, headers=sent, body=data, preload_content=False,
                redirect=False, retries=False, timeout=self.timeout,
            )
            resp = Response(raw, host, call.url, ref, url, bodiless=method == "HEAD")
            log.debug("%s %s -> %d", method, _safe_url(url), resp.status)
            location = resp.headers.get("Location")
            if resp.status not in REDIRECT_STATUS or not location:
                return resp
            target = urljoin(url, location)
            resp.close()
            _check_redirect(url, target, ref)
            if resp.status == 303 or (resp.status in (301, 302) and method not in ("GET", "HEAD")):
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

    # --- connection pools and TLS ---

    def _pools_of(self, host: Host) -> _HostPools:
        with self._lock:
            pools = self._pools.get(host.name)
            if pools is None:
                context = self._ssl_context(host) if host.tls != TLS_DISABLED else None
                # A request slot is held until the answer's headers: bodies stream after
                # it, so more connections than reqConcurrent are in use at times; keep
                # them for reuse instead of discarding them.
                pools = _HostPools(context, max(host.concurrency, 1) + IDLE_CONNECTIONS)
                self._pools[host.name] = pools
            return pools

    def _ssl_context(self, host: Host) -> ssl.SSLContext:
        material = self.hosts.tls_material(host.name)
        context = ssl.create_default_context()
        _trust_bundles(context)
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


class _HostPools:
    """The connection pools of one registry host: direct, or through the proxy the
    environment names for a URL (read once per proxy, not on every request). A redirect
    to another host (blob storage) goes through that host's own proxy."""

    def __init__(self, context: ssl.SSLContext | None, maxsize: int) -> None:
        self._options: dict[str, Any] = {"maxsize": maxsize, "block": False, "retries": False}
        if context is not None:
            self._options["ssl_context"] = context
        self._direct = urllib3.PoolManager(num_pools=4, **self._options)
        self._proxied: dict[str, urllib3.ProxyManager] = {}
        self._lock = threading.Lock()

    def request(self, method: str, url: str, **kwargs: Any) -> urllib3.BaseHTTPResponse:
        parts = urlsplit(url)
        proxy = _proxy_for(parts.scheme, parts.netloc)
        if proxy is not None:
            return self._manager(proxy).urlopen(method, url, **kwargs)
        # Straight to the host's pool with the request target: the manager would parse
        # and re-encode the whole URL once more on every request.
        pool = self._direct.connection_from_host(parts.hostname, parts.port, parts.scheme)
        target = parts.path + ("?" + parts.query if parts.query else "")
        return pool.urlopen(method, target or "/", assert_same_host=False, **kwargs)

    def _manager(self, proxy: str | None) -> urllib3.PoolManager:
        if proxy is None:
            return self._direct
        with self._lock:
            manager = self._proxied.get(proxy)
            if manager is None:
                manager = urllib3.ProxyManager(proxy, num_pools=4, **self._options)
                self._proxied[proxy] = manager
            return manager

    def clear(self) -> None:
        self._direct.clear()
        for manager in self._proxied.values():
            manager.clear()


def _trust_bundles(context: ssl.SSLContext) -> None:
    """The CA bundle a Python HTTP user expects besides the system's: `REQUESTS_CA_BUNDLE`
    or `CURL_CA_BUNDLE` when set, certifi's when the system has no CA store at all."""
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        context.load_verify_locations(cafile=bundle)
        return
    paths = ssl.get_default_verify_paths()
    if not (paths.cafile and os.path.exists(paths.cafile)) and not (paths.capath and os.path.isdir(paths.capath)):
        with contextlib.suppress(ImportError):
            import certifi  # only where the system trusts nothing

            context.load_verify_locations(cafile=certifi.where())


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
    if isinstance(best, TimeoutError | urllib3.exceptions.TimeoutError):
        return "timed out"
    text = str(best)
    if "?" in text:
        text = text.split("?", 1)[0]
    return f"{type(best).__name__}: {text}"[:200]
