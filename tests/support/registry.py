"""Start real `docker-registry` processes (Debian's CNCF distribution) on loopback ports."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.support.processes import free_port, spawn, stop_process, wait_for_port

REGISTRY_BINARY = shutil.which("docker-registry") or "/usr/bin/docker-registry"


def htpasswd_line(user: str, password: str) -> str:
    import bcrypt

    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    return f"{user}:{hashed}\n"


@dataclass
class RegistryProcess:
    """One running docker-registry. `host` is `127.0.0.1:PORT`, as used in references."""

    port: int
    root: Path
    proc: subprocess.Popen
    user: str = ""
    password: str = field(default="", repr=False)
    log_path: Path | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def session(self) -> requests.Session:
        sess = requests.Session()
        if self.user:
            sess.auth = (self.user, self.password)
        return sess

    def stop(self) -> None:
        stop_process(self.proc)
        shutil.rmtree(self.root, ignore_errors=True)


def start_registry(
    *,
    user: str = "",
    password: str = "",
    validation_disabled: bool = False,
    http_extra: str = "",
    extra: str = "",
) -> RegistryProcess:
    """Filesystem storage in a temp dir, delete enabled, optional htpasswd basic auth.

    Extra config: `http_extra` goes under `http:` (e.g. a `tls:` block, indented here),
    `extra` at the top level (e.g. `catalog:\\n  maxentries: 2`)."""
    root = Path(tempfile.mkdtemp(prefix="regbot-registry-"))
    port = free_port()
    auth = ""
    if user:
        htpasswd = root / "htpasswd"
        htpasswd.write_text(htpasswd_line(user, password))
        auth = f"auth:\n  htpasswd:\n    realm: basic-realm\n    path: {htpasswd}\n"
    validation = "validation:\n  disabled: true\n" if validation_disabled else ""
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n  accesslog:\n    disabled: true\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {root / 'data'}\n"
        "  delete:\n    enabled: true\n"
        "  maintenance:\n    uploadpurging:\n      enabled: false\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: regbot-test-secret\n"
        + textwrap.indent(http_extra, "  ")
        + auth
        + validation
        + extra
    )
    log_path = root / "registry.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    proc = spawn([REGISTRY_BINARY, "serve", str(config)], log_path, env=env)
    registry = RegistryProcess(port, root, proc, user, password, log_path)
    try:
        wait_for_port(port, proc=proc)
    except RuntimeError:
        registry.stop()
        raise
    return registry
