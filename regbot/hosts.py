"""Per-registry settings (the `creds` entries of regbot.yml), after template expansion,
and the table that finds them by registry name, merged with Docker's own configuration
(`~/.docker/config.json` credentials and helpers, `/etc/docker/certs.d` certificates)."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from regbot.credhelper import Credential, CredentialHelperError, helper_get, helper_program
from regbot.types.ref import DOCKER_HUB, DOCKER_HUB_ALIASES, DOCKER_HUB_HOST

log = logging.getLogger(__name__)

TLS_ENABLED = "enabled"
TLS_INSECURE = "insecure"
TLS_DISABLED = "disabled"
TLS_VALUES = (TLS_ENABLED, TLS_INSECURE, TLS_DISABLED)

DEFAULT_REQ_CONCURRENT = 3
DEFAULT_BLOB_CHUNK = 1024 * 1024
DEFAULT_BLOB_MAX = -1  # never chunk unless configured
_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})  # strconv.ParseBool's true


@dataclass
class Host:
    """How to reach and authenticate to one registry name used in references.

    Secrets (`password`, `token`, `client_key`) live only here, in process memory read
    from the user's config; they are never logged, put in task messages or in Redis.

    Where each option is acted on (regclient's config.Host fields):
    - hostname, tls: `base_url`, and `verify` in http/client.py `_follow`
    - user, pass, token: http/auth.py, through `HostTable.credentials`
    - credHelper, credExpire, credHost: `HostTable.credentials` (answer cached credExpire)
    - regcert, clientCert, clientKey: `HostTable.tls_material`, http/client.py `_session`
    - pathPrefix: http/client.py `repo_path` (URLs, token scopes, mount `from=`)
    - mirrors, priority: `HostTable.mirrors`, http/client.py `send` (reads only)
    - repoAuth: http/client.py `_authenticator` (one auth state per repository)
    - blobChunk, blobMax: scheme/reg/blob.py `blob_put` (`chunk_size`, `chunk_above`)
    - reqPerSec, reqConcurrent: http/client.py `_transport` (the limits' request slots)
    - apiOpts disableHead: http/client.py `send` (mirror skipped) and `_send_to` (GET)
    Accepted and not acted on, each logged as a WARNING naming the entry when the
    config is loaded (config.py `_cred`): `api` (deprecated in regclient too) and
    `scheme` other than `http`. Unknown apiOpts keys are kept and logged at debug, as
    config.md says (regclient acts on none).
    """

    name: str
    hostname: str = ""
    tls: str = TLS_ENABLED
    user: str = ""
    password: str = field(default="", repr=False)
    token: str = field(default="", repr=False)
    cred_helper: str = ""
    cred_expire: float = 3600.0  # seconds a credential helper's answer stays valid
    cred_host: str = ""
    regcert: str = ""
    client_cert: str = ""
    client_key: str = field(default="", repr=False)
    path_prefix: str = ""
    mirrors: list[str] = field(default_factory=list)
    priority: int = 0
    repo_auth: bool = False
    blob_chunk: int = 0  # 0: DEFAULT_BLOB_CHUNK
    blob_max: int = 0  # 0: DEFAULT_BLOB_MAX
    req_per_sec: float = 0.0  # 0: unlimited
    req_concurrent: int = 0  # 0: DEFAULT_REQ_CONCURRENT
    api_opts: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.hostname:
            self.hostname = DOCKER_HUB_HOST if self.name == DOCKER_HUB else self.name

    @property
    def scheme(self) -> str:
        return "http" if self.tls == TLS_DISABLED else "https"

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.hostname}"

    @property
    def concurrency(self) -> int:
        return self.req_concurrent if self.req_concurrent > 0 else DEFAULT_REQ_CONCURRENT

    @property
    def chunk_size(self) -> int:
        return self.blob_chunk if self.blob_chunk > 0 else DEFAULT_BLOB_CHUNK

    @property
    def disable_head(self) -> bool:
        """apiOpts `disableHead` (a Go boolean): no HEAD requests to this host."""
        return str(self.api_opts.get("disableHead", "")).strip() in _GO_TRUE

    @property
    def chunk_above(self) -> int:
        """Uploads larger than this are chunked; -1 never chunks."""
        return self.blob_max if self.blob_max != 0 else DEFAULT_BLOB_MAX


# --- the table -------------------------------------------------------------------------

DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"  # where Docker keeps Hub credentials
DEFAULT_CERTS_DIR = "/etc/docker/certs.d"
CRED_HELPER_RETRY = 5.0  # seconds before asking a failed credential helper again


@dataclass(frozen=True)
class TLSMaterial:
    """Certificates for one host: extra CAs to trust and an optional client pair (PEM)."""

    ca_pem: str = ""
    client_cert: str = ""
    client_key: str = field(default="", repr=False)


@dataclass
class _CachedCred:
    cred: Credential
    expires: float


def normalize_registry(name: str) -> tuple[str, str]:
    """A Docker config key (`https://index.docker.io/v1/`, `http://reg:5000`, `reg:5000`)
    as (scheme, registry name); scheme is "" when the key had none."""
    scheme = ""
    if "://" in name:
        scheme, _, name = name.partition("://")
    name = name.split("/", 1)[0]
    if name in DOCKER_HUB_ALIASES:
        name = DOCKER_HUB
    return scheme.lower(), name


class HostTable:
    """Host settings by registry name.

    Entries from regbot.yml win; Docker's config.json adds credentials to entries that
    have none and to registries that have no entry; any other name gets a default Host
    (TLS enabled, as regclient does for every name, localhost included).
    `docker_config_dir` and `certs_dir` override `$DOCKER_CONFIG`/`~/.docker` and
    `/etc/docker/certs.d` (tests use them).
    """

    def __init__(
        self,
        hosts: list[Host],
        skip_docker_config: bool = False,
        *,
        docker_config_dir: str | None = None,
        certs_dir: str | None = None,
        clock=time.monotonic,
    ) -> None:
        self.skip_docker_config = skip_docker_config
        self._clock = clock
        self._lock = threading.Lock()
        self._creds: dict[str, _CachedCred] = {}
        self._certs_dir = Path(certs_dir or DEFAULT_CERTS_DIR)
        self._docker: dict[str, Host] = {}
        self._creds_store = ""
        if not skip_docker_config:
            self._load_docker_config(docker_config_dir)
        self._hosts: dict[str, Host] = {}
        for host in hosts:
            _, name = normalize_registry(host.name)
            if name != host.name:
                host = replace(host, name=name)
            docker = self._docker.get(name)
            if docker is not None and not _has_credentials(host):
                host = replace(
                    host,
                    user=docker.user,
                    password=docker.password,
                    token=docker.token,
                    cred_helper=docker.cred_helper,
                    cred_host=host.cred_host or docker.cred_host,
                )
            elif self._creds_store and not _has_credentials(host):
                host = replace(host, cred_helper=self._creds_store)
            self._hosts[name] = host

    # --- lookups ---

    def get(self, name: str) -> Host:
        """The Host for a registry name; the same object every time for one name."""
        _, key = normalize_registry(name)
        with self._lock:
            host = self._hosts.get(key)
            if host is None:
                host = self._docker.get(key)
                if host is None:
                    host = Host(name=key, cred_helper=self._creds_store)
                self._hosts[key] = host
            return host

    def mirrors(self, name: str) -> list[Host]:
        """The mirrors of a registry, highest priority first (config order among equals)."""
        host = self.get(name)
        found = [self.get(m) for m in host.mirrors if normalize_registry(m)[1] != host.name]
        return sorted(found, key=lambda h: -h.priority)

    def credentials(self, name: str) -> Credential:
        """The credential to use for a registry: configured, or from its helper (cached
        for `credExpire`; a failing helper is asked again after a few seconds)."""
        host = self.get(name)
        static = Credential(host.user, host.password, host.token)
        if not host.cred_helper:
            return static
        now = self._clock()
        with self._lock:
            cached = self._creds.get(host.name)
            if cached is not None and cached.expires > now:
                return cached.cred
        server = host.cred_host or (DOCKER_HUB_AUTH_KEY if host.name == DOCKER_HUB else host.hostname)
        try:
            cred = helper_get(host.cred_helper, server)
            expires = now + (host.cred_expire if host.cred_expire > 0 else 3600.0)
        except CredentialHelperError as exc:
            log.warning("registry %s: %s; continuing with the configured credentials", host.name, exc)
            cred, expires = static, now + CRED_HELPER_RETRY
        with self._lock:
            self._creds[host.name] = _CachedCred(cred, expires)
        return cred

    def tls_material(self, name: str) -> TLSMaterial:
        """CAs to trust (regcert plus certs.d `*.crt`) and the client pair (clientCert/
        clientKey, else certs.d `*.cert` with the `*.key` of the same base name)."""
        host = self.get(name)
        cas = [host.regcert.strip()] if host.regcert.strip() else []
        cert, key = host.client_cert, host.client_key
        if not self.skip_docker_config:
            for directory in self._cert_dirs(host):
                for path in sorted(directory.glob("*.crt")):
                    cas.append(_read_text(path))
                if not (cert and key):
                    for path in sorted(directory.glob("*.cert")):
                        key_path = path.with_suffix(".key")
                        if key_path.is_file():
                            cert, key = _read_text(path), _read_text(key_path)
                            break
        return TLSMaterial("\n".join(c for c in cas if c), cert, key)

    def _cert_dirs(self, host: Host) -> list[Path]:
        names = [host.hostname] + ([host.name] if host.name != host.hostname else [])
        return [self._certs_dir / n for n in names if (self._certs_dir / n).is_dir()]

    # --- Docker's config.json ---

    def _load_docker_config(self, directory: str | None) -> None:
        base = directory or os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
        path = Path(base) / "config.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("ignoring docker config %s: %s", path, type(exc).__name__)
            return
        if not isinstance(data, dict):
            return
        helpers = data.get("credHelpers") or {}
        for key, entry in (data.get("auths") or {}).items():
            host = _docker_auth_host(key, entry if isinstance(entry, dict) else {}, helpers)
            if host is not None:
                self._docker[host.name] = host
        for key, helper in helpers.items():
            scheme, name = normalize_registry(key)
            if name and name not in self._docker and helper:
                self._docker[name] = _docker_host(key, scheme, name, cred_helper=helper_program(helper))
        store = data.get("credsStore") or ""
        self._creds_store = helper_program(store) if store else ""


def _docker_auth_host(key: str, entry: dict, helpers: dict) -> Host | None:
    scheme, name = normalize_registry(key)
    if not name:
        return None
    user = str(entry.get("username") or "")
    password = str(entry.get("password") or "")
    if entry.get("auth"):
        try:
            decoded = base64.b64decode(entry["auth"]).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            log.warning("docker config: ignoring an unreadable auth entry for %s", name)
            return None
        user, sep, password = decoded.partition(":")
        if not sep:
            log.warning("docker config: ignoring an auth entry without user:pass for %s", name)
            return None
        password = password.strip("\x00")
    token = str(entry.get("identitytoken") or "")
    helper = helpers.get(key) or helpers.get(name) or ""
    if not ((user and password) or token or helper):
        return None
    return _docker_host(
        key, scheme, name, user=user, password=password, token=token,
        cred_helper=helper_program(helper) if helper else "",
    )


def _docker_host(key: str, scheme: str, name: str, **fields: Any) -> Host:
    host = Host(name=name, **fields)
    if scheme == "http":
        host.tls = TLS_DISABLED
    if name == DOCKER_HUB:
        host.cred_host = DOCKER_HUB_AUTH_KEY
    elif key != name:
        host.cred_host = key  # ask helpers with the key Docker stored it under
    return host


def _has_credentials(host: Host) -> bool:
    return bool(host.user or host.password or host.token or host.cred_helper)


def _read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        log.warning("cannot read %s: %s", path, exc.strerror)
        return ""
