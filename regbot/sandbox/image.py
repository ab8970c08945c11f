"""The `image` module and image config objects.

image.config, image.copy, image.exportTar and image.importTar are the heavy calls: each
holds one of defaults.parallel cluster-wide slots while it works.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

from regbot import metrics
from regbot.durations import DurationError, format_duration, parse_duration
from regbot.errors import RegbotError
from regbot.sandbox import manifest as manifest_mod
from regbot.sandbox.reference import as_reference
from regbot.sandbox.runtime import ArgumentError, Sandbox
from regbot.sandbox.schema import SchemaError, normalize
from regbot.types.descriptor import Descriptor, digest_of
from regbot.types.manifest import Manifest
from regbot.types.ref import Reference

DEFAULT_RATELIMIT_FREQ = "5m"
DEFAULT_RATELIMIT_TIMEOUT = "6h"
MAX_CONFIG_SIZE = 8 * 1024 * 1024

# Lua option name -> CopyOptions field
COPY_FLAGS = {
    "digestTags": "digest_tags",
    "forceRecursive": "force_recursive",
    "includeExternal": "include_external",
    "referrers": "referrers",
    "fastCheck": "fast_check",
}


@dataclass
class ConfigState:
    ref: Reference
    manifest: Manifest  # the image manifest the config belongs to
    descriptor: Descriptor
    raw: bytes
    document: dict[str, Any]


# --- config ---


def image_manifest(sb: Sandbox, state: manifest_mod.ManifestState) -> Manifest:
    """The image manifest behind a manifest state (an index resolves to the local platform)."""
    manifest = state.manifest
    if not manifest.has_body:
        manifest = manifest_mod.fetch_manifest(sb, state.ref)
    elif manifest.is_index:
        manifest = manifest_mod.platform_manifest(sb, state.ref, manifest)
    return manifest


def read_config(sb: Sandbox, value: Any) -> Any:
    state = manifest_mod.resolve_manifest(sb, value, "image.config")
    sb.log.debug("Retrieve image config", image=state.ref.common_name())
    manifest = image_manifest(sb, state)
    desc = manifest.config
    if desc is None:
        raise ArgumentError(
            f"image.config: {state.ref.common_name()} is a {manifest.media_type} manifest,"
            " which has no image config")
    if desc.size > MAX_CONFIG_SIZE:
        raise ArgumentError(f"image.config: config {desc.digest} is {desc.size} bytes, too large")
    with sb.client.blob_get(state.ref, desc.digest, desc.size) as reader:
        raw = reader.read_all()
    try:
        document = json.loads(raw)
    except ValueError as exc:
        raise RegbotError(f"{state.ref.common_name()}: config {desc.digest} is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise RegbotError(f"{state.ref.common_name()}: config {desc.digest} is not a JSON object")
    return new_config_object(sb, ConfigState(state.ref, manifest, desc, raw, document))


def new_config_object(sb: Sandbox, state: ConfigState) -> Any:
    return sb.new_object("config", state, state.document, "Image")


def config_state(sb: Sandbox, value: Any, what: str) -> ConfigState:
    return sb.object_state(value, "config", what)


def config_document(sb: Sandbox, value: Any, state: ConfigState, what: str) -> dict[str, Any]:
    try:
        return normalize(sb.fields(value), "Image", state.document, where="config")
    except SchemaError as exc:
        raise ArgumentError(f"{what}: {exc}") from None


def export_config(sb: Sandbox, value: Any, state: ConfigState) -> ConfigState:
    document = config_document(sb, value, state, "config.export")
    if document == state.document:
        return state
    raw = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
    desc = Descriptor(media_type=state.descriptor.media_type, digest=digest_of(raw), size=len(raw))
    return ConfigState(state.ref, state.manifest, desc, raw, document)


# --- copy ---


def copy_options(sb: Sandbox, value: Any) -> Any:
    from regbot.copy import CopyOptions

    opts = sb.options(value, "image.copy")
    kwargs: dict[str, Any] = {}
    for key, item in opts.items():
        if key == "platforms":
            if isinstance(item, dict) and not item:
                item = []
            if not isinstance(item, list) or not all(isinstance(p, str) for p in item):
                raise ArgumentError("image.copy: option platforms must be an array of strings")
            kwargs["platforms"] = list(item)
        elif key in COPY_FLAGS:
            if not isinstance(item, bool):
                # regclient ignores a mistyped option; say so rather than fail the script.
                sb.log.warn("Ignoring image.copy option that is not a boolean", option=key)
                continue
            kwargs[COPY_FLAGS[key]] = item
        else:
            sb.log.warn("Ignoring unknown image.copy option", option=key)
    return CopyOptions(**kwargs)


def copy(sb: Sandbox, src_value: Any, tgt_value: Any, opts_value: Any) -> None:
    src = as_reference(sb, src_value, "image.copy source")
    tgt = as_reference(sb, tgt_value, "image.copy target")
    options = copy_options(sb, opts_value)
    fields = {
        "source": src.common_name(),
        "target": tgt.common_name(),
        "digestTags": options.digest_tags,
        "forceRecursive": options.force_recursive,
        "includeExternal": options.include_external,
        "referrers": options.referrers,
        "fastCheck": options.fast_check,
    }
    if options.platforms:
        fields["platforms"] = ",".join(options.platforms)
    if sb.dry_run:
        sb.log.info("Copy image", **fields, dry_run=True)
        return
    line = sb.current_line()
    sb.log.info("Copy image", **fields, dry_run=False)
    head = sb.recent_head(src)
    # Returns once the copy is started: regbot/sandbox/copies.py keeps what the script
    # sees as if it had ended here.
    sb.copies.start(src, tgt, line, lambda: _copy_now(sb, src, tgt, options, head))


def _copy_now(sb: Sandbox, src: Reference, tgt: Reference, options: Any,
              head: Manifest | None) -> None:
    """One copy, on a thread of the run's copy window."""
    from regbot.copy import ProgressEvent, copy_image

    progress = sb.progress
    event = ProgressEvent.for_copy(uuid.uuid4().hex, src.common_name(), tgt.common_name())
    if progress is not None:
        progress.copy_started(event)
    try:
        result = copy_image(sb.engine_client, src, tgt, options, executor=sb.executor,
                            progress=progress, cancel=sb.cancel_token(), run=sb.run_tag,
                            source_head=head)
    except BaseException as exc:
        metrics.copy_done("failed")
        if progress is not None:
            progress.copy_ended(replace(event, error=" ".join(str(exc).split())[:300]))
        raise
    metrics.copy_done("up_to_date" if result.skipped else "copied")
    if progress is not None:
        progress.copy_ended(event)
    sb.count(images_copied=0 if result.skipped else 1, blobs_copied=result.blobs_copied,
             blobs_skipped=result.blobs_skipped, blobs_mounted=result.blobs_mounted,
             bytes_copied=result.bytes_copied)
    sb.log.debug("Copied image", source=src.common_name(), target=tgt.common_name(),
                 skipped=result.skipped, blobs_copied=result.blobs_copied,
                 blobs_skipped=result.blobs_skipped, blobs_mounted=result.blobs_mounted,
                 bytes_copied=result.bytes_copied)
    if tgt.is_ocidir:
        sb.engine_client.close(tgt)  # a layout's index and garbage collection


