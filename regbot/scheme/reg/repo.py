"""Repositories: the catalog API, with pagination."""

from __future__ import annotations

from regbot.http.client import Request
from regbot.scheme.base import Listing
from regbot.scheme.reg.common import RegBase, page_query
from regbot.types.ref import Reference


class RepoMixin(RegBase):
    def repo_list(self, ref: Reference, limit: int | None = None, last: str | None = None) -> list[str]:
        return self.repo_listing(ref, limit, last).names

    def repo_listing(self, ref: Reference, limit: int | None = None, last: str | None = None) -> Listing:
        req = Request(
            "GET", ref.registry, path="_catalog", query=page_query(limit, last),
            headers={"Accept": "application/json"}, catalog=True, ref=ref.registry,
        )
        return self._paged(req, "repositories", "list repositories", limit, last)
