"""Every error regbot raises on purpose, in one tree.

Messages name what was being worked on (a reference, a registry, a file) and, when a
registry answered with an OCI error body, carry its own code and message.
"""

from __future__ import annotations


class RegbotError(Exception):
    """Base of every error regbot reports to a user as one line."""


class ConfigError(RegbotError):
    """The configuration file is wrong; the CLI exits with status 2."""


class InvalidReference(RegbotError):
    """A reference string that cannot be parsed."""


class RegistryError(RegbotError):
    """A registry (or ocidir layout) refused or failed an operation.

    `ref` is the reference (or host) worked on, `code`/`detail` come from the registry's
    JSON error body (`{"errors":[{"code":..., "message":...}]}`) when it sent one.
    """

    default_message = "registry error"

    def __init__(
        self,
        ref: object = "",
        message: str = "",
        *,
        status: int | None = None,
        code: str = "",
        detail: str = "",
    ) -> None:
        self.ref = str(ref)
        self.status = status
        self.code = code
        self.detail = detail
        self.message = message or self.default_message
        super().__init__(self._render())

    def _render(self) -> str:
        text = f"{self.ref}: {self.message}" if self.ref else self.message
        extras = []
        if self.status:
            extras.append(f"HTTP {self.status}")
        if self.code:
            extras.append(self.code)
        if self.detail and self.detail != self.message:
            extras.append(self.detail)
        if extras:
            text += " (" + ": ".join(extras) + ")"
        return text


class NotFound(RegistryError):
    default_message = "not found"


class Unauthorized(RegistryError):
    default_message = "unauthorized"


class Denied(RegistryError):
    default_message = "access denied"


class RateLimited(RegistryError):
    default_message = "rate limited"


class DigestMismatch(RegistryError):
    default_message = "digest mismatch"


class Unsupported(RegistryError):
    default_message = "unsupported by this registry"


class TooLarge(RegistryError):
    default_message = "too large"


class TransportError(RegistryError):
    """Connection failures and server errors that outlasted the retries."""

    default_message = "request failed"


class ScriptError(RegbotError):
    """A Lua script failed: carries the script name and the Lua line when known."""

    def __init__(self, script: str, message: str, line: int | None = None) -> None:
        self.script = script
        self.line = line
        self.message = message
        where = f"script {script!r}" + (f" line {line}" if line else "")
        super().__init__(f"{where}: {message}")


class ScriptTimeout(ScriptError):
    """A script ran past its timeout."""


class LimitError(RegbotError):
    """The store behind regbot/limits.py (Redis, or the embedded memory store) failed."""


class LimitTimeout(LimitError):
    """Waiting for a request slot, lock or blob claim ran past its deadline."""
