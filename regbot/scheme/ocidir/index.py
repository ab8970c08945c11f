"""index.json entries: finding, setting and removing tags, as regclient's ocidir does.

A tag is an entry annotated `org.opencontainers.image.ref.name: <tag>` (tools that write
full names, `registry/repo:tag`, are read too). A manifest pushed by digest only gets an
entry without that annotation, which keeps it from being garbage collected.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_CREATED = "org.opencontainers.image.created"

Entry = dict[str, Any]


def entry_name(entry: Entry) -> str:
    annotations = entry.get("annotations") or {}
    name = annotations.get(ANNOTATION_REF_NAME, "") if isinstance(annotations, dict) else ""
    return name if isinstance(name, str) else ""


def tag_of_name(name: str) -> str:
    """`v1` for `v1` and for a full name such as `docker.io/library/alpine:v1`."""
    colon = name.rfind(":")
    return name[colon + 1 :] if colon > name.rfind("/") else name


def find_tag(index: dict[str, Any], tag: str) -> Entry | None:
    """The entry for a tag: an exact ref.name first, then a full name ending in `:tag`."""
    entries = index.get("manifests") or []
    for entry in entries:
        if entry_name(entry) == tag:
            return entry
    for entry in entries:
        name = entry_name(entry)
        if name.endswith(":" + tag) and tag_of_name(name) == tag:
            return entry
    return None


def find_digest(index: dict[str, Any], digest: str) -> Entry | None:
    for entry in index.get("manifests") or []:
        if entry.get("digest") == digest:
            return entry
    return None


def list_tags(index: dict[str, Any]) -> list[str]:
    tags = {tag_of_name(entry_name(e)) for e in index.get("manifests") or [] if entry_name(e)}
    return sorted(tags)


def set_entry(index: dict[str, Any], tag: str, descriptor: Entry) -> bool:
    """Point `tag` at descriptor (or record an untagged entry when tag is "").

    As regclient: a moved tag's entry is replaced in place (the old manifest loses its
    index entry and is garbage once nothing else references it), duplicates of the tag
    are dropped; an untagged entry is added once per digest. Returns True when changed.
    """
    entries: list[Entry] = index.setdefault("manifests", [])
    entry = dict(descriptor)
    annotations = dict(entry.get("annotations") or {})
    if tag:
        annotations[ANNOTATION_REF_NAME] = tag
    else:
        annotations.pop(ANNOTATION_REF_NAME, None)
    annotations.setdefault(ANNOTATION_CREATED, _now())
    entry["annotations"] = annotations

    pos = -1
    changed = False
    for i, current in enumerate(entries):
        name = entry_name(current)
        if not tag and not name and current.get("digest") == entry["digest"]:
            pos = i
            break
        if tag and name == tag:
            if current.get("digest") != entry["digest"]:
                entries[i] = entry
                changed = True
            pos = i
            break
    if pos < 0:
        entries.append(entry)
        return True
    for i in range(len(entries) - 1, pos, -1):
        name = entry_name(entries[i])
        same_untagged = not tag and not name and entries[i].get("digest") == entry["digest"]
        if same_untagged or (tag and name == tag):
            del entries[i]
            changed = True
    return changed


def remove_tag(index: dict[str, Any], tag: str) -> bool:
    """Remove the entries naming `tag` (exactly, or as the tag of a full name)."""
    entries: list[Entry] = index.get("manifests") or []
    keep = [e for e in entries if entry_name(e) != tag]
    if len(keep) == len(entries):
        keep = [e for e in entries if not entry_name(e) or tag_of_name(entry_name(e)) != tag]
    if len(keep) == len(entries):
        return False
    index["manifests"] = keep
    return True


def remove_digest(index: dict[str, Any], digest: str) -> bool:
    entries: list[Entry] = index.get("manifests") or []
    keep = [e for e in entries if e.get("digest") != digest]
    index["manifests"] = keep
    return len(keep) != len(entries)


def prune_untagged(index: dict[str, Any], digests: set[str]) -> bool:
    """Drop untagged entries for digests now reachable through another manifest.

    regclient pushes the children of an index with a "child" flag that keeps them out of
    index.json; our Scheme API has no such flag, so children pushed by digest get an
    untagged entry first and lose it here when their parent is recorded. The result is
    the same index.json regclient writes for a copy.
    """
    if not digests:
        return False
    entries: list[Entry] = index.get("manifests") or []
    keep = [e for e in entries if entry_name(e) or e.get("digest") not in digests]
    index["manifests"] = keep
    return len(keep) != len(entries)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
