"""Turn a registry's HTTP status and OCI error body into regbot's typed errors."""

from __future__ import annotations

import json

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

_BY_STATUS: dict[int, type[RegistryError]] = {
    401: Unauthorized,
    403: Denied,
    404: NotFound,
    405: Unsupported,
    413: TooLarge,
    416: RegistryError,
    429: RateLimited,
}
_BY_CODE: dict[str, type[RegistryError]] = {
    "UNAUTHORIZED": Unauthorized,
    "DENIED": Denied,
    "MANIFEST_UNKNOWN": NotFound,
    "BLOB_UNKNOWN": NotFound,
    "NAME_UNKNOWN": NotFound,
    "BLOB_UPLOAD_UNKNOWN": NotFound,
    "UNSUPPORTED": Unsupported,
    "TOOMANYREQUESTS": RateLimited,
    "DIGEST_INVALID": DigestMismatch,
    "SIZE_INVALID": RegistryError,
}


def parse_error_body(body: bytes) -> tuple[str, str]:
    """The first `{"errors":[{"code", "message"}]}` entry, or ("", "")."""
    try:
        data = json.loads(body)
        first = data["errors"][0]
        code = str(first.get("code") or "")
        message = str(first.get("message") or "")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return "", ""
    return code, message[:300]


def error_for(status: int, body: bytes, ref: object, action: str) -> RegistryError:
    """The error for a failed call: class by OCI code first (it is more precise), then
    by status; the message names the action, e.g. `get manifest: not found`."""
    code, detail = parse_error_body(body)
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status)
    if cls is None:
        cls = TransportError if status >= 500 else RegistryError
    message = f"{action}: {cls.default_message}" if action else ""
    return cls(ref, message, status=status, code=code, detail=detail)
