"""The "reg" scheme: an OCI distribution registry client.

One module per API concern (as regclient's scheme/reg): ping, manifest, blob, tag, repo,
referrer; they share `RegBase` (common.py) and the HTTP transport in regbot/http.
"""

from __future__ import annotations

from regbot.scheme.reg.blob import BlobMixin, RegBlobReader
from regbot.scheme.reg.manifest import ManifestMixin
from regbot.scheme.reg.ping import PingMixin
from regbot.scheme.reg.referrer import ReferrerMixin, fallback_tag
from regbot.scheme.reg.repo import RepoMixin
from regbot.scheme.reg.tag import TagMixin
from regbot.types.ref import Reference

__all__ = ["RegScheme", "RegBlobReader", "fallback_tag"]


class RegScheme(PingMixin, ManifestMixin, BlobMixin, TagMixin, RepoMixin, ReferrerMixin):
    """Implements regbot.scheme.base.Scheme for registries.

    `RegScheme(hosts, limits, user_agent, blob_limit=0, *, http=None)`; `http` replaces
    the default transport (tests pass one with short backoffs).
    """

    def close(self, ref: Reference) -> None:
        """Release pooled connections to ref's registry (and its mirrors)."""
        self.http.close(ref.registry)
