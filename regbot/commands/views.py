"""What `--format` templates see: regctl's result types as GoValue objects.

Field and method names are the Go ones regctl users write (`{{.Tags}}`,
`{{.GetDescriptor.Digest}}`, `{{.Config.Labels}}`); `{{json .}}` gives what the Go type's
MarshalJSON gives (for lists, manifests and configs: the registry's own body), and
`{{printPretty .}}` its MarshalPretty (regbot/commands/pretty.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from regbot.commands.pretty import manifest_pretty
from regbot.gotemplate_values import GoValue, RawJSON
from regbot.sandbox.schema import ARRAY, INLINE, MAP, SCHEMAS, STRUCT, Field, manifest_schema
from regbot.scheme.base import Headers, Listing
from regbot.types.descriptor import Descriptor
from regbot.types.manifest import Manifest
from regbot.types.ref import Reference

_ZERO = {"str": "", "int": 0, "bool": False}


class StructView(GoValue):
    """A JSON document seen as the Go struct `schema` of regbot/sandbox/schema.py."""

    def __init__(self, document: dict[str, Any], schema: str) -> None:
        self.document = document if isinstance(document, dict) else {}
        self.schema = schema
        self.go_type = schema

    def go_field(self, name: str) -> Any:
        for item in SCHEMAS[self.schema]:
            if item.go == name:
                return _field_value(self.document, item)
        raise KeyError(name)

    def go_json(self) -> Any:
        return _struct_json(self.document, self.schema)


def _field_value(document: dict[str, Any], item: Field) -> Any:
    if item.kind == INLINE:
        return StructView(document, item.type)
    value = document.get(item.json)
    if item.kind == STRUCT:
        if value is None and item.pointer:
            return None
        return StructView(value or {}, item.type)
    if item.kind == ARRAY:
        values = value if isinstance(value, list) else []
        return [StructView(v, item.type) for v in values] if item.type in SCHEMAS else values
    if item.kind == MAP:
        return value if isinstance(value, dict) else {}
    return _ZERO.get(item.kind) if value is None else value


def _struct_json(document: dict[str, Any], schema: str) -> dict[str, Any]:
    """encoding/json of the struct: Go field order, omitempty fields left out when empty."""
    out: dict[str, Any] = {}
    for item in SCHEMAS[schema]:
        if item.kind == INLINE:
            continue  # its fields are listed at this level too
        value = document.get(item.json)
        if value is None or (item.omitempty and value in ("", 0, False, [], {})):
            if item.omitempty or item.pointer:
                continue
            value = _ZERO.get(item.kind, [] if item.kind == ARRAY else {})
        if item.kind == STRUCT and isinstance(value, dict):
            value = _struct_json(value, item.type)
        elif item.kind == ARRAY and item.type in SCHEMAS and isinstance(value, list):
            value = [_struct_json(v, item.type) for v in value]
        out[item.json] = value
    return out


class MethodsView(GoValue):
    """A Go value whose fields and methods are given as a name -> getter table."""

    def __init__(self, go_type: str, members: dict[str, Callable[[], Any]],
                 json_value: Callable[[], Any], *, fallback: GoValue | None = None,
                 pretty: Callable[[], str] | None = None) -> None:
        self.go_type = go_type
        self._members = members
        self._json = json_value
        self._fallback = fallback  # embedded struct: fields not found here
        self._pretty = pretty  # the type's MarshalPretty, when it has one

    def go_field(self, name: str) -> Any:
        if name in self._members:
            return self._members[name]()
        if self._fallback is not None:
            return self._fallback.go_field(name)
        raise KeyError(name)

    def go_json(self) -> Any:
        return self._json()

    def go_pretty(self) -> str | None:
        return self._pretty() if self._pretty is not None else None


def reference_view(ref: Reference, text: str = "") -> MethodsView:
    """ref.Ref: `text` is the reference as the user wrote it (Ref.Reference)."""
    fields: dict[str, Any] = {
        "Scheme": ref.scheme, "Reference": text or ref.common_name(),
        "Registry": ref.registry, "Repository": ref.repository, "Tag": ref.tag,
        "Digest": ref.digest, "Path": ref.path,
    }
    members: dict[str, Callable[[], Any]] = {k: (lambda v=v: v) for k, v in fields.items()}
    members["CommonName"] = ref.common_name
    return MethodsView("ref.Ref", members, lambda: dict(fields))


def descriptor_view(desc: Descriptor) -> StructView:
    return StructView(desc.to_dict(), "Descriptor")


def _headers(headers: Headers) -> Callable[[], dict[str, list[str]]]:
    return lambda: {k: list(v) for k, v in headers.items()}


def _sorted_lines(names: list[str]) -> Callable[[], str]:
    return lambda: "".join(f"{name}\n" for name in sorted(names))


def tag_list_view(ref: Reference, listing: Listing, tags: list[str]) -> MethodsView:
    """tag.List: `tags` are the listed tags after --include/--exclude; like regctl,
    `{{json .}}` and the raw formats show the registry's body as it came."""
    try:
        name = json.loads(listing.body).get("name", "") if ref.scheme == "reg" else ""
    except (ValueError, AttributeError):
        name = ""
    members: dict[str, Callable[[], Any]] = {
        "Name": lambda: name, "Tags": lambda: list(tags), "GetTags": lambda: list(tags),
        "RawBody": lambda: listing.body, "RawHeaders": _headers(listing.headers),
    }
    return MethodsView(
        "*tag.List", members,
        lambda: RawJSON(listing.body) if listing.body else {"name": name, "tags": tags},
        pretty=_sorted_lines(tags))


