"""The user's registry settings, kept by `regbot registry set/login/logout`.

The file is `$REGBOT_CONFIG_DIR/config.json`, else `~/.regbot/config.json`, in the format
of regctl's `~/.regctl/config.json` (so an existing one can be copied over):

    {"hosts": {"localhost:5000": {"tls": "disabled", "hostname": "localhost:5000",
                                  "reqConcurrent": 3}}}

It holds passwords and tokens, so it is only ever written whole (temp file, fsync,
rename) with mode 0600 in a 0700 directory. Commands run without `-c regbot.yml` take
their hosts from here (user_config_hosts); Docker's config.json still adds credentials.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from regbot.durations import DurationError, parse_duration
from regbot.errors import ConfigError
from regbot.hosts import DEFAULT_REQ_CONCURRENT, TLS_DISABLED, TLS_ENABLED, TLS_VALUES, Host
from regbot.types.ref import DOCKER_HUB, DOCKER_HUB_ALIASES, DOCKER_HUB_HOST

CONFIG_DIR_ENV = "REGBOT_CONFIG_DIR"
CONFIG_FILE = "config.json"
DOCKER_HUB_CRED_HOST = "https://index.docker.io/v1/"
SECRET_KEYS = ("pass", "token", "clientKey")

# JSON key -> Host attribute, in the order regctl writes them (config.Host's fields).
HOST_KEYS: dict[str, str] = {
    "tls": "tls", "regcert": "regcert", "clientCert": "client_cert",
    "clientKey": "client_key", "hostname": "hostname", "user": "user", "pass": "password",
    "token": "token", "credHelper": "cred_helper", "credExpire": "cred_expire",
    "credHost": "cred_host", "pathPrefix": "path_prefix", "mirrors": "mirrors",
    "priority": "priority", "repoAuth": "repo_auth", "apiOpts": "api_opts",
    "blobChunk": "blob_chunk", "blobMax": "blob_max", "reqPerSec": "req_per_sec",
    "reqConcurrent": "req_concurrent",
}
# Go field names of those keys, for --format templates.
GO_NAMES: dict[str, str] = {
    "TLS": "tls", "RegCert": "regcert", "ClientCert": "clientCert", "ClientKey": "clientKey",
    "Hostname": "hostname", "User": "user", "Pass": "pass", "Token": "token",
    "CredHelper": "credHelper", "CredExpire": "credExpire", "CredHost": "credHost",
    "PathPrefix": "pathPrefix", "Mirrors": "mirrors", "Priority": "priority",
    "RepoAuth": "repoAuth", "APIOpts": "apiOpts", "BlobChunk": "blobChunk",
    "BlobMax": "blobMax", "ReqPerSec": "reqPerSec", "ReqConcurrent": "reqConcurrent",
}
# What a key missing from an entry reads as in a template (Go's zero values).
GO_ZERO: dict[str, Any] = {
    "priority": 0, "blobChunk": 0, "blobMax": 0, "reqConcurrent": 0, "reqPerSec": 0,
    "repoAuth": False, "mirrors": [], "apiOpts": {}, "credExpire": 0,
}
_NAME_RE = re.compile(
    r"^(?:\[[0-9a-fA-F:]+\]|[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
    r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*)(?::[0-9]+)?$"
)


def config_path() -> Path:
    base = os.environ.get(CONFIG_DIR_ENV) or str(Path.home() / ".regbot")
    return Path(base) / CONFIG_FILE


@dataclass
class UserConfig:
    """The file's content: `hosts` maps registry names to regctl-style host entries."""

    path: Path
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # other top-level keys, kept as read

    def document(self) -> dict[str, Any]:
        """The file's JSON: maps in key order, as Go's encoding/json writes them."""
        out = dict(self.extra)
        if self.hosts:
            out["hosts"] = {name: _sorted_maps(self.hosts[name]) for name in sorted(self.hosts)}
        return out


def _sorted_maps(entry: dict[str, Any]) -> dict[str, Any]:
    opts = entry.get("apiOpts")
    if isinstance(opts, dict):
        return {**entry, "apiOpts": {k: opts[k] for k in sorted(opts)}}
    return entry


