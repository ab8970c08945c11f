"""State and helpers shared by the registry scheme's modules (one per API concern)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any
from urllib.parse import urljoin

from regbot.errors import RegistryError
from regbot.hosts import HostTable
from regbot.http.client import HTTPClient, Request, Response
from regbot.http.errors import error_for, parse_error_body
from regbot.scheme.base import Headers, Listing

ERROR_BODY_LIMIT = 64 * 1024
JSON_LIMIT = 16 * 1024 * 1024  # tag lists and catalogs of big registries are large

_LINK_RE = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]+)*)")


class RegBase:
    """What every concern of the registry scheme works with."""

    def __init__(
        self,
        hosts: HostTable,
        limits: Any,
        user_agent: str,
        blob_limit: int = 0,
        *,
        http: HTTPClient | None = None,
    ) -> None:
        self.hosts = hosts
        self.limits = limits
        self.blob_limit = blob_limit
        self.http = http or HTTPClient(hosts, limits, user_agent)
        # (registry, repository) -> whether the OCI referrers API answered there
        self._referrers_api: dict[tuple[str, str], bool] = {}

    def _send(self, req: Request) -> Response:
        return self.http.send(req)

    def _check(self, resp: Response, ok: tuple[int, ...], ref: object, action: str) -> None:
        """Raise the typed error for an unexpected status (reading a bounded error body)."""
        if resp.status in ok:
            return
        body = resp.read_prefix(ERROR_BODY_LIMIT)
        raise error_for(resp.status, body, ref, action)

    @staticmethod
    def _body(resp: Response, ref: object, action: str, limit: int = JSON_LIMIT) -> bytes:
        return resp.read(limit)

    @staticmethod
    def _parse_json(raw: bytes, ref: object, action: str) -> Any:
        try:
            return json.loads(raw)
        except ValueError:
            raise RegistryError(ref, f"{action}: the registry answered with invalid JSON") from None

    def _paged(self, req: Request, key: str, action: str, limit: int | None, last: str | None) -> Listing:
        """Follow `Link: <...>; rel="next"` to the end, or until `limit` names; the last
        page's body and headers come along."""
        names: list[str] = []
        current: Request | None = req
        pages = 0
        body: bytes = b""
        headers: Headers = {}
        while current is not None:
            resp = self._send(current)
            with resp:
                if resp.status == 400 and current is req and any(k == "n" for k, _ in req.query):
                    # A page size above the server's maximum (docker-registry: catalog
                    # maxentries) is refused: ask without `n`, follow its pages instead.
                    error_body = resp.read_prefix(ERROR_BODY_LIMIT)
                    if parse_error_body(error_body)[0] == "PAGINATION_NUMBER_INVALID":
                        req = replace(req, query=[(k, v) for k, v in req.query if k != "n"])
                        current = req
                        continue
                    raise error_for(resp.status, error_body, req.ref, action)
                self._check(resp, (200,), req.ref, action)
                body, headers = self._body(resp, req.ref, action), resp.header_map()
                data = self._parse_json(body, req.ref, action)
                page = data.get(key) if isinstance(data, dict) else None
                names.extend(str(n) for n in page or [])
                current = self._next_page(resp, req)
            pages += 1
            if limit and len(names) >= limit:
                break
            if pages > 100000:
                raise RegistryError(req.ref, f"{action}: pagination does not end")
        return Listing(page_filter(names, limit, last), body, headers)

    def _next_page(self, resp: Response, req: Request) -> Request | None:
        """The request for the `Link: <...>; rel="next"` page, on the host that answered."""
        target = link_next(resp.header_values("Link"))
        if not target:
            return None
        return Request(
            req.method,
            req.registry,
            url=urljoin(resp.url, target),
            host=resp.host.name,
            headers=dict(req.headers),
            catalog=req.catalog,
            repository=req.repository,
            ref=req.ref,
        )


def link_next(values: list[str]) -> str:
    """The target of the `rel="next"` link in `Link` header values, or ""."""
    for value in values:
        for match in _LINK_RE.finditer(value):
            target, params = match.group(1), match.group(2)
            for param in params.split(";"):
                key, _, val = param.strip().partition("=")
                if key.strip().lower() == "rel" and "next" in val.strip().strip('"').split():
                    return target.strip()
    return ""


def page_filter(names: list[str], limit: int | None, last: str | None) -> list[str]:
    """Apply `last` and `limit` client side too, for servers that ignore `n`/`last`
    (docker-registry 2.8 answers tag lists whole and unsorted): with either given, the
    names in lexical order (the order the OCI spec pages in), after `last`, at most
    `limit`. For a server that honoured them this changes nothing."""
    if not last and not (limit and limit > 0):
        return names
    names = sorted(names)
    if last:
        names = [n for n in names if n > last]
    if limit is not None and limit > 0:
        names = names[:limit]
    return names


def page_query(limit: int | None, last: str | None) -> list[tuple[str, str]]:
    query = []
    if limit is not None and limit > 0:
        query.append(("n", str(limit)))
    if last:
        query.append(("last", last))
    return query
