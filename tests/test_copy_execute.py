"""Running copy units (execute.py, executors.py, progress.py) against an in-memory client."""

from __future__ import annotations

import threading
import time

import pytest

from regbot.copy import (
    CancelToken,
    CopyCancelled,
    CopyOptions,
    ExecContext,
    LocalExecutor,
    ManifestUnit,
    ProgressEvent,
    ProgressListener,
    SequentialExecutor,
    build_plan,
    copy_image,
    execute_unit,
)
from regbot.copy.units import INLINE_MANIFEST_MAX, BlobUnit
from regbot.errors import DigestMismatch, RegistryError
from regbot.types.ref import Reference
from tests.support.fakeclient import FakeClient
from tests.support.images import build_image, build_index, random_blob, sha256
from tests.test_copy_plan import SRC, TGT, _v1_signed, load

R = Reference.parse


class Recorder(ProgressListener):
    def __init__(self) -> None:
        self.events: list[tuple[str, ProgressEvent]] = []
        self._lock = threading.Lock()

    def _add(self, name: str, event: ProgressEvent) -> None:
        with self._lock:
            self.events.append((name, event))

    def started(self, event):
        self._add("started", event)

    def bytes_done(self, event):
        self._add("bytes", event)

    def skipped(self, event):
        self._add("skipped", event)

    def mounted(self, event):
        self._add("mounted", event)

    def finished(self, event):
        self._add("finished", event)

    def failed(self, event):
        self._add("failed", event)

    def names(self, unit_id: str) -> list[str]:
        return [n for n, e in self.events if e.unit_id == unit_id]


def target_has(client: FakeClient, repo: str, image) -> bool:
    r = client.repo(repo)
    return all(m.digest in r.manifests for m in image.all_manifests()) and all(
        d in r.blobs for d in image.all_blobs())


def test_copy_image_copies_everything_and_reports_counts():
    client = FakeClient()
    idx = build_index(layers=2, layer_size=5000)
    load(client, SRC, idx, "v1")
    rec = Recorder()
    result = copy_image(client, R(SRC + ":v1"), R(TGT + ":v1"), progress=rec)
    assert target_has(client, TGT, idx)
    assert client.repo(TGT).tags["v1"] == idx.digest
    assert client.repo(TGT).manifests[idx.digest][1] == idx.manifest
    blobs = idx.all_blobs()
    assert result.blobs_copied == len(blobs)
    assert result.bytes_copied == sum(len(b) for b in blobs.values())
    assert result.manifests == 3 and result.blobs_skipped == 0 and not result.skipped
    # every unit: started first, then exactly one terminal event
    for uid in {e.unit_id for _, e in rec.events}:
        names = rec.names(uid)
        assert names[0] == "started"
        terminal = [n for n in names if n in ("skipped", "mounted", "finished", "failed")]
        assert terminal == [names[-1]] == ["finished"]


def test_rerun_transfers_nothing():
    client = FakeClient()
    idx = build_index()
    load(client, SRC, idx, "v1")
    copy_image(client, R(SRC + ":v1"), R(TGT + ":v1"))
    puts = client.count("blob_put") + client.count("manifest_put")
    result = copy_image(client, R(SRC + ":v1"), R(TGT + ":v1"))
    assert result.skipped and result.bytes_copied == 0 and result.manifests == 0
    assert client.count("blob_put") + client.count("manifest_put") == puts


def test_force_recursive_repairs_a_missing_layer():
    client = FakeClient()
    img = build_image(layers=3)
    load(client, SRC, img, "v1")
    copy_image(client, R(SRC + ":v1"), R(TGT + ":v1"))
    lost = img.layers[1]["digest"]
    del client.repo(TGT).blobs[lost]
    assert copy_image(client, R(SRC + ":v1"), R(TGT + ":v1")).skipped  # not noticed
    result = copy_image(client, R(SRC + ":v1"), R(TGT + ":v1"),
                        CopyOptions(force_recursive=True))
    assert lost in client.repo(TGT).blobs
    assert result.blobs_copied == 1 and result.blobs_skipped == len(img.blobs) - 1
    assert result.manifests == 1


def test_shared_blobs_transferred_once():
    client = FakeClient()
    base = build_image(seed=3, layers=2)
    idx = build_index(["linux/amd64", "linux/arm64", "linux/s390x"],
                      shared_layers=base.layers_with_data())
    load(client, SRC, idx, "v1")
    copy_image(client, R(SRC + ":v1"), R(TGT + ":v1"))
    for layer in base.layers:
        assert client.calls[("blob_put", f"{TGT}@{layer['digest']}")] == 1


def test_same_registry_mounts_instead_of_copying():
    client = FakeClient()
    img = build_image()
    load(client, SRC, img, "v1")
    result = copy_image(client, R(SRC + ":v1"), R("src.example/other:v1"))
    assert result.blobs_mounted == len(img.blobs) and result.blobs_copied == 0
    assert client.count("blob_get") == 0


