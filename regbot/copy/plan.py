"""Planning a copy: read the source, compare with the target, and list the units to run.

The rules are regclient's `imageCopyOpt`, applied to every manifest of the tree:
- The target manifest is read by HEAD first. Without `force_recursive`, `referrers` and
  `digest_tags` (or with `fast_check`), a target already holding the source digest ends
  the walk for that manifest. Otherwise the source is read only as far as needed: an
  image the target already has is not read again; an index is, to reach its entries.
- Index entries are copied by digest (filtered by `platforms`), before the index itself,
  which is copied unchanged. Config and layers come before their manifest; layers with
  `urls` only with `include_external`. Nothing below a manifest is copied when source and
  target are the same repository (a retag).
- `referrers` copies every referrer of each copied manifest, `digest_tags` every tag
  named `<alg>-<hex>...` of its digest, recursively and without loops.
Differences kept on purpose: a referrer is pushed after its subject, and a tag is written
last (the manifest goes by digest first when referrers or digest tags hang off it), so an
interrupted copy never leaves a tag, or a referrer, ahead of what it points to.

I/O (HEADs, manifest GETs, referrer lists) of one level runs in parallel on the executor's
threads; the walk and the unit list are built in the calling thread.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from regbot.copy.cancel import CancelToken
from regbot.copy.errors import CopyError
from regbot.copy.units import (
    INLINE_MANIFEST_MAX,
    BlobUnit,
    ManifestUnit,
    TagUnit,
    Unit,
    units_from_dicts,
    units_to_dicts,
)
from regbot.errors import RateLimited, RegbotError, RegistryError, TransportError
from regbot.types.descriptor import Descriptor
from regbot.types.manifest import MANIFEST_TYPES, Manifest
from regbot.types.platform import Platform
from regbot.types.ref import Reference

if TYPE_CHECKING:
    from regbot.client import RegClient

log = logging.getLogger("regbot.copy")

# Index entries of these types are blobs (regclient's list), copied as such.
BLOB_ENTRY_TYPES = frozenset({
    "application/vnd.docker.container.image.v1+json",
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar.zstd",
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.buildkit.cacheconfig.v0",
})


@dataclass
class CopyOptions:
    """The `image.copy` options (see lua-api.md)."""

    platforms: list[str] = field(default_factory=list)
    digest_tags: bool = False
    force_recursive: bool = False
    include_external: bool = False
    referrers: bool = False
    fast_check: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"platforms": list(self.platforms), "digest_tags": self.digest_tags,
                "force_recursive": self.force_recursive,
                "include_external": self.include_external, "referrers": self.referrers,
                "fast_check": self.fast_check}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CopyOptions:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass
class Plan:
    """The units of one copy, each after its deps in list order. `up_to_date` is True
    when the first check found the target already holding the source (no units)."""

    src: str
    tgt: str
    units: list[Unit] = field(default_factory=list)
    up_to_date: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"src": self.src, "tgt": self.tgt, "up_to_date": self.up_to_date,
                "units": units_to_dicts(self.units)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        return cls(src=data["src"], tgt=data["tgt"], up_to_date=bool(data.get("up_to_date")),
                   units=units_from_dicts(data.get("units", [])))


def build_plan(
    client: RegClient,
    src: Reference,
    tgt: Reference,
    options: CopyOptions | None = None,
    *,
    concurrency: int = 4,
    cancel: CancelToken | None = None,
    threads: ThreadPoolExecutor | None = None,
    source_head: Manifest | None = None,
) -> Plan:
    """Read what is needed from source and target and return the plan (nothing written).

    The reads of one level run on `threads` (the executor's, kept by the process), else
    on `concurrency` threads made for this plan."""
    options = options or CopyOptions()
    cancel = cancel or CancelToken()
    try:
        if threads is not None:
            return _Planner(client, options, threads, cancel).plan(src, tgt, source_head)
        with ThreadPoolExecutor(max_workers=max(1, concurrency),
                                thread_name_prefix="regbot-plan") as pool:
            return _Planner(client, options, pool, cancel).plan(src, tgt, source_head)
    except RegbotError as exc:
        if not getattr(exc, "copy_unit", None) and not getattr(exc, "copy_plan", False):
            exc.copy_plan = True  # type: ignore[attr-defined]
            exc.args = (f"copy {src} to {tgt}: {exc}",)
        raise


# ---------------------------------------------------------------- the walk


@dataclass
class _Item:
    """One manifest to copy: where from, where to, and what the parent said about it."""

    src: Reference
    tgt: Reference
    desc: Descriptor | None = None
    child: bool = False  # pushed by digest as part of something else (index entry, referrer)
    maybe_blob: bool = False  # unknown media type in an index: a blob if not a manifest


@dataclass
class _Probe:
    item: _Item
    sdig: str = ""
    tgt_digest: str = ""  # "" when the target does not have it
    source: Manifest | None = None  # read only when needed
    referrers: list[Descriptor] = field(default_factory=list)
    up_to_date: bool = False  # nothing at all to do below this manifest
    is_blob: bool = False  # maybe_blob turned out to be a blob


class _Planner:
    def __init__(self, client: RegClient, options: CopyOptions, pool: ThreadPoolExecutor,
                 cancel: CancelToken) -> None:
        self.client = client
        self.options = options
        self.pool = pool
        self.cancel = cancel
        self.wanted = [Platform.parse(p) for p in options.platforms if p]
        self.want_no_platform = "" in options.platforms
        self.units: list[Unit] = []
        self._ids = itertools.count(1)
        self._blobs: dict[tuple[str, str], str] = {}  # (target repo, digest) -> unit id
        # (target repo, tag, digest) -> ids completing that manifest; None while in progress
        self._nodes: dict[tuple[str, str, str], list[str] | None] = {}
        self._tags: dict[str, list[str]] = {}  # source repo -> its tag list
        self._omitted: dict[str, int] = {}  # index digest -> entries the filter left out

    def plan(self, src: Reference, tgt: Reference, source_head: Manifest | None = None) -> Plan:
        known = source_head.descriptor() if source_head is not None and source_head.digest \
            else None
        probe = self._probe(_Item(src, tgt, known))
        if not probe.up_to_date:
            self._plan_node(probe)
        return Plan(src=str(src), tgt=str(tgt), units=self.units, up_to_date=probe.up_to_date)

    # --- I/O, run on the pool ---

    def _probe_all(self, items: Sequence[_Item]) -> list[_Probe]:
        if len(items) <= 1:
            return [self._probe(item) for item in items]
        futures = [self.pool.submit(self._probe, item) for item in items]
        return [f.result() for f in futures]

    def _probe(self, item: _Item) -> _Probe:
        """regclient's checks: HEAD the target, then the source only as far as needed."""
        self.cancel.check(f"plan copy {item.src} to {item.tgt}")
        o = self.options
        probe = _Probe(item, sdig=item.desc.digest if item.desc else item.src.digest)
        target = self._head_target(item.tgt)
        probe.tgt_digest = target.digest if target is not None else ""
        if target is not None and (
            o.fast_check or not (o.force_recursive or o.referrers or o.digest_tags)
        ):
            if not probe.sdig:
                probe.sdig = self.client.manifest_head(item.src).digest
            if probe.sdig == target.digest:
                probe.up_to_date = True
                return probe
        if target is not None and not o.force_recursive and not probe.sdig:
            probe.sdig = self.client.manifest_head(item.src).digest
        if (not probe.sdig or target is None or probe.sdig != target.digest
                or o.force_recursive or target.is_index):
            src = item.src.with_digest(probe.sdig) if probe.sdig else item.src
            try:
                probe.source = self.client.manifest_get(src)
            except RegbotError:
                if not item.maybe_blob:
                    raise
                probe.is_blob = True  # regclient: not a manifest, try it as a blob
                return probe
            probe.sdig = probe.sdig or probe.source.digest
        if o.referrers:
            subject = item.src.repo_only().with_digest(probe.sdig)
            probe.referrers = list(self.client.referrers(subject))
        return probe

    def _head_target(self, tgt: Reference) -> Manifest | None:
        try:
            return self.client.manifest_head(tgt)
        except (TransportError, RateLimited):
            raise  # the target cannot be reached: stop here, as regclient does
        except RegistryError as exc:
            log.debug("target %s not found (%s)", tgt, exc)
            return None

    def _tag_list(self, src: Reference) -> list[str]:
        repo = src.repo_only()
        if repo.name not in self._tags:
            self._tags[repo.name] = list(self.client.tag_list(repo))
        return self._tags[repo.name]

    # --- the walk, in the calling thread ---

    def _plan_items(self, items: Sequence[_Item], subject: list[str] | None = None,
                    chain: bool = False) -> list[str]:
        """Probe a batch in parallel and plan each; returns the ids completing them all.
        `subject`: ids that each pushed manifest waits for (a referrer's subject);
        `chain`: push them one after another (referrers of one subject update the same
        fallback index on registries without the referrers API)."""
        todo = []
        done: list[str] = []
        for item in items:
            known = self._known(item)
            if known is None:
                todo.append(item)
            else:
                done.extend(known)
        previous: list[str] = []
        for probe in self._probe_all(todo):
            if probe.is_blob:
                done.append(self._blob(probe.item.src, probe.item.tgt, probe.item.desc))
                continue
            if probe.up_to_date:
                continue
            ids, pushed = self._plan_node(probe, list(subject or []) + previous)
            done.extend(ids)
            if chain and pushed:
                previous = [pushed]
        return _unique(done)

    def _known(self, item: _Item) -> list[str] | None:
        """Ids completing a manifest already planned (empty while it is being planned:
        a loop, which needs no edge), or None when not seen yet."""
        digest = item.desc.digest if item.desc else item.src.digest
        if not digest:
            return None
        key = (item.tgt.name, item.tgt.tag, digest)
        if key not in self._nodes:
            return None
        return list(self._nodes[key] or [])

    def _plan_node(self, probe: _Probe, subject: list[str] | None = None) -> tuple[list[str], str]:
        """Plan one manifest and what hangs off it; returns (ids completing it, id of the
        unit that pushes it or "")."""
        item, o = probe.item, self.options
        key = (item.tgt.name, item.tgt.tag, probe.sdig)
        if key in self._nodes:
            return list(self._nodes[key] or []), ""
        self._nodes[key] = None
        deps: list[str] = []
        m = probe.source
        if m is not None and not _same_repository(item.src, item.tgt):
            if m.is_index:
                deps.extend(self._plan_index(item, m))
            elif m.is_image:
                deps.extend(self._plan_image(item, m))
        push = not probe.tgt_digest or probe.sdig != probe.tgt_digest or o.force_recursive
        extras = self._extras(probe)
        tagged = bool(item.tgt.tag) and not item.child
        pushed = ""
        if not push:
            done = deps + self._plan_items(extras, chain=True)
        elif extras and tagged and item.tgt.scheme != "ocidir":
            # Manifest by digest, then what refers to it, then the tag: the tag goes last.
            # (Not in a layout: there a put by digest leaves an untagged index.json entry
            # beside the tagged one, and nothing reads a layout half way through a copy.)
            by_digest = self._manifest_unit(ManifestUnit, probe, item.tgt.repo_only()
                                            .with_digest(probe.sdig), deps + (subject or []))
            extra_done = self._plan_items(extras, subject=[by_digest], chain=True)
            pushed = self._manifest_unit(TagUnit, probe, item.tgt, [by_digest] + extra_done)
            done = [pushed]
        else:
            pushed = self._manifest_unit(ManifestUnit, probe, item.tgt, deps + (subject or []))
            done = [pushed] + self._plan_items(extras, subject=[pushed], chain=True)
        done = _unique(done)
        self._nodes[key] = done
        return done, pushed

    def _plan_index(self, item: _Item, m: Manifest) -> list[str]:
        deps: list[str] = []
        children: list[_Item] = []
        for entry in m.manifests:
            if not self._platform_wanted(entry):
                log.debug("platform %s of %s left out", entry.platform, item.src)
                self._omitted[m.digest] = self._omitted.get(m.digest, 0) + 1
                continue
            entry_src = item.src.repo_only().with_digest(entry.digest)
            entry_tgt = item.tgt.repo_only().with_digest(entry.digest)
            if entry.media_type in BLOB_ENTRY_TYPES:
                deps.append(self._blob(entry_src, entry_tgt, entry))
            else:
                children.append(_Item(entry_src, entry_tgt, entry, child=True,
                                      maybe_blob=entry.media_type not in MANIFEST_TYPES))
        return deps + self._plan_items(children)

    def _plan_image(self, item: _Item, m: Manifest) -> list[str]:
        deps: list[str] = []
        config = m.config
        if config is not None:
            deps.append(self._blob(item.src, item.tgt, config))
        for layer in m.layers:
            if layer.urls and not self.options.include_external:
                log.debug("external layer %s of %s skipped", layer.digest, item.src)
                continue
            deps.append(self._blob(item.src, item.tgt, layer))
        return _unique(deps)

    def _extras(self, probe: _Probe) -> list[_Item]:
        """Referrers and digest tags of a manifest, as items to copy."""
        item = probe.item
        extras = [
            _Item(item.src.repo_only().with_digest(r.digest),
                  item.tgt.repo_only().with_digest(r.digest), r, child=True)
            for r in probe.referrers
        ]
        if self.options.digest_tags and probe.sdig:
            algorithm, _, hexpart = probe.sdig.partition(":")
            prefix = f"{algorithm}-{hexpart}"
            for tag in self._tag_list(item.src):
                if not tag.startswith(prefix):
                    continue
                if self.options.referrers and tag == prefix:
                    continue  # the referrers fallback tag: its content came as referrers
                extras.append(_Item(item.src.with_tag(tag), item.tgt.with_tag(tag)))
        return extras

    def _platform_wanted(self, entry: Descriptor) -> bool:
        """regclient's imagePlatformInList: no filter keeps all; an entry without a
        platform is kept only when "" is in the list."""
        if not self.options.platforms:
            return True
        if entry.platform is None or not entry.platform.os:
            return self.want_no_platform
        return any(entry.platform.matches(p) for p in self.wanted)

    # --- units ---

    def _next_id(self, kind: str) -> str:
        return f"{kind}-{next(self._ids)}"

    def _blob(self, src: Reference, tgt: Reference, desc: Descriptor | None) -> str:
        if desc is None:
            raise CopyError(f"copy {src} to {tgt}: no descriptor for a blob")
        key = (tgt.repo_only().name, desc.digest)
        existing = self._blobs.get(key)
        if existing:
            return existing
        unit = BlobUnit(
            id=self._next_id("blob"),
            src=str(src.repo_only().with_digest(desc.digest)),
            tgt=str(tgt.repo_only().with_digest(desc.digest)),
            descriptor=desc.to_dict(),
            recheck=self.options.force_recursive,
        )
        self.units.append(unit)
        self._blobs[key] = unit.id
        return unit.id

    def _manifest_unit(self, cls: type[ManifestUnit], probe: _Probe, tgt: Reference,
                       deps: list[str]) -> str:
        m = probe.source
        if m is None:
            # Only a target with the same digest skips the read, and then nothing is pushed.
            raise CopyError(f"copy {probe.item.src} to {tgt}: source manifest was not read")
        unit = cls(
            id=self._next_id(cls.kind),
            src=str(probe.item.src.repo_only().with_digest(probe.sdig)),
            tgt=str(tgt),
            deps=_unique(deps),
            manifest_digest=probe.sdig,
            media_type=m.media_type,
            manifest_size=len(m.raw),
            raw=m.raw if len(m.raw) <= INLINE_MANIFEST_MAX else None,
            omitted=self._omitted.get(probe.sdig, 0),
        )
        self.units.append(unit)
        return unit.id


def _same_repository(a: Reference, b: Reference) -> bool:
    if a.scheme != b.scheme:
        return False
    if a.scheme == "ocidir":
        return a.path == b.path
    return a.registry == b.registry and a.repository == b.repository


def _unique(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(ids))
