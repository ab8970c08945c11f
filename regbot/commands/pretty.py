"""regclient's MarshalPretty text of manifests, line for line (`regctl manifest get`).

Each media type prints a tab-separated block aligned by Go's tabwriter (regbot/tabwriter):
Name, MediaType, ArtifactType, Digest, Annotations, Total Size, then Config and Layers
(images), Manifests (indexes), Blobs (artifacts) or Layers digests (Docker v1), and the
Subject. Descriptor annotations are printed sorted (Go prints them in map order).
"""

from __future__ import annotations

from typing import Any

from regbot.tabwriter import align
from regbot.types.descriptor import Descriptor
from regbot.types.manifest import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    MT_OCI_MANIFEST,
    V1_TYPES,
    Manifest,
)
from regbot.types.platform import Platform
from regbot.types.ref import Reference

_UNITS = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]


def human_size(size: float) -> str:
    """go-units' HumanSize: decimal units, `%5.3f` (600 -> "600.000B")."""
    unit = 0
    while size >= 1000.0 and unit < len(_UNITS) - 1:
        size /= 1000.0
        unit += 1
    return f"{size:5.3f}{_UNITS[unit]}"


def platform_text(platform: Platform) -> str:
    """regclient's Platform.String: os/arch[/variant] after its normalisation."""
    arch, variant = platform.architecture, platform.variant
    if arch in ("x86_64", "x86-64", "amd64"):
        arch, variant = "amd64", "" if variant == "v1" else variant
    elif arch in ("aarch64", "arm64"):
        arch, variant = "arm64", "" if variant in ("8", "v8") else variant
    elif arch == "i386":
        arch, variant = "386", ""
    elif arch == "armhf":
        arch, variant = "arm", "v7"
    elif arch == "armel":
        arch, variant = "arm", "v6"
    elif arch == "arm":
        variant = {"": "v7", "7": "v7", "5": "v5", "6": "v6", "8": "v8"}.get(variant, variant)
    if not platform.os:
        return "unknown"
    return "/".join(part for part in (platform.os, arch, variant) if part)


def descriptor_lines(desc: Descriptor, prefix: str = "  ") -> list[str]:
    """descriptor.MarshalPrettyTW."""
    lines = [f"{prefix}Digest:\t{desc.digest}", f"{prefix}MediaType:\t{desc.media_type}"]
    if desc.artifact_type:
        lines.append(f"{prefix}ArtifactType:\t{desc.artifact_type}")
    if desc.media_type not in MANIFEST_TYPES:  # sizes of manifests are not shown
        size = human_size(desc.size) if desc.size > 100000 else f"{desc.size}B"
        lines.append(f"{prefix}Size:\t{size}")
    platform = desc.platform
    if platform is not None and platform.os:
        lines.append(f"{prefix}Platform:\t{platform_text(platform)}")
        if platform.os_version:
            lines.append(f"{prefix}OSVersion:\t{platform.os_version}")
        if platform.os_features:
            lines.append(f"{prefix}OSFeatures:\t{', '.join(platform.os_features)}")
    if desc.urls:
        lines.append(f"{prefix}URLs:\t{', '.join(desc.urls)}")
    if desc.annotations:
        lines.append(f"{prefix}Annotations:\t")
        for key in sorted(desc.annotations):
            lines.append(f"{prefix}  {key}:\t{desc.annotations[key]}")
    return lines


def manifest_pretty(manifest: Manifest, name: str, ref: Reference | None) -> str:
    """The text of `{{printPretty .}}` for a manifest. `name` is the reference as given
    (regclient's Ref.Reference), `ref` the parsed one, for the names of index entries."""
    data: dict[str, Any] = manifest.data if manifest.has_body else {}
    lines = [f"Name:\t{name}"] if name else []
    lines.append(f"MediaType:\t{manifest.media_type}")
    artifact_type = data.get("artifactType") or ""
    if artifact_type:
        lines.append(f"ArtifactType:\t{artifact_type}")
    lines.append(f"Digest:\t{manifest.digest}")
    if manifest.media_type in V1_TYPES:
        lines += ["\t", "Layers:\t"]
        lines += [f"  Digest:\t{layer.get('blobSum', '')}" for layer in data.get("fsLayers") or []]
        return align("\n".join(lines) + "\n")
    annotations = data.get("annotations") or {}
    if annotations:
        lines.append("Annotations:\t")
        lines += [f"  {key}:\t{annotations[key]}" for key in sorted(annotations)]
    if manifest.media_type in INDEX_TYPES:
        lines += ["\t", "Manifests:\t"]
        for entry in manifest.manifests if manifest.has_body else []:
            lines.append("\t")
            if name and ref is not None:
                lines.append(f"  Name:\t{ref.with_digest(entry.digest).common_name()}")
            lines += descriptor_lines(entry)
    else:
        layers = manifest.layers if manifest.has_body else []
        lines.append(f"Total Size:\t{human_size(sum(layer.size for layer in layers))}")
        lines += ["\t", "Config:\t"]
        config = manifest.config if manifest.has_body else None
        lines += descriptor_lines(config or Descriptor("", "", 0))
        lines += ["\t", "Layers:\t"]
        for layer in layers:
            lines.append("\t")
            lines += descriptor_lines(layer)
    subject = manifest.subject if manifest.has_body else None
    if subject is not None and manifest.media_type in (MT_OCI_MANIFEST, *INDEX_TYPES):
        lines += ["\t", "Subject:\t"]
        lines += descriptor_lines(subject)
    return align("\n".join(lines) + "\n")
