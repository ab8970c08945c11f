"""The `manifest` module and manifest objects.

A manifest object is a view of the manifest document (Go and JSON field names) that keeps
the reference it was read from: `m:get()`, `m:put()`, `m:delete()`, `image.config(m)`, ...
act on that reference. Edits to the fields take effect through `m:export()`, which builds
a new manifest object from them (as regclient: `put` sends the manifest as read).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from regbot.errors import NotFound, RegbotError
from regbot.sandbox.reference import as_reference
from regbot.sandbox.runtime import ArgumentError, Sandbox
from regbot.sandbox.schema import SCHEMAS, SchemaError, manifest_schema, normalize
from regbot.types.descriptor import Descriptor
from regbot.types.manifest import Manifest
from regbot.types.platform import Platform, local_platform
from regbot.types.ratelimit import RateLimit
from regbot.types.ref import Reference


@dataclass
class ManifestState:
    ref: Reference
    manifest: Manifest
    document: dict[str, Any]  # as read; for a HEAD manifest, the descriptor fields
    schema: str


def head_document(manifest: Manifest) -> dict[str, Any]:
    return {"mediaType": manifest.media_type, "digest": manifest.digest, "size": manifest.size}


def new_manifest_object(sb: Sandbox, ref: Reference, manifest: Manifest) -> Any:
    document = _document(manifest)
    schema = manifest_schema(manifest.media_type, manifest.has_body)
    state = ManifestState(ref, manifest, document, schema)
    return sb.new_object("manifest", state, document, schema)


# --- fetching ---


def fetch_manifest(sb: Sandbox, ref: Reference, *, as_list: bool = False,
                   platform: str | None = None) -> Manifest:
    """GET ref's manifest; an index resolves to the entry for `platform` (default: the
    local platform) unless `as_list`."""
    manifest = sb.client.manifest_get(ref)
    if manifest.is_index and not as_list:
        manifest = platform_manifest(sb, ref, manifest, platform)
    return manifest


def platform_manifest(sb: Sandbox, ref: Reference, index: Manifest,
                      platform: str | None = None) -> Manifest:
    wanted: Platform | None = None
    if platform:
        try:
            wanted = Platform.parse(platform)
        except RegbotError as exc:
            # regclient warns and falls back to the local platform.
            sb.log.warn("Could not parse platform", platform=platform, err=str(exc))
    wanted = wanted or local_platform()
    entry = index.platform_entry(wanted)
    if entry is None:
        raise NotFound(ref, f"no manifest for platform {wanted} in the index")
    return sb.client.manifest_get(ref.with_digest(entry.digest))


def head_manifest(sb: Sandbox, ref: Reference) -> Manifest:
    manifest = sb.client.manifest_head(ref)
    if not manifest.digest:
        # Some registries leave the digest header out of HEAD: ask with GET instead.
        manifest = sb.client.manifest_get(ref)
    return manifest


def resolve_manifest(sb: Sandbox, value: Any, what: str, *, as_list: bool = False,
                     head: bool = False) -> ManifestState:
    """A manifest object as it is, a config object as the manifest it came from, or a
    reference (string or object) fetched now (HEAD or GET)."""
    found = sb.lookup(value)
    if found is not None and found[0] == "manifest":
        return found[1]
    if found is not None and found[0] == "config":
        state = found[1]
        return ManifestState(state.ref, state.manifest, _document(state.manifest),
                             manifest_schema(state.manifest.media_type, state.manifest.has_body))
    ref = as_reference(sb, value, what)
    manifest = head_manifest(sb, ref) if head else fetch_manifest(sb, ref, as_list=as_list)
    return ManifestState(ref, manifest, _document(manifest),
                         manifest_schema(manifest.media_type, manifest.has_body))


def _document(manifest: Manifest) -> dict[str, Any]:
    return manifest.data if manifest.has_body else head_document(manifest)


def manifest_state(sb: Sandbox, value: Any, what: str) -> ManifestState:
    return sb.object_state(value, "manifest", what)


# --- conversions for Lua ---


def descriptor_table(desc: Descriptor) -> dict[str, Any]:
    """A descriptor as regclient exports it: every field by Go name and JSON name."""
    data = desc.to_dict()
    data.setdefault("urls", [])
    data.setdefault("annotations", {})
    data.setdefault("artifactType", "")
    return _both_names(data, "Descriptor")


def _both_names(data: dict[str, Any], schema: str) -> dict[str, Any]:
    out = dict(data)
    for field in SCHEMAS[schema]:
        if field.json in data:
            value = data[field.json]
            if field.kind == "struct" and isinstance(value, dict):
                value = _both_names(value, field.type)
            out[field.json] = value
            out[field.go] = value
    return out


def ratelimit_table(rl: RateLimit) -> dict[str, Any]:
    """regclient's types.RateLimit (Go names), plus lower-case aliases."""
    out: dict[str, Any] = {
        "Set": rl.set, "Limit": rl.limit, "Remain": rl.remain, "Reset": rl.reset,
        "Policies": list(rl.policies),
    }
    out.update({k.lower(): v for k, v in out.items()})
    return out


