"""copy_image: plan, execute, count."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from regbot.copy.cancel import CancelToken
from regbot.copy.executors import (
    DEFAULT_CONCURRENCY,
    ExecContext,
    Executor,
    LocalExecutor,
    RunTag,
)
from regbot.copy.plan import CopyOptions, build_plan
from regbot.copy.progress import (
    AggregatingListener,
    CompositeListener,
    CopyResult,
    ProgressListener,
)
from regbot.types.ref import Reference

if TYPE_CHECKING:
    from regbot.client import RegClient

log = logging.getLogger("regbot.copy")


def copy_image(
    client: RegClient,
    src: Reference,
    tgt: Reference,
    options: CopyOptions | None = None,
    *,
    executor: Executor | None = None,
    progress: ProgressListener | None = None,
    cancel: CancelToken | None = None,
    run: RunTag | None = None,
) -> CopyResult:
    """Copy `src` (an image, index, and what the options add) to `tgt`.

    `executor` defaults to a LocalExecutor sized by the hosts' concurrency. `cancel`
    (or the executor's own `cancel` token) stops planning and execution between requests
    and between chunks of a blob, raising CopyCancelled. Any failure is raised as the
    RegbotError it is, naming the unit, references and digest; nothing is pushed for a
    manifest unless all it references is in the target. `run` labels the units for
    executors that send them elsewhere.
    """
    options = options or CopyOptions()
    executor = executor or LocalExecutor()
    token = CancelToken(parents=(cancel, getattr(executor, "cancel", None)))
    concurrency = default_concurrency(client, src, tgt)
    plan = build_plan(client, src, tgt, options, concurrency=concurrency, cancel=token,
                      threads=executor.threads)
    counter = AggregatingListener()
    if plan.up_to_date:
        log.info("copy %s to %s: target already up to date", src, tgt)
        return counter.result()
    listener = CompositeListener([counter, progress])
    executor.run(plan.units, ExecContext(client, listener, token, concurrency,
                                         run=run or RunTag()))
    result = counter.result()
    log.info("copy %s to %s: %d manifests, %d blobs copied (%d bytes), %d mounted, %d present",
             src, tgt, result.manifests, result.blobs_copied, result.bytes_copied,
             result.blobs_mounted, result.blobs_skipped)
    return result


def default_concurrency(client: RegClient, src: Reference, tgt: Reference) -> int:
    """Workers for one copy: the target registry's request concurrency (the source's when
    the target is a directory), or DEFAULT_CONCURRENCY between directories."""
    for ref in (tgt, src):
        if ref.scheme == "reg":
            return max(1, client.hosts.get(ref.registry).concurrency)
    return DEFAULT_CONCURRENCY
