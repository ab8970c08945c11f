"""Credentials for a registry, and Docker's `docker-credential-<x>` helper protocol.

A helper is run as `docker-credential-<x> get` with the server name on standard input
and answers `{"ServerURL": ..., "Username": ..., "Secret": ...}`; the user name
`<token>` means the secret is an identity token rather than a password.
"""

from __future__ import annotations

import json
import logging
import subprocess
from dataclasses import dataclass, field

from regbot.errors import RegbotError

log = logging.getLogger(__name__)

HELPER_PREFIX = "docker-credential-"
TOKEN_USER = "<token>"
HELPER_TIMEOUT = 30.0


@dataclass(frozen=True)
class Credential:
    """What to authenticate with. `token` is an identity (OAuth2 refresh) token."""

    user: str = ""
    password: str = field(default="", repr=False)
    token: str = field(default="", repr=False)

    @property
    def has_basic(self) -> bool:
        return bool(self.user and self.password)

    @property
    def empty(self) -> bool:
        return not (self.user or self.password or self.token)


class CredentialHelperError(RegbotError):
    """A credential helper failed; the message never contains its standard output."""


def helper_program(name: str) -> str:
    """`test` and `docker-credential-test` both name the program `docker-credential-test`."""
    return name if name.startswith(HELPER_PREFIX) or "/" in name else HELPER_PREFIX + name


def helper_get(program: str, server: str, timeout: float = HELPER_TIMEOUT) -> Credential:
    """Ask a helper for the credential of one server name."""
    program = helper_program(program)
    out = _run(program, "get", server, timeout)
    try:
        data = json.loads(out)
    except ValueError:
        raise CredentialHelperError(f"{program}: answer for {server} is not JSON") from None
    if not isinstance(data, dict):
        raise CredentialHelperError(f"{program}: answer for {server} is not a JSON object")
    user = str(data.get("Username") or "")
    secret = str(data.get("Secret") or "")
    if user == TOKEN_USER:
        return Credential(token=secret)
    return Credential(user=user, password=secret)


def helper_list(program: str, timeout: float = HELPER_TIMEOUT) -> dict[str, str]:
    """Server names the helper holds credentials for, mapped to their user names."""
    program = helper_program(program)
    try:
        data = json.loads(_run(program, "list", "", timeout))
    except ValueError:
        raise CredentialHelperError(f"{program}: list answer is not JSON") from None
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _run(program: str, action: str, stdin: str, timeout: float) -> bytes:
    try:
        proc = subprocess.run(
            [program, action],
            input=stdin.encode(),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise CredentialHelperError(f"credential helper {program} not found on PATH") from None
    except subprocess.TimeoutExpired:
        raise CredentialHelperError(f"credential helper {program} timed out after {timeout:g}s") from None
    except OSError as exc:
        raise CredentialHelperError(f"credential helper {program} failed to start: {exc.strerror}") from None
    if proc.returncode != 0:
        # Helpers print their error ("credentials not found in native keychain") on stdout
        # or stderr; only a short first line is kept and stdout is never echoed whole.
        reason = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()
        first = reason[0][:200] if reason else ""
        raise CredentialHelperError(
            f"credential helper {program} {action} exited with {proc.returncode}"
            + (f": {first}" if first and "Secret" not in first else "")
        )
    return proc.stdout