def repo_list_view(listing: Listing) -> MethodsView:
    names = list(listing.names)
    members: dict[str, Callable[[], Any]] = {
        "Repositories": lambda: list(names), "GetRepos": lambda: list(names),
        "RawBody": lambda: listing.body, "RawHeaders": _headers(listing.headers),
    }
    return MethodsView(
        "*repo.RepoList", members,
        lambda: RawJSON(listing.body) if listing.body else {"repositories": names},
        pretty=_sorted_lines(names))


def manifest_view(manifest: Manifest, ref: Reference, text: str) -> MethodsView:
    """manifest.Manifest: the document's fields, GetDescriptor and the raw methods."""
    document = manifest.data if manifest.has_body else {}
    fields = StructView(document, manifest_schema(manifest.media_type, manifest.has_body))
    members: dict[str, Callable[[], Any]] = {
        "GetDescriptor": lambda: descriptor_view(manifest.descriptor()),
        "GetRef": lambda: reference_view(ref, text),
        "GetAnnotations": lambda: dict(document.get("annotations") or {}),
        "GetConfig": lambda: descriptor_view(manifest.config or Descriptor("", "", 0)),
        "GetLayers": lambda: [descriptor_view(d) for d in manifest.layers],
        "GetManifestList": lambda: [descriptor_view(d) for d in manifest.manifests],
        "IsList": lambda: manifest.is_index,
        "IsSet": lambda: manifest.has_body,
        "RawBody": lambda: manifest.raw,
        "RawHeaders": _headers(manifest.headers),
    }
    return MethodsView(
        "manifest.Manifest", members,
        lambda: RawJSON(manifest.raw) if manifest.raw else manifest.descriptor().to_dict(),
        fallback=fields, pretty=lambda: manifest_pretty(manifest, text, ref))


def image_config_view(raw: bytes, descriptor: Descriptor, headers: Headers) -> MethodsView:
    """What `regctl image inspect` formats: the v1.Image fields plus the blob's methods;
    its JSON is the config blob as stored."""
    try:
        document = json.loads(raw)
    except ValueError:
        document = {}
    members: dict[str, Callable[[], Any]] = {
        "GetDescriptor": lambda: descriptor_view(descriptor),
        "RawBody": lambda: raw, "RawHeaders": _headers(headers),
    }
    return MethodsView("struct", members, lambda: RawJSON(raw),
                       fallback=StructView(document, "Image"))


def blob_view(descriptor: Descriptor, headers: Headers,
              read_body: Callable[[], bytes] | None = None) -> MethodsView:
    """blob.Reader (GET, with `read_body`) or a blob HEAD."""
    members: dict[str, Callable[[], Any]] = {
        "GetDescriptor": lambda: descriptor_view(descriptor),
        "RawHeaders": _headers(headers),
    }
    if read_body is not None:
        members["RawBody"] = read_body
    return MethodsView("*blob.BReader", members, lambda: descriptor.to_dict())


def json_struct_view(document: dict[str, Any], names: dict[str, str], go_type: str,
                     extra: dict[str, Any] | None = None,
                     zeros: dict[str, Any] | None = None) -> MethodsView:
    """A Go struct stored as JSON: `names` maps Go field names to JSON keys, `zeros` JSON
    keys to what a missing one reads as (else ""); `extra` holds fields the JSON leaves
    out (`json:"-"`)."""
    zero = zeros or {}
    members: dict[str, Callable[[], Any]] = {
        go: (lambda key=key: document.get(key, zero.get(key, ""))) for go, key in names.items() if key
    }
    members.update({go: (lambda v=v: v) for go, v in (extra or {}).items()})
    return MethodsView(go_type, members, lambda: document)
