"""The `tag` module: tag.ls(ref [, {limit=N, last="t"}]) and tag.delete(ref)."""

from __future__ import annotations

from typing import Any

from regbot.sandbox.reference import as_reference
from regbot.sandbox.runtime import ArgumentError, Sandbox


def list_options(sb: Sandbox, value: Any, what: str) -> tuple[int | None, str | None]:
    """`{limit=N, last="x"}` as (limit, last); a limit of 0 or less means none."""
    opts = sb.options(value, what)
    limit = opts.get("limit")
    last = opts.get("last")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, float))):
        raise ArgumentError(f"{what}: option limit must be a number")
    if last is not None and not isinstance(last, str):
        raise ArgumentError(f"{what}: option last must be a string")
    for key in opts:
        if key not in ("limit", "last"):
            sb.log.warn("Ignoring unknown option", call=what, option=key)
    return (int(limit) if limit and limit > 0 else None), (last or None)


def setup(sb: Sandbox) -> None:
    def ls(ref_value: Any = None, opts: Any = None, *_: Any) -> list[str]:
        ref = as_reference(sb, ref_value, "tag.ls")
        limit, last = list_options(sb, opts, "tag.ls")
        sb.log.debug("Listing tags", repo=ref.common_name(), limit=limit, last=last)
        # the client's list as it is: a list of 10,000 tags is not copied again here
        return sb.client.tag_list(ref, limit=limit, last=last)

    def delete(ref_value: Any = None, *_: Any) -> None:
        ref = as_reference(sb, ref_value, "tag.delete")
        sb.log.info("Delete tag", image=ref.common_name(), dry_run=sb.dry_run)
        if sb.dry_run:
            return
        sb.client.tag_delete(ref)
        sb.stats.tags_deleted += 1
        sb.client.close(ref)

    sb.register_function("tag", "ls", ls)
    sb.register_function("tag", "delete", delete)
