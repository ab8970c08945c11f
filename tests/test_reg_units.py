"""Small pure pieces of the registry client: error mapping, Link headers, paging rules,
the referrers fallback tag, rate-limit headers."""

from __future__ import annotations

import json

import pytest

from regbot.errors import (
    Denied,
    DigestMismatch,
    NotFound,
    RateLimited,
    RegistryError,
    TooLarge,
    TransportError,
    Unauthorized,
    Unsupported,
)
from regbot.http.errors import error_for, parse_error_body
from regbot.scheme.reg import fallback_tag
from regbot.scheme.reg.common import link_next, page_filter
from regbot.types.ratelimit import RateLimit


def oci(code: str, message: str = "msg") -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message, "detail": {"x": 1}}]}).encode()


@pytest.mark.parametrize(("status", "body", "cls"), [
    (401, oci("UNAUTHORIZED"), Unauthorized),
    (403, oci("DENIED"), Denied),
    (404, oci("MANIFEST_UNKNOWN"), NotFound),
    (404, oci("BLOB_UNKNOWN"), NotFound),
    (404, oci("NAME_UNKNOWN"), NotFound),
    (404, b"404 page not found", NotFound),
    (429, oci("TOOMANYREQUESTS"), RateLimited),
    (405, b"", Unsupported),
    (400, oci("UNSUPPORTED"), Unsupported),
    (413, b"", TooLarge),
    (400, oci("DIGEST_INVALID"), DigestMismatch),
    (400, oci("MANIFEST_INVALID"), RegistryError),
    (502, b"<html>bad gateway</html>", TransportError),
])
def test_error_mapping(status, body, cls):
    err = error_for(status, body, "reg.test/lib/app:v1", "get manifest")
    assert type(err) is cls and err.status == status
    assert str(err).startswith("reg.test/lib/app:v1: get manifest: ")
    code, message = parse_error_body(body)
    assert (err.code, err.detail) == (code, message)


def test_error_text_carries_code_and_message():
    err = error_for(404, oci("MANIFEST_UNKNOWN", "manifest unknown"), "r.test/a:b", "get manifest")
    assert str(err) == "r.test/a:b: get manifest: not found (HTTP 404: MANIFEST_UNKNOWN: manifest unknown)"
    assert parse_error_body(b"not json") == ("", "")
    assert parse_error_body(b'{"errors": []}') == ("", "")


def test_link_next():
    assert link_next(['</v2/_catalog?last=c0%2Fx&n=2>; rel="next"']) == "/v2/_catalog?last=c0%2Fx&n=2"
    assert link_next(['<https://r/a?n=1>; rel=next']) == "https://r/a?n=1"
    assert link_next(['</p>; rel="prev", </n>; type="x"; rel="next last"']) == "/n"
    assert link_next(['</p>; rel="prev"']) == "" and link_next([]) == ""


def test_page_filter():
    names = ["b", "latest", "9", "B", "c", "10", "a"]
    assert page_filter(names, None, None) == names  # untouched without limit/last
    assert page_filter(names, 3, None) == ["10", "9", "B"]
    assert page_filter(names, None, "b") == ["c", "latest"]
    assert page_filter(names, 1, "zzz") == []


def test_fallback_tag():
    digest = "sha256:" + "ab" * 32
    assert fallback_tag(digest) == "sha256-" + "ab" * 32
    assert fallback_tag("sha512:" + "c" * 128) == "sha512-" + "c" * 64


def test_ratelimit_headers_as_regclient_reads_them():
    rl = RateLimit.from_headers({"ratelimit-limit": "100;w=21600", "RateLimit-Remaining": "76;w=21600",
                                 "RateLimit-Reset": "3600"})
    assert (rl.set, rl.limit, rl.remain, rl.reset, rl.policies) == (True, 100, 76, 3600, ["100;w=21600"])
    # several policies: all kept when the first has a window, else those after the first
    assert RateLimit.from_headers({"RateLimit-Limit": "100;w=21600, 10;w=60"}).policies == ["100;w=21600", "10;w=60"]
    bare = RateLimit.from_headers({"RateLimit-Limit": "100, 10;w=60"})
    assert (bare.limit, bare.policies, bare.set) == (100, ["10;w=60"], False)  # set needs Remaining
    assert RateLimit.from_headers({"RateLimit-Limit": "100"}).policies == []
    odd = RateLimit.from_headers({"RateLimit-Limit": "x", "RateLimit-Remaining": "y", "RateLimit-Reset": "z"})
    assert (odd.set, odd.limit, odd.remain, odd.reset) == (False, 0, 0, 0)
    assert not RateLimit.from_headers({}).set