# --- rate limits ---


def duration(sb: Sandbox, value: Any, default: str, what: str) -> float:
    text = default if value is None else sb.text(value, what)
    try:
        return parse_duration(text)
    except DurationError as exc:
        raise ArgumentError(f"Failed parsing {what} {text}: {exc}") from None


def ratelimit_wait(sb: Sandbox, ref_value: Any, min_value: Any, freq_value: Any,
                   timeout_value: Any) -> bool:
    """HEAD until no limit is reported or Remain >= min; False when `timeout` passes first."""
    ref = as_reference(sb, ref_value, "image.ratelimitWait")
    minimum = sb.number(min_value, "image.ratelimitWait limit")
    freq = duration(sb, freq_value, DEFAULT_RATELIMIT_FREQ, "rate limit frequency")
    timeout = duration(sb, timeout_value, DEFAULT_RATELIMIT_TIMEOUT, "timeout")
    end = time.monotonic() + timeout
    while True:
        head = manifest_mod.head_manifest(sb, ref)
        sb.remember_head(ref, head)  # the image.copy of ref that usually follows reuses it
        rl = head.ratelimit
        if not rl.set or rl.remain >= minimum:
            return True
        left = end - time.monotonic()
        if left <= 0:
            return False
        sb.log.info("Delaying for ratelimit", image=ref.common_name(), current=rl.remain,
                    target=int(minimum), delay=format_duration(freq))
        sb.sleep(min(max(freq, 0.0), left))
        if time.monotonic() >= end:
            return False


