"""Per-registry settings (the `creds` entries of regbot.yml), after template expansion."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from regbot.types.ref import DOCKER_HUB, DOCKER_HUB_HOST

TLS_ENABLED = "enabled"
TLS_INSECURE = "insecure"
TLS_DISABLED = "disabled"
TLS_VALUES = (TLS_ENABLED, TLS_INSECURE, TLS_DISABLED)

DEFAULT_REQ_CONCURRENT = 3
DEFAULT_BLOB_CHUNK = 1024 * 1024
DEFAULT_BLOB_MAX = -1  # never chunk unless configured


@dataclass
class Host:
    """How to reach and authenticate to one registry name used in references.

    Secrets (`password`, `token`, `client_key`) live only here, in process memory read
    from the user's config; they are never logged, put in task messages or in Redis.
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
    def chunk_above(self) -> int:
        """Uploads larger than this are chunked; -1 never chunks."""
        return self.blob_max if self.blob_max != 0 else DEFAULT_BLOB_MAX