def test_corrupt_source_blob_fails_and_pushes_no_manifest():
    client = FakeClient()
    img = build_image(layers=3, layer_size=20000)
    load(client, SRC, img, "v1")
    bad = img.layers[1]["digest"]
    client.corrupt.add(bad)
    with pytest.raises(DigestMismatch) as info:
        copy_image(client, R(SRC + ":v1"), R(TGT + ":v1"))
    message = str(info.value)
    assert bad in message and "copy blob" in message
    assert SRC in message and TGT in message
    assert client.count("manifest_put") == 0
    assert bad not in client.repo(TGT).blobs


def test_cancel_mid_blob_then_rerun_finishes_the_job():
    client = FakeClient()
    img = build_image(layers=3, layer_size=64 * 1024)
    load(client, SRC, img, "v1")
    token = CancelToken()

    class StopAfterBytes(ProgressListener):
        def bytes_done(self, event):
            if event.bytes_done >= 8192:
                token.cancel("test stop")

    plan = build_plan(client, R(SRC + ":v1"), R(TGT + ":v1"))
    ctx = ExecContext(client, StopAfterBytes(), token, concurrency=1, progress_interval=0)
    with pytest.raises(CopyCancelled, match="test stop"):
        LocalExecutor().run(plan.units, ctx)
    assert client.count("manifest_put") == 0
    copied = set(client.repo(TGT).blobs)
    assert len(copied) < len(img.blobs)
    result = copy_image(client, R(SRC + ":v1"), R(TGT + ":v1"))
    assert target_has(client, TGT, img)
    assert result.blobs_skipped == len(copied)
    assert result.blobs_copied == len(img.blobs) - len(copied)


def test_deadline_stops_before_units_start():
    client = FakeClient()
    load(client, SRC, build_image(), "v1")
    with pytest.raises(CopyCancelled, match="deadline"):
        copy_image(client, R(SRC + ":v1"), R(TGT + ":v1"), cancel=CancelToken(deadline=0))
    assert client.count("manifest_head") == 0


def test_first_failure_is_raised_and_the_rest_cancelled():
    client = FakeClient()
    units = [BlobUnit(id=f"b{i}", src=f"{SRC}@{sha256(b'x%d' % i)}",
                      tgt=f"{TGT}@{sha256(b'x%d' % i)}",
                      descriptor={"mediaType": "x", "digest": sha256(b"x%d" % i), "size": 2})
             for i in range(20)]  # none exists in the source: the first GET fails
    started: list[str] = []

    class Count(ProgressListener):
        def started(self, event):
            started.append(event.unit_id)

    with pytest.raises(RegistryError) as info:
        LocalExecutor(max_workers=2).run(units, ExecContext(client, Count()))
    assert "copy blob" in str(info.value) and "b" in info.value.copy_unit
    assert len(started) <= 3  # the pool stopped starting new units


def test_local_executor_matches_sequential_run():
    a, b = FakeClient(), FakeClient()
    idx = build_index(["linux/amd64", "linux/arm64", "linux/arm/v7"], layers=3)
    for c in (a, b):
        load(c, SRC, idx, "v1")
    plan_a = build_plan(a, R(SRC + ":v1"), R(TGT + ":v1"))
    plan_b = build_plan(b, R(SRC + ":v1"), R(TGT + ":v1"))
    assert [u.to_dict() for u in plan_a.units] == [u.to_dict() for u in plan_b.units]
    res_a = LocalExecutor(max_workers=4).run(plan_a.units, ExecContext(a))
    res_b = SequentialExecutor().run(plan_b.units, ExecContext(b))
    assert [r.to_dict() for r in res_a] == [r.to_dict() for r in res_b]
    assert a.repo(TGT) == b.repo(TGT)


def test_units_are_idempotent():
    client = FakeClient()
    img = build_image()
    load(client, SRC, img, "v1")
    plan = build_plan(client, R(SRC + ":v1"), R(TGT + ":v1"))
    first = SequentialExecutor().run(plan.units, ExecContext(client))
    again = [execute_unit(client, u) for u in plan.units]
    assert {r.status for r in first} == {"copied", "pushed"}
    assert {r.status for r in again if r.kind == "blob"} == {"skipped"}
    assert client.repo(TGT).tags["v1"] == img.digest