def registry_name(text: str) -> tuple[str, str]:
    """A registry argument (`localhost:5000`, `http://reg:5000`, `docker.io`) as
    (name, scheme); ConfigError when it is not a registry name."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    if scheme not in ("", "http", "https") or not _NAME_RE.match(rest):
        raise ConfigError(f"invalid registry name provided: {text}")
    return (DOCKER_HUB if rest in DOCKER_HUB_ALIASES else rest), scheme


def new_entry(text: str) -> tuple[str, dict[str, Any]]:
    """regclient's HostNewName: the defaults a new entry starts from."""
    name, scheme = registry_name(text)
    entry: dict[str, Any] = {"tls": TLS_DISABLED if scheme == "http" else TLS_ENABLED}
    if name == DOCKER_HUB:
        entry.update(hostname=DOCKER_HUB_HOST, credHost=DOCKER_HUB_CRED_HOST)
    else:
        entry["hostname"] = name
        if text != name:
            entry["credHost"] = text
    entry["reqConcurrent"] = DEFAULT_REQ_CONCURRENT
    return name, entry


def is_default(name: str, entry: dict[str, Any]) -> bool:
    """True when an entry holds nothing beyond a new entry's defaults (it is dropped)."""
    _, fresh = new_entry(name)
    left = {k: v for k, v in entry.items() if v not in ("", 0, False, [], {}, None)}
    return all(fresh.get(k) == v for k, v in left.items())


def ordered(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry with regctl's key order and its empty values left out (omitempty)."""
    out = {k: entry[k] for k in HOST_KEYS if entry.get(k) not in (None, "", 0, False, [], {})}
    out.update({k: v for k, v in entry.items() if k not in HOST_KEYS})
    return out


def without_secrets(entry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k not in SECRET_KEYS}


def load_user_config() -> UserConfig:
    """The user config; an empty one when the file does not exist yet."""
    path = config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return UserConfig(path)
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read: {getattr(err, 'strerror', None) or err}") from None
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError as err:
        raise ConfigError(f"{path}: invalid JSON: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("hosts", {}), dict):
        raise ConfigError(f"{path}: expected an object with a \"hosts\" object")
    if int(data.get("version") or 0) > 1:
        raise ConfigError(f"{path}: unsupported config version {data['version']}")
    hosts: dict[str, dict[str, Any]] = {}
    for key, entry in (data.get("hosts") or {}).items():
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: hosts.{key}: expected an object")
        name = DOCKER_HUB if key in DOCKER_HUB_ALIASES or key == DOCKER_HUB_CRED_HOST else key
        hosts[name] = entry
    extra = {k: v for k, v in data.items() if k != "hosts"}
    return UserConfig(path, hosts, extra)


def save_user_config(config: UserConfig) -> None:
    """Write the file whole with mode 0600 (its directory 0700)."""
    directory = config.path.parent
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    text = json.dumps(config.document(), indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".config-", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, config.path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def entry_host(name: str, entry: dict[str, Any], source: str = "") -> Host:
    """The Host of an entry; ConfigError naming the file and key for a bad value."""
    where = f"{source}: hosts.{name}" if source else f"hosts.{name}"
    values: dict[str, Any] = {}
    for key, attr in HOST_KEYS.items():
        if key not in entry or entry[key] in (None, ""):
            continue
        value = entry[key]
        if key == "tls":
            value = str(value).lower()
            if value not in TLS_VALUES:
                raise ConfigError(f"{where}.tls: unknown TLS value {value!r}")
        elif key == "credExpire":
            value = _cred_expire(value, f"{where}.credExpire")
        elif key == "mirrors":
            if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
                raise ConfigError(f"{where}.mirrors: expected a list of registry names")
        elif key == "apiOpts":
            if not isinstance(value, dict):
                raise ConfigError(f"{where}.apiOpts: expected an object")
            value = {str(k): str(v) for k, v in value.items()}
        elif key in ("priority", "blobChunk", "blobMax", "reqConcurrent"):
            value = _number(value, int, f"{where}.{key}")
        elif key == "reqPerSec":
            value = _number(value, float, f"{where}.{key}")
        elif key == "repoAuth":
            value = bool(value)
        else:
            value = str(value)
        values[attr] = value
    if name == DOCKER_HUB and values.get("hostname") in (None, DOCKER_HUB):
        values["hostname"] = DOCKER_HUB_HOST
    return Host(name=name, **values)


def user_config_hosts(config: UserConfig) -> list[Host]:
    return [entry_host(name, entry, str(config.path)) for name, entry in config.hosts.items()]


def _number(value: Any, kind: type, where: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: expected a number, got {json.dumps(value)}")
    return kind(value)


def _cred_expire(value: Any, where: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value / 1e9  # Go's JSON form of a time.Duration: nanoseconds
    try:
        return parse_duration(str(value))
    except DurationError as err:
        raise ConfigError(f"{where}: {err.reason}") from None
