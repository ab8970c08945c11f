"""Errors of the copy engine itself (registry failures keep their own types)."""

from __future__ import annotations

from regbot.errors import RegbotError


class CopyError(RegbotError):
    """A copy failed for a reason that is not a registry's answer (e.g. an unexpected
    exception inside a unit); the message names the unit, references and digest."""


class CopyCancelled(CopyError):
    """The copy was stopped through its cancel token (a script timeout, or a sibling unit
    failed first). Raised between units and between chunks of a blob."""
