"""The image copy engine: plan the units of a copy, run them, count what was done.

    result = copy_image(client, src, tgt, CopyOptions(platforms=["linux/amd64"]))
"""

from regbot.copy.cancel import CancelToken
from regbot.copy.errors import CopyCancelled, CopyError
from regbot.copy.execute import execute_unit
from regbot.copy.executors import (
    ExecContext,
    Executor,
    LocalExecutor,
    RunTag,
    SequentialExecutor,
    topological_order,
)
from regbot.copy.image import copy_image, default_concurrency
from regbot.copy.plan import CopyOptions, Plan, build_plan
from regbot.copy.progress import (
    AggregatingListener,
    CompositeListener,
    CopyResult,
    ProgressEvent,
    ProgressListener,
    emit_result,
)
from regbot.copy.units import BlobUnit, ManifestUnit, TagUnit, Unit, UnitResult

__all__ = [
    "AggregatingListener",
    "BlobUnit",
    "CancelToken",
    "CompositeListener",
    "CopyCancelled",
    "CopyError",
    "CopyOptions",
    "CopyResult",
    "ExecContext",
    "Executor",
    "LocalExecutor",
    "ManifestUnit",
    "Plan",
    "ProgressEvent",
    "ProgressListener",
    "RunTag",
    "SequentialExecutor",
    "TagUnit",
    "Unit",
    "UnitResult",
    "build_plan",
    "copy_image",
    "default_concurrency",
    "emit_result",
    "execute_unit",
    "topological_order",
]
