"""Rebuild the sample "upstream" image layouts the demo mirrors from.

The layouts are committed (a few KiB each), so users never need to run this; it documents
how they were made and recreates them (fixed contents and dates; only index.json timestamps differ).

    python examples/demo/build_upstream.py
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from regbot.scheme.ocidir import OCIDirScheme  # noqa: E402
from regbot.types.descriptor import Descriptor, digest_of  # noqa: E402
from regbot.types.manifest import MT_OCI_CONFIG, MT_OCI_INDEX, MT_OCI_MANIFEST, Manifest  # noqa: E402
from regbot.types.ref import Reference  # noqa: E402

LAYER = "application/vnd.oci.image.layer.v1.tar"
PLATFORMS = (("linux", "amd64", ""), ("linux", "arm64", ""))


def _layer(seed: str) -> bytes:
    # A tiny but real tar holding one file, so tools that unpack layers accept it.
    import io
    import tarfile

    data = hashlib.sha256(seed.encode()).hexdigest().encode() + b"\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("etc/demo-release")
        info.size, info.mtime, info.mode = len(data), 1700000000, 0o644
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _push_blob(scheme: OCIDirScheme, ref: Reference, media_type: str, data: bytes) -> Descriptor:
    desc = Descriptor(media_type=media_type, digest=digest_of(data), size=len(data))
    scheme.blob_put(ref, desc, data)
    return desc


def _image(scheme, ref, name, os_name, arch, variant, created, labels) -> Descriptor:
    layer = _layer(f"{name}/{arch}")
    config = {
        "architecture": arch,
        "os": os_name,
        "created": created,
        "config": {"Env": ["PATH=/usr/bin:/bin"], "Labels": labels},
        "rootfs": {"type": "layers", "diff_ids": [digest_of(layer)]},
        "history": [{"created": created, "created_by": f"regbot demo {name}"}],
    }
    if variant:
        config["variant"] = variant
    config_desc = _push_blob(scheme, ref, MT_OCI_CONFIG, json.dumps(config, indent=2).encode())
    layer_desc = _push_blob(scheme, ref, LAYER, layer)
    manifest = Manifest.from_data({
        "schemaVersion": 2,
        "mediaType": MT_OCI_MANIFEST,
        "config": config_desc.to_dict(),
        "layers": [layer_desc.to_dict()],
    })
    scheme.manifest_put(ref.repo_only().with_digest(manifest.digest), manifest)
    return manifest.descriptor()


def _tag(scheme, layout: Path, tag: str, created: str, labels: dict | None = None) -> Manifest:
    ref = Reference.parse(f"ocidir://{layout}:{tag}")
    entries = []
    for os_name, arch, variant in PLATFORMS:
        desc = _image(scheme, ref, f"{layout.name}:{tag}", os_name, arch, variant, created,
                      labels or {})
        entry = desc.to_dict()
        entry["platform"] = {"architecture": arch, "os": os_name}
        entries.append(entry)
    index = Manifest.from_data({"schemaVersion": 2, "mediaType": MT_OCI_INDEX, "manifests": entries})
    scheme.manifest_put(ref, index)
    return index


def main() -> None:
    root = HERE / "upstream"
    shutil.rmtree(root, ignore_errors=True)
    scheme = OCIDirScheme(gc=False)
    for tag in ("3.17", "3.18", "3.19", "3.20", "3.21", "3.21.3", "edge"):
        _tag(scheme, root / "alpine", tag, "2026-01-15T00:00:00Z")
    for day in ("20260901", "20261001", "20261015", "20261101", "20261115"):
        _tag(scheme, root / "debian", f"testing-{day}", f"{day[:4]}-{day[4:6]}-{day[6:]}T00:00:00Z")
    created = "org.opencontainers.image.created"
    builds = {}
    for tag, when in (("ci-001", "2024-03-01T10:00:00Z"), ("ci-002", "2025-06-01T10:00:00Z"),
                      ("ci-003", "2099-01-01T10:00:00Z")):
        builds[tag] = _tag(scheme, root / "example", tag, when, {created: when})
    # As in the quick start, `latest` (and later `stable`) share ci-001's digest: pruning
    # the old ci tag must leave them in place.
    scheme.manifest_put(Reference.parse(f"ocidir://{root / 'example'}:latest"), builds["ci-001"])
    print(f"wrote {root}")


if __name__ == "__main__":
    main()