def current_document(sb: Sandbox, value: Any, state: ManifestState, what: str) -> dict[str, Any]:
    """The object's fields, edited or not, as a manifest document."""
    try:
        return normalize(sb.fields(value), state.schema, state.document, where="manifest")
    except SchemaError as exc:
        raise ArgumentError(f"{what}: {exc}") from None


def export_manifest(sb: Sandbox, value: Any, state: ManifestState) -> Manifest:
    if not state.manifest.has_body:
        raise ArgumentError("manifest.export: the manifest was read by HEAD and has no body")
    document = current_document(sb, value, state, "manifest.export")
    if document == state.document:
        return state.manifest  # unchanged: keep the exact bytes (and digest)
    raw = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
    try:
        return Manifest.from_bytes(raw, state.manifest.media_type)
    except RegbotError as exc:
        raise ArgumentError(f"manifest.export: {exc}") from None


# --- the module ---


def get(sb: Sandbox, value: Any, platform: Any = None) -> Any:
    ref = as_reference(sb, value, "manifest.get")
    plat = sb.optional_text(platform, "manifest.get platform")
    sb.log.debug("Retrieve manifest", image=ref.common_name(), list=False, platform=plat or "")
    return new_manifest_object(sb, ref, fetch_manifest(sb, ref, platform=plat))


def get_list(sb: Sandbox, value: Any) -> Any:
    ref = as_reference(sb, value, "manifest.getList")
    sb.log.debug("Retrieve manifest", image=ref.common_name(), list=True)
    return new_manifest_object(sb, ref, fetch_manifest(sb, ref, as_list=True))


def head(sb: Sandbox, value: Any) -> Any:
    ref = as_reference(sb, value, "manifest.head")
    sb.log.debug("Retrieve manifest with head", image=ref.common_name())
    return new_manifest_object(sb, ref, head_manifest(sb, ref))


def setup(sb: Sandbox) -> None:
    def descriptor(value: Any = None, *_: Any) -> dict[str, Any]:
        state = resolve_manifest(sb, value, "manifest.descriptor", head=True)
        return descriptor_table(state.manifest.descriptor())

    def put(m_value: Any = None, ref_value: Any = None, *_: Any) -> None:
        state = resolve_manifest(sb, m_value, "manifest.put", as_list=True)
        if not state.manifest.has_body:
            raise ArgumentError("manifest.put: the manifest was read by HEAD and has no body")
        ref = state.ref if ref_value is None else as_reference(sb, ref_value, "manifest.put")
        sb.log.info("Put manifest", image=ref.common_name(), digest=state.manifest.digest,
                    dry_run=sb.dry_run)
        if sb.dry_run:
            return
        sb.client.manifest_put(ref, state.manifest)
        sb.client.close(ref)

    def delete(value: Any = None, *_: Any) -> None:
        state = resolve_manifest(sb, value, "manifest.delete", head=True)
        ref = state.ref
        if not ref.digest:
            ref = ref.with_digest(state.manifest.digest)
        sb.log.info("Delete manifest", image=ref.common_name(), dry_run=sb.dry_run)
        if sb.dry_run:
            return
        # A manifest read with its body saves the delete from reading it for a subject.
        sb.client.manifest_delete(ref, state.manifest if state.manifest.has_body else None)
        sb.client.close(ref)

    def export(value: Any = None, *_: Any) -> Any:
        state = manifest_state(sb, value, "manifest.export")
        return new_manifest_object(sb, state.ref, export_manifest(sb, value, state))

    def ratelimit(value: Any = None, *_: Any) -> dict[str, Any]:
        state = resolve_manifest(sb, value, "manifest.ratelimit", head=True)
        return ratelimit_table(state.manifest.ratelimit)

    def tostring(value: Any = None, *_: Any) -> str:
        state = manifest_state(sb, value, "tostring")
        return json.dumps(current_document(sb, value, state, "tostring"), indent=2,
                          ensure_ascii=False)

    module_functions = {
        "get": lambda value=None, platform=None, *_: get(sb, value, platform),
        "getList": lambda value=None, *_: get_list(sb, value),
        "head": lambda value=None, *_: head(sb, value),
        "descriptor": descriptor,
        "put": put,
        "delete": delete,
    }
    for name, fn in module_functions.items():
        sb.register_function("manifest", name, fn)
        sb.register_method("manifest", name, fn)
    sb.register_method("manifest", "export", export)
    sb.register_method("manifest", "ratelimit", ratelimit)
    sb.register_method("manifest", "__tostring", tostring)
    # config and ratelimitWait methods are registered by image.py, beside their functions.