# --- tar files ---


def export_tar(sb: Sandbox, ref_value: Any, file_value: Any) -> None:
    from regbot.tarball import export_tar as write_tar

    ref = as_reference(sb, ref_value, "image.exportTar")
    path = sb.text(file_value, "image.exportTar file")
    if sb.dry_run:
        sb.log.info("Export image", image=ref.common_name(), file=path, dry_run=True)
        return
    with sb.heavy_slot():
        sb.log.info("Export image", image=ref.common_name(), file=path, dry_run=False)
        write_tar(sb.client, ref, path)


def import_tar(sb: Sandbox, ref_value: Any, file_value: Any) -> None:
    from regbot.tarball import import_tar as read_tar

    ref = as_reference(sb, ref_value, "image.importTar")
    path = sb.text(file_value, "image.importTar file")
    if sb.dry_run:
        sb.log.info("Import image", image=ref.common_name(), file=path, dry_run=True)
        return
    with sb.heavy_slot():
        sb.log.info("Import image", image=ref.common_name(), file=path, dry_run=False)
        read_tar(sb.client, ref, path)
        sb.client.close(ref)


def setup(sb: Sandbox) -> None:
    def config(value: Any = None, *_: Any) -> Any:
        with sb.heavy_slot():
            return read_config(sb, value)

    def ratelimit_wait_fn(ref: Any = None, minimum: Any = None, freq: Any = None,
                          timeout: Any = None, *_: Any) -> bool:
        return ratelimit_wait(sb, ref, minimum, freq, timeout)

    def config_export(value: Any = None, *_: Any) -> Any:
        state = config_state(sb, value, "config.export")
        return new_config_object(sb, export_config(sb, value, state))

    def config_tostring(value: Any = None, *_: Any) -> str:
        state = config_state(sb, value, "tostring")
        return json.dumps(config_document(sb, value, state, "tostring"), indent=2,
                          ensure_ascii=False)

    functions = {
        "config": config,
        "copy": lambda src=None, tgt=None, opts=None, *_: copy(sb, src, tgt, opts),
        "ratelimitWait": ratelimit_wait_fn,
        "exportTar": lambda ref=None, file=None, *_: export_tar(sb, ref, file),
        "importTar": lambda ref=None, file=None, *_: import_tar(sb, ref, file),
        "manifest": lambda ref=None, platform=None, *_: manifest_mod.get(sb, ref, platform),
        "manifestList": lambda ref=None, *_: manifest_mod.get_list(sb, ref),
        "manifestHead": lambda ref=None, *_: manifest_mod.head(sb, ref),
    }
    for name, fn in functions.items():
        sb.register_function("image", name, fn)
    sb.register_method("manifest", "config", config)
    sb.register_method("manifest", "ratelimitWait", ratelimit_wait_fn)
    sb.register_method("config", "export", config_export)
    sb.register_method("config", "__tostring", config_tostring)