def test_concurrent_copies_claim_each_blob_once():
    client = FakeClient()
    img = build_image(layers=4, layer_size=50000)
    load(client, SRC, img, "v1")
    errors: list[BaseException] = []

    def run(tag: str) -> None:
        try:
            copy_image(client, R(SRC + ":v1"), R(f"{TGT}:{tag}"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f"t{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for digest in img.blobs:
        assert client.calls[("blob_put", f"{TGT}@{digest}")] == 1


def test_a_blob_just_transferred_into_the_repository_is_not_looked_at_again():
    """A layer shared by the images of a mirror: once one copy sent it, the next copies'
    claims are told so (a done mark, CLAIM_DONE_TTL) and neither HEAD nor send it; a
    failed transfer leaves no mark, so the next one looks."""
    from regbot.limits import Limits

    client = FakeClient()
    client.limits = Limits.in_memory()  # the real claims (FakeLimits knows no "done")
    img = build_image(layers=1, layer_size=5000)
    load(client, SRC, img, "v1")
    plan = build_plan(client, R(SRC + ":v1"), R(TGT + ":v1"))
    blob = next(u for u in plan.units if isinstance(u, BlobUnit))
    head = ("blob_head", f"{TGT}@{blob.digest}")
    assert execute_unit(client, blob).status == "copied"
    looked = client.calls[head]
    assert execute_unit(client, blob).status == "skipped"
    assert client.calls[head] == looked  # not looked at again
    assert client.calls[("blob_put", f"{TGT}@{blob.digest}")] == 1

    # a claim that ended in an error leaves no mark: the next claimant looks
    repo_key = R(TGT + ":v1").name
    with pytest.raises(RuntimeError), client.limits.blob_claim(repo_key, blob.digest):
        raise RuntimeError("transfer failed")
    assert execute_unit(client, blob).status == "skipped"
    assert client.calls[head] == looked + 1


def test_index_refused_by_target_is_reported_with_its_error():
    client = FakeClient()
    client.strict_index = True
    idx = build_index(["linux/amd64", "linux/arm64"])
    load(client, SRC, idx, "v1")
    with pytest.raises(RegistryError) as info:
        copy_image(client, R(SRC + ":v1"), R(TGT + ":v1"),
                   CopyOptions(platforms=["linux/amd64"]))
    assert info.value.code == "MANIFEST_BLOB_UNKNOWN"
    assert "copy manifest" in str(info.value) and idx.digest in str(info.value)
    assert idx.child("linux/amd64").digest in client.repo(TGT).manifests


def test_large_manifest_read_again_at_execution():
    client = FakeClient()
    img = build_image(annotations={"big": "y" * (INLINE_MANIFEST_MAX + 1)})
    load(client, SRC, img, "v1")
    copy_image(client, R(SRC + ":v1"), R(TGT + ":v1"))
    assert client.repo(TGT).manifests[img.digest][1] == img.manifest
    assert client.calls[("manifest_get", f"{SRC}@{img.digest}")] == 1


def test_manifest_unit_with_wrong_inline_bytes_is_refused():
    client = FakeClient()
    img = build_image()
    unit = ManifestUnit(id="m", src=f"{SRC}@{img.digest}", tgt=TGT + ":v1",
                        manifest_digest=img.digest, media_type=img.media_type,
                        manifest_size=img.size, raw=img.manifest + b" ")
    with pytest.raises(DigestMismatch):
        execute_unit(client, unit)
    assert client.count("manifest_put") == 0


def test_docker_v1_layers_get_their_size_from_the_source():
    client = FakeClient()
    layer = random_blob(3000, 9)
    client.add_blob(SRC, layer)
    raw = _v1_signed([sha256(layer)])
    client.add_manifest(SRC, raw, "application/vnd.docker.distribution.manifest.v1+prettyjws",
                        "v1")
    result = copy_image(client, R(SRC + ":v1"), R(TGT + ":v1"))
    assert result.bytes_copied == 3000 and result.manifests == 1
    assert client.repo(TGT).blobs[sha256(layer)] == layer


def test_bytes_events_are_throttled():
    client = FakeClient()
    img = build_image(layers=1, layer_size=400 * 1024)  # 100 chunks in the fake
    load(client, SRC, img, "v1")
    rec = Recorder()
    plan = build_plan(client, R(SRC + ":v1"), R(TGT + ":v1"))
    start = time.monotonic()
    LocalExecutor().run(plan.units, ExecContext(client, rec, progress_interval=0.5))
    elapsed = time.monotonic() - start
    assert len([n for n, _ in rec.events if n == "bytes"]) <= 1 + elapsed / 0.5


def test_cancel_token_parents_and_deadline():
    parent = CancelToken()
    child = parent.child()
    other = CancelToken(parents=(child, None))
    assert not other.cancelled and other.remaining() is None
    child.cancel("why")
    assert other.cancelled and other.reason == "why" and not parent.cancelled
    with pytest.raises(CopyCancelled, match="doing x: why"):
        other.check("doing x")
    timed = CancelToken.with_timeout(0.05)
    assert 0 < CancelToken(parents=(timed,)).remaining() <= 0.05
    time.sleep(0.06)
    assert CancelToken(parents=(timed,)).reason == "deadline passed"


def test_replayed_results_count_like_live_events():
    from regbot.copy import AggregatingListener, UnitResult, emit_result

    client = FakeClient()
    idx = build_index()
    load(client, SRC, idx, "v1")
    client.add_blob(TGT, next(iter(idx.all_blobs().values())))  # one already there
    plan = build_plan(client, R(SRC + ":v1"), R(TGT + ":v1"))
    live = AggregatingListener()
    results = LocalExecutor().run(plan.units, ExecContext(client, live))
    replayed = AggregatingListener()
    for unit, res in zip(plan.units, results, strict=True):
        emit_result(replayed, unit, UnitResult.from_dict(res.to_dict()))
    assert replayed.result() == live.result()
    assert live.result().blobs_skipped == 1
