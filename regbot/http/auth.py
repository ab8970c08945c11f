"""Registry authentication: `WWW-Authenticate` parsing, Basic, and the Bearer token exchange.

The exchange is written as a generator (httpx's `auth_flow` idea): `Authenticator.flow`
yields the HTTP calls it needs sent (the registry request itself, token requests) and
receives each reply, so the same code runs against a live registry or canned replies in
a unit test. The transport (regbot/http/client.py) drives it.

Tokens are cached in process memory only, per host (and repository with `repoAuth`) and
scope set, until shortly before they expire. No secret is ever logged or put in an error.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import threading
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

from regbot.credhelper import Credential
from regbot.errors import Unauthorized

log = logging.getLogger(__name__)

DEFAULT_TOKEN_LIFE = 60  # seconds, when the token server does not say (and the minimum)
TOKEN_EXPIRY_MARGIN = 5.0  # renew this long before the token server's expiry
MAX_TOKEN_BODY = 1024 * 1024
_ACTION_ORDER = {"pull": 0, "push": 1, "delete": 2}

# --- WWW-Authenticate ------------------------------------------------------------------

_TOKEN_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~/:"
)


@dataclass
class Challenge:
    """One challenge: `scheme` lower-cased (`bearer`, `basic`), parameter names too."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t\r\n":
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def token(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _TOKEN_CHARS:
            self.pos += 1
        return self.text[start : self.pos]

    def quoted(self) -> str:
        """A quoted-string, the opening quote at pos; backslash escapes the next char."""
        self.pos += 1
        out = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            self.pos += 1
            if char == "\\" and self.pos < len(self.text):
                out.append(self.text[self.pos])
                self.pos += 1
            elif char == '"':
                return "".join(out)
            else:
                out.append(char)
        raise ValueError("unterminated quoted string")


def parse_www_authenticate(values: str | Iterable[str]) -> list[Challenge]:
    """Parse one or more `WWW-Authenticate` header values into challenges.

    Handles several challenges in one value (`Basic realm="a", Bearer realm="b"`),
    quoted values holding commas and escapes, unquoted values, and a bare token68.
    Malformed input yields the challenges read before the fault.
    """
    if isinstance(values, str):
        values = [values]
    found: list[Challenge] = []
    for value in values:
        try:
            _parse_value(value, found)
        except ValueError as exc:
            log.debug("malformed WWW-Authenticate header: %s", exc)
    return found


def _parse_value(value: str, found: list[Challenge]) -> None:
    sc = _Scanner(value)
    current: Challenge | None = None
    while True:
        sc.skip_space()
        while sc.peek() == ",":
            sc.pos += 1
            sc.skip_space()
        if not sc.peek():
            return
        word = sc.token()
        if not word:
            raise ValueError(f"unexpected character {sc.peek()!r} at {sc.pos}")
        sc.skip_space()
        if sc.peek() == "=" and current is not None:
            sc.pos += 1
            sc.skip_space()
            current.params[word.lower()] = sc.quoted() if sc.peek() == '"' else sc.token()
            continue
        # Not `key=value`: the scheme of a new challenge, maybe followed by a token68.
        current = Challenge(word.lower())
        found.append(current)
        save = sc.pos
        t68 = sc.token()
        while t68 and sc.peek() == "=":
            sc.pos += 1
            t68 += "="
        sc.skip_space()
        if t68 and sc.peek() in ("", ","):
            current.params[""] = t68
        else:
            sc.pos = save


# --- scopes ----------------------------------------------------------------------------


def repository_scope(repository: str, push: bool = False) -> str:
    return f"repository:{repository}:{'pull,push' if push else 'pull'}"


def merge_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """The union of scopes, one entry per resource with its actions merged
    (`repository:a:pull` + `repository:a:push` -> `repository:a:pull,push`)."""
    merged: dict[str, set[str]] = {}
    plain: list[str] = []
    for scope in scopes:
        for part in scope.split(" "):
            if not part:
                continue
            kind, sep, rest = part.partition(":")
            name, sep2, actions = rest.rpartition(":")
            if not (sep and sep2 and name):
                if part not in plain:
                    plain.append(part)
                continue
            merged.setdefault(f"{kind}:{name}", set()).update(a for a in actions.split(",") if a)
    out = [
        f"{resource}:{','.join(sorted(actions, key=lambda a: (_ACTION_ORDER.get(a, 9), a)))}"
        for resource, actions in sorted(merged.items())
    ]
    return tuple(out + sorted(plain))


def _scope_map(scopes: Iterable[str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for scope in scopes:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        out.setdefault(f"{kind}:{name}", set()).update(actions.split(","))
    return out


def scopes_cover(have: Iterable[str], want: Iterable[str]) -> bool:
    """True when a token for `have` grants every action of `want`."""
    held = _scope_map(have)
    for resource, actions in _scope_map(want).items():
        if not actions <= held.get(resource, set()) and "*" not in held.get(resource, set()):
            return False
    return True


# --- calls exchanged with the transport -------------------------------------------------


@dataclass
class TokenCall:
    """A request to the token server that the flow wants sent (never to a mirror)."""

    method: str
    url: str
    params: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    form: dict[str, str] | None = field(default=None, repr=False)


@dataclass
class Reply:
    """What the transport answers: status, headers (case-insensitive mapping), and for
    token calls the body. `raw` is the transport's own response object, if any."""

    status: int
    headers: Mapping[str, str]
    body: bytes = b""
    raw: Any = None
    header_values: Callable[[str], list[str]] | None = None

    def values(self, name: str) -> list[str]:
        if self.header_values is not None:
            return self.header_values(name)
        value = self.headers.get(name)
        return [value] if value else []


@dataclass
class _Token:
    value: str = field(repr=False)
    expires: float
    scopes: tuple[str, ...]


class AuthRefused(Unauthorized):
    """The token server refused the credentials (or was unreachable/garbled)."""


# --- the authenticator -----------------------------------------------------------------


class Authenticator:
    """Auth state for one registry host (and one repository when `repoAuth`).

    `credentials` is called when credentials are needed (helpers may be slow, so not
    before). `host_netloc` is the registry's `host:port`: credentials and tokens are only
    attached to requests going there.
    """

    def __init__(
        self,
        name: str,
        host_netloc: str,
        credentials: Callable[[], Credential],
        client_id: str = "regbot",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.host_netloc = host_netloc
        self._credentials = credentials
        self.client_id = client_id
        self._clock = clock
        self._lock = threading.Lock()
        self._scheme = ""  # "bearer" or "basic" once a challenge was seen
        self._realm = ""
        self._service = ""
        self._tokens: list[_Token] = []
        self._refresh_token = ""
        # The first request to a host learns its challenge; the others wait for it
        # rather than each getting its own 401 (then they ask for a token first).
        self._first_contact = threading.Lock()
        self._contacted = False
        self._fetching: dict[tuple[str, ...], threading.Event] = {}  # one token per scope

    def flow(self, request: Any, scopes: Iterable[str]) -> Generator[Any, Reply, Reply]:
        """Send `request` (an object with `url` and a mutable `headers` dict) with
        whatever authorization is known, handle one 401 by authenticating and sending
        it once more; returns the final reply.

        Yields `request` itself or `TokenCall`s; the driver sends each and `.send()`s
        back the `Reply`.
        """
        wanted = merge_scopes(scopes)
        header = None
        ours = urlsplit(request.url).netloc == self.host_netloc
        probing = ours and not self._contacted and self._first_contact.acquire(timeout=60)
        try:
            if probing and self._contacted:  # learnt while this one waited
                self._first_contact.release()
                probing = False
            if ours:
                header = yield from self._authorization(request.url, wanted, fresh=False)
            if header:
                request.headers["Authorization"] = header
            reply = yield request
            if reply.status != 401 or not ours:
                return reply
            challenges = parse_www_authenticate(reply.values("WWW-Authenticate"))
            extra = self._learn(challenges)
        finally:
            if ours:
                self._contacted = True
            if probing:
                self._first_contact.release()
        if not self._scheme:
            return reply
        if header:
            self._forget(header)
        sent, header = header, (yield from self._authorization(
            request.url, merge_scopes((*wanted, *extra)), fresh=True
        ))
        if not header or header == sent:
            return reply  # nothing (new) to offer: the same Basic credentials failed already
        request.headers["Authorization"] = header
        reply = yield request
        if reply.status == 401:
            self._forget(header)
        return reply

    # --- state ---

    def _learn(self, challenges: list[Challenge]) -> tuple[str, ...]:
        """Remember the best challenge; returns the scopes it asked for."""
        by_scheme = {c.scheme: c for c in challenges}
        with self._lock:
            bearer = by_scheme.get("bearer")
            if bearer is not None and bearer.params.get("realm"):
                self._scheme = "bearer"
                if bearer.params["realm"] != self._realm or bearer.params.get("service", "") != self._service:
                    self._tokens.clear()
                self._realm = bearer.params["realm"]
                self._service = bearer.params.get("service", "")
                scope = bearer.params.get("scope", "")
                return tuple(s for s in scope.split(" ") if s)
            if "basic" in by_scheme:
                self._scheme = "basic"
            return ()

    def _forget(self, header: str) -> None:
        value = header.partition(" ")[2]
        with self._lock:
            self._tokens = [t for t in self._tokens if t.value != value]

    def _cached(self, scopes: tuple[str, ...]) -> _Token | None:
        now = self._clock()
        with self._lock:
            self._tokens = [t for t in self._tokens if t.expires > now]
            for token in self._tokens:
                if scopes_cover(token.scopes, scopes):
                    return token
        return None

    def _authorization(
        self, url: str, scopes: tuple[str, ...], fresh: bool
    ) -> Generator[TokenCall, Reply, str | None]:
        if self._scheme == "basic":
            cred = self._credentials()
            if not cred.has_basic:
                return None
            raw = f"{cred.user}:{cred.password}".encode()
            return "Basic " + base64.b64encode(raw).decode()
        if self._scheme != "bearer":
            return None
        if not fresh:
            cached = self._cached(scopes)
            if cached is not None:
                return "Bearer " + cached.value
            with self._lock:
                busy = self._fetching.get(scopes)
            if busy is not None and busy.wait(30):  # another thread is asking for it
                cached = self._cached(scopes)
                if cached is not None:
                    return "Bearer " + cached.value
        with self._lock:
            done = self._fetching.setdefault(scopes, threading.Event())
        try:
            token = yield from self._fetch_token(url, scopes)
            with self._lock:
                self._tokens.append(token)
        finally:
            with self._lock:
                if self._fetching.get(scopes) is done:
                    del self._fetching[scopes]
            done.set()
        return "Bearer " + token.value

    # --- the token exchange ---

    def _fetch_token(self, url: str, scopes: tuple[str, ...]) -> Generator[TokenCall, Reply, _Token]:
        realm = urljoin(url, self._realm)
        _check_realm(url, realm, self.name)
        cred = self._credentials()
        refresh = self._refresh_token or cred.token
        if refresh:
            # OAuth2 form (what `docker login` identity tokens are for).
            form = {"grant_type": "refresh_token", "refresh_token": refresh, "client_id": self.client_id}
            if self._service:
                form["service"] = self._service
            if scopes:
                form["scope"] = " ".join(scopes)
            reply = yield TokenCall("POST", realm, form=form, headers={
                "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            })
            if reply.status == 200:
                return self._parse_token(reply, scopes)
            log.debug("registry %s: token POST answered %s, trying GET", self.name, reply.status)
            if self._refresh_token and not cred.token:
                self._refresh_token = ""
        params = [("client_id", self.client_id)]
        if self._service:
            params.append(("service", self._service))
        params.extend(("scope", s) for s in scopes)
        headers = {}
        if cred.has_basic:
            params.append(("account", cred.user))
            raw = f"{cred.user}:{cred.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        reply = yield TokenCall("GET", realm, params=params, headers=headers)
        if reply.status != 200:
            raise AuthRefused(
                self.name,
                "token request refused" + (" for the configured credentials" if cred.has_basic else ""),
                status=reply.status,
            )
        return self._parse_token(reply, scopes)

    def _parse_token(self, reply: Reply, scopes: tuple[str, ...]) -> _Token:
        try:
            data = json.loads(reply.body[:MAX_TOKEN_BODY])
        except ValueError:
            raise AuthRefused(self.name, "token server answered with something other than JSON") from None
        if not isinstance(data, dict):
            raise AuthRefused(self.name, "token server answer is not a JSON object")
        value = data.get("token") or data.get("access_token") or ""
        if not isinstance(value, str) or not value:
            raise AuthRefused(self.name, "token server answer holds no token")
        try:
            life = int(data.get("expires_in") or DEFAULT_TOKEN_LIFE)
        except (TypeError, ValueError):
            life = DEFAULT_TOKEN_LIFE
        life = max(life, DEFAULT_TOKEN_LIFE)
        if isinstance(data.get("refresh_token"), str) and data["refresh_token"]:
            self._refresh_token = data["refresh_token"]
        return _Token(value, self._clock() + life - TOKEN_EXPIRY_MARGIN, scopes)


def _check_realm(url: str, realm: str, name: str) -> None:
    """Refuse a realm that would leak credentials: https to http, or public to local."""
    src, dst = urlsplit(url), urlsplit(realm)
    if dst.scheme not in ("http", "https") or not dst.netloc:
        raise Unauthorized(name, "token realm is not an http(s) URL")
    if src.scheme == "https" and dst.scheme != "https":
        raise Unauthorized(name, "refusing a token realm that downgrades https to http")
    if not is_local(src.hostname or "") and is_local(dst.hostname or ""):
        raise Unauthorized(name, "refusing a token realm on a local address for a remote registry")


def is_local(hostname: str) -> bool:
    """Loopback, link-local or unspecified address literal, or `localhost`."""
    if hostname.lower() == "localhost" or hostname.lower().endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(hostname.strip("[]"))
    except ValueError:
        return False
    return ip.is_loopback or ip.is_link_local or ip.is_unspecified
