"""The documents scripts see as objects: field names (Go-style and JSON) and types.

regclient's sandbox exports the OCI Go structs, so scripts read `m.Layers[1].Digest` (Go
field names) as well as `m.layers[1].digest` (JSON names). Here a document stays keyed by
its JSON names; these tables give the Lua objects their Go-name aliases and tell `normalize`
how to turn an edited Lua table back into a document (which names, which are lists,
which are numbers, which may be left out).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lupa.lua51 as lua51

from regbot.types.manifest import INDEX_TYPES, V1_TYPES

# Field kinds.
STR, INT, BOOL, ANY = "str", "int", "bool", "any"
STRUCT, ARRAY, MAP, INLINE = "struct", "array", "map", "inline"


@dataclass(frozen=True)
class Field:
    go: str
    json: str
    kind: str
    type: str = ""  # struct name (STRUCT, INLINE, ARRAY of structs) or the element kind
    omitempty: bool = True
    pointer: bool = False  # a missing struct reads as nil (Go pointer) rather than {}
    call: str = ""  # the object method this field's value also answers as (m:config())


def _f(go: str, json: str, kind: str, type: str = "", **kw: Any) -> Field:
    return Field(go, json, kind, type, **kw)


SCHEMAS: dict[str, tuple[Field, ...]] = {
    "Platform": (
        _f("Architecture", "architecture", STR, omitempty=False),
        _f("OS", "os", STR, omitempty=False),
        _f("OSVersion", "os.version", STR),
        _f("OSFeatures", "os.features", ARRAY, STR),
        _f("Variant", "variant", STR),
        _f("Features", "features", ARRAY, STR),
    ),
    "Descriptor": (
        _f("MediaType", "mediaType", STR, omitempty=False),
        _f("Digest", "digest", STR, omitempty=False),
        _f("Size", "size", INT, omitempty=False),
        _f("URLs", "urls", ARRAY, STR),
        _f("Annotations", "annotations", MAP, STR),
        _f("Data", "data", STR),
        _f("Platform", "platform", STRUCT, "Platform", pointer=True),
        _f("ArtifactType", "artifactType", STR),
    ),
    # The embedded `Versioned` struct of the Go manifest types, reachable as m.Versioned.
    "Versioned": (
        _f("SchemaVersion", "schemaVersion", INT, omitempty=False),
        _f("MediaType", "mediaType", STR),
    ),
    "ImageManifest": (
        _f("Versioned", "", INLINE, "Versioned"),
        _f("SchemaVersion", "schemaVersion", INT, omitempty=False),
        _f("MediaType", "mediaType", STR),
        _f("ArtifactType", "artifactType", STR),
        _f("Config", "config", STRUCT, "Descriptor", omitempty=False, call="config"),
        _f("Layers", "layers", ARRAY, "Descriptor", omitempty=False),
        _f("Subject", "subject", STRUCT, "Descriptor", pointer=True),
        _f("Annotations", "annotations", MAP, STR),
    ),
    "Index": (
        _f("Versioned", "", INLINE, "Versioned"),
        _f("SchemaVersion", "schemaVersion", INT, omitempty=False),
        _f("MediaType", "mediaType", STR),
        _f("ArtifactType", "artifactType", STR),
        _f("Manifests", "manifests", ARRAY, "Descriptor", omitempty=False),
        _f("Subject", "subject", STRUCT, "Descriptor", pointer=True),
        _f("Annotations", "annotations", MAP, STR),
    ),
    "FSLayer": (_f("BlobSum", "blobSum", STR, omitempty=False),),
    "V1History": (_f("V1Compatibility", "v1Compatibility", STR, omitempty=False),),
    "V1Manifest": (
        _f("SchemaVersion", "schemaVersion", INT, omitempty=False),
        _f("MediaType", "mediaType", STR),
        _f("Name", "name", STR, omitempty=False),
        _f("Tag", "tag", STR, omitempty=False),
        _f("Architecture", "architecture", STR, omitempty=False),
        _f("FSLayers", "fsLayers", ARRAY, "FSLayer", omitempty=False),
        _f("History", "history", ARRAY, "V1History", omitempty=False),
        _f("Signatures", "signatures", ANY),
    ),
    "HealthConfig": (
        _f("Test", "Test", ARRAY, STR),
        _f("Interval", "Interval", INT),
        _f("Timeout", "Timeout", INT),
        _f("StartPeriod", "StartPeriod", INT),
        _f("StartInterval", "StartInterval", INT),
        _f("Retries", "Retries", INT),
    ),
    "ImageConfig": (
        _f("User", "User", STR),
        _f("ExposedPorts", "ExposedPorts", MAP, ANY),
        _f("Env", "Env", ARRAY, STR),
        _f("Entrypoint", "Entrypoint", ARRAY, STR),
        _f("Cmd", "Cmd", ARRAY, STR),
        _f("Volumes", "Volumes", MAP, ANY),
        _f("WorkingDir", "WorkingDir", STR),
        _f("Labels", "Labels", MAP, STR),
        _f("StopSignal", "StopSignal", STR),
        _f("StopTimeout", "StopTimeout", INT),
        _f("ArgsEscaped", "ArgsEscaped", BOOL),
        _f("Healthcheck", "Healthcheck", STRUCT, "HealthConfig", pointer=True),
        _f("OnBuild", "OnBuild", ARRAY, STR),
        _f("Shell", "Shell", ARRAY, STR),
    ),
    "RootFS": (
        _f("Type", "type", STR, omitempty=False),
        _f("DiffIDs", "diff_ids", ARRAY, STR, omitempty=False),
    ),
    "History": (
        _f("Created", "created", STR),
        _f("CreatedBy", "created_by", STR),
        _f("Author", "author", STR),
        _f("Comment", "comment", STR),
        _f("EmptyLayer", "empty_layer", BOOL),
    ),
    # v1.Image: the platform fields are embedded (m.Platform.OS in Go) and sit at the top
    # of the JSON document, so they are reachable both ways (ic.OS, ic.Platform.OS).
    "Image": (
        _f("Created", "created", STR),
        _f("Author", "author", STR),
        _f("Architecture", "architecture", STR, omitempty=False),
        _f("OS", "os", STR, omitempty=False),
        _f("OSVersion", "os.version", STR),
        _f("OSFeatures", "os.features", ARRAY, STR),
        _f("Variant", "variant", STR),
        _f("Platform", "", INLINE, "Platform"),
        _f("Config", "config", STRUCT, "ImageConfig"),
        _f("RootFS", "rootfs", STRUCT, "RootFS", omitempty=False),
        _f("History", "history", ARRAY, "History"),
    ),
    # What a blob object and a manifest read by HEAD show.
    "BlobDescriptor": (
        _f("MediaType", "mediaType", STR, omitempty=False),
        _f("Digest", "digest", STR, omitempty=False),
        _f("Size", "size", INT, omitempty=False),
    ),
}


def manifest_schema(media_type: str, has_body: bool = True) -> str:
    if not has_body:
        return "BlobDescriptor"
    if media_type in INDEX_TYPES:
        return "Index"
    if media_type in V1_TYPES:
        return "V1Manifest"
    return "ImageManifest"


_SCALAR_ZERO = {STR: "", INT: 0, BOOL: False}


def lua_schemas() -> dict[str, Any]:
    """The schema tables handed to the Lua prelude.

    For each type: `aliases` (Go name -> JSON name, only where they differ) and
    `fields` (JSON name, or Go name for inline structs -> {kind, type, zero, ...}).
    """
    out: dict[str, Any] = {}
    for name, fields in SCHEMAS.items():
        aliases: dict[str, str] = {}
        info: dict[str, Any] = {}
        for field in fields:
            key = field.json or field.go
            if field.json and field.go != field.json:
                aliases[field.go] = field.json
            entry: dict[str, Any] = {"kind": field.kind}
            if field.kind == INLINE:
                entry["inline"] = True
            if field.type:
                entry["type"] = field.type
            if field.pointer:
                entry["pointer"] = True
            if field.call:
                entry["call"] = field.call
            if field.kind == ARRAY and field.type in SCHEMAS:
                entry["elem_struct"] = True
            if field.kind in _SCALAR_ZERO:
                entry["zero"] = _SCALAR_ZERO[field.kind]
            info[key] = entry
        out[name] = {"aliases": aliases, "fields": info}
    return out


# --- Lua table (as plain Python values) -> document ---


class SchemaError(ValueError):
    pass


def normalize(value: Any, type_name: str, orig: Any = None, where: str = "") -> dict[str, Any]:
    """Turn an exported Lua table (converted to dicts/lists) back into a JSON document.

    Keys may use Go or JSON names; `orig` (the document the object was read from) decides
    what an empty Lua table was (`[]` or `{}`) where the schema does not, and which empty
    optional fields to keep. Unknown keys are kept as they are.
    """
    return _struct(value, type_name, orig, where or type_name)


def _struct(value: Any, type_name: str, orig: Any, where: str) -> dict[str, Any]:
    if isinstance(value, list) and not value:
        value = {}
    if not isinstance(value, dict):
        raise SchemaError(f"{where}: expected a table, got {lua_type_name(value)}")
    orig = orig if isinstance(orig, dict) else {}
    remaining = dict(value)
    fields = SCHEMAS[type_name]
    # An embedded struct assigned as a whole (ic.Platform = {...}) spreads into its parent.
    for field in fields:
        if field.kind == INLINE and isinstance(remaining.get(field.go), dict):
            inline = remaining.pop(field.go)
            for sub in SCHEMAS[field.type]:
                for key in (sub.go, sub.json):
                    if key in inline and sub.json not in remaining:
                        remaining[sub.json] = inline[key]
    out: dict[str, Any] = {}
    for field in fields:
        if field.kind == INLINE:
            remaining.pop(field.go, None)
            continue
        present, item = False, None
        for key in (field.json, field.go):
            if key in remaining:
                candidate = remaining.pop(key)
                if not present:
                    item, present = candidate, True
        if item is None:
            # Lua cannot hold a JSON null: a null of the original document stays null.
            if field.json in orig and orig[field.json] is None:
                out[field.json] = None
            continue
        converted = _field(item, field, orig.get(field.json), f"{where}.{field.go}")
        if _is_empty(converted) and field.omitempty and field.json not in orig:
            continue
        out[field.json] = converted
    # Fields the schema does not know (e.g. Docker's container_config) pass through, in
    # the original document's order, new ones after them.
    known = {f.json for f in fields} | {f.go for f in fields}
    for key in orig:
        if key in remaining and remaining[key] is not None:
            out[key] = _any(remaining[key], orig[key])
        elif key not in remaining and key not in known and orig[key] is None:
            out[key] = None
    for key in sorted(k for k in remaining if k not in orig):
        if remaining[key] is not None:
            out[key] = _any(remaining[key], None)
    return out


def _field(item: Any, field: Field, orig: Any, where: str) -> Any:
    if field.kind == STR:
        return _scalar(item, str, where)
    if field.kind == INT:
        return _int(item, where)
    if field.kind == BOOL:
        return _scalar(item, bool, where)
    if field.kind == STRUCT:
        return _struct(item, field.type, orig, where)
    if field.kind == ARRAY:
        if isinstance(item, dict) and not item:
            item = []
        if not isinstance(item, list):
            raise SchemaError(f"{where}: expected an array, got {lua_type_name(item)}")
        origs = orig if isinstance(orig, list) else []
        out = []
        for i, elem in enumerate(item):
            o = origs[i] if i < len(origs) else None
            sub = f"{where}[{i + 1}]"
            if field.type in SCHEMAS:
                out.append(_struct(elem, field.type, o, sub))
            else:
                out.append(_field(elem, Field("", "", field.type), o, sub))
        return out
    if field.kind == MAP:
        if isinstance(item, list) and not item:
            item = {}
        if not isinstance(item, dict):
            raise SchemaError(f"{where}: expected a table, got {lua_type_name(item)}")
        origs = orig if isinstance(orig, dict) else {}
        if field.type == STR:
            return {str(k): _scalar(v, str, f"{where}[{k!r}]") for k, v in item.items()}
        return {str(k): _any(v, origs.get(str(k)), empty_is_object=True) for k, v in item.items()}
    return _any(item, orig)


def _any(value: Any, orig: Any, empty_is_object: bool = False) -> Any:
    if isinstance(value, dict):
        if not value and isinstance(orig, list):
            return []
        origs = orig if isinstance(orig, dict) else {}
        out = {str(k): _any(v, origs.get(str(k))) for k, v in value.items()}
        for key, item in origs.items():
            if item is None and key not in out:
                out[key] = None  # a JSON null Lua could not hold
        return out
    if isinstance(value, list):
        if not value and (empty_is_object or isinstance(orig, dict)):
            return {}
        origs = orig if isinstance(orig, list) else []
        return [_any(v, origs[i] if i < len(origs) else None) for i, v in enumerate(value)]
    if isinstance(value, float) and value.is_integer() and not isinstance(orig, float):
        return int(value)
    return value


def _scalar(value: Any, typ: type, where: str) -> Any:
    if typ is str and isinstance(value, str):
        return value
    if typ is bool and isinstance(value, bool):
        return value
    raise SchemaError(f"{where}: expected a {'string' if typ is str else 'boolean'}, got {lua_type_name(value)}")


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SchemaError(f"{where}: expected a number, got {lua_type_name(value)}")
    if isinstance(value, float) and not value.is_integer():
        raise SchemaError(f"{where}: expected a whole number, got {value}")
    return int(value)


def _is_empty(value: Any) -> bool:
    return value in ("", 0, False, None) or (isinstance(value, (list, dict)) and not value)


def lua_type_name(value: Any) -> str:
    """A value's Lua type as error messages name it: a Lua value's own, else the one a plain
    Python value stands for (bytes and str are strings, dicts and lists tables)."""
    kind = lua51.lua_type(value)
    if kind is not None:
        return kind
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, (bytes, str)):
        return "string"
    if isinstance(value, (dict, list)):
        return "table"
    return type(value).__name__
