"""The end-of-run summary: one row per script."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import IO

from regbot.durations import format_duration
from regbot.runner import ScriptResult

_COLUMNS = ("script", "status", "duration", "images", "blobs copied", "skipped",
            "mounted", "bytes", "tags deleted")


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{count} B"


def _row(result: ScriptResult) -> tuple[str, ...]:
    return (
        result.name,
        result.status,
        format_duration(round(result.duration, 1)),
        str(result.images_copied),
        str(result.blobs_copied),
        str(result.blobs_skipped),
        str(result.blobs_mounted),
        human_bytes(result.bytes_copied),
        str(result.tags_deleted),
    )


def render_summary(results: Sequence[ScriptResult], stream: IO[str], *, rich: bool) -> None:
    """A table on a terminal, plain `key=value` lines otherwise (easy to grep in CI logs)."""
    if rich:
        from rich.console import Console  # only a terminal gets the table
        from rich.table import Table

        table = Table(title="regbot summary")
        for column in _COLUMNS:
            table.add_column(column, justify="left" if column in ("script", "status") else "right")
        for result in results:
            style = {"ok": "green", "skipped": "yellow", "cancelled": "yellow"}.get(result.status, "red")
            row = _row(result)
            table.add_row(row[0], f"[{style}]{row[1]}[/]", *row[2:])
        Console(file=stream, force_terminal=True).print(table)
        for result in results:
            if result.error:
                stream.write(f"{result.name}: {result.error}\n")
        return
    for result in results:
        fields = " ".join(
            f"{key.replace(' ', '-')}={_quote(value)}" for key, value in zip(_COLUMNS, _row(result), strict=True)
        )
        stream.write(f"summary {fields}" + (f" error={_quote(result.error)}" if result.error else "") + "\n")


def _quote(value: str) -> str:
    return json.dumps(value) if (" " in value or '"' in value or not value) else value
