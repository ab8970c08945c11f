"""The `reference` module, reference objects, and `as_reference()` shared by every module."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from regbot.sandbox.runtime import ArgumentError, Sandbox
from regbot.types.ref import Reference

# Objects that stand for a reference: a manifest or config stands for the one it was read from.
REFERENCE_KINDS = ("reference", "manifest", "config")


@dataclass
class RefState:
    """A reference object's value; r:tag(...)/r:digest(...) replace it in place."""

    ref: Reference


def as_reference(sb: Sandbox, value: Any, what: str = "reference") -> Reference:
    """A string, reference object, manifest object or config object, as a Reference."""
    if isinstance(value, bytes):
        return Reference.parse(sb.text(value, what))
    found = sb.lookup(value)
    if found is not None and found[0] in REFERENCE_KINDS:
        return found[1].ref
    raise ArgumentError(f"{what}: reference expected, got {sb.describe(value)}")


def new_reference(sb: Sandbox, ref: Reference) -> Any:
    return sb.new_object("reference", RefState(ref))


def _state(sb: Sandbox, value: Any, what: str) -> RefState:
    found = sb.lookup(value)
    if found is None or found[0] != "reference":
        raise ArgumentError(f"{what}: reference object expected, got {sb.describe(value)}"
                            " (call it as r:" + what.rsplit(".", 1)[-1] + "(...))")
    return found[1]


def setup(sb: Sandbox) -> None:
    def new(value: Any = None, *_: Any) -> Any:
        return new_reference(sb, as_reference(sb, value, "reference.new"))

    def close(value: Any = None, *_: Any) -> None:
        ref = as_reference(sb, value, "reference.close")
        sb.client.close(ref)

    def tag(obj: Any = None, value: Any = None, *_: Any) -> str | None:
        state = _state(sb, obj, "reference.tag")
        if value is None:
            return state.ref.tag
        state.ref = state.ref.with_tag(sb.text(value, "reference.tag"))
        return None

    def digest(obj: Any = None, value: Any = None, *_: Any) -> str | None:
        state = _state(sb, obj, "reference.digest")
        if value is None:
            return state.ref.digest
        # As regclient's SetDigest: the tag is dropped, the digest pins the reference.
        state.ref = state.ref.with_tag("").with_digest(sb.text(value, "reference.digest"))
        return None

    def tostring(obj: Any = None, *_: Any) -> str:
        return as_reference(sb, obj, "tostring").common_name()

    sb.register_function("reference", "new", new)
    sb.register_function("reference", "close", close)
    sb.register_method("reference", "tag", tag)
    sb.register_method("reference", "digest", digest)
    sb.register_method("reference", "close", close)
    sb.register_method("reference", "__tostring", tostring)
