"""The API's "Page" pagination (reference §0): lists newest first, `limit`, `after_id` | `before_id`,
answered as `{data, has_more, first_id, last_id}`."""

from __future__ import annotations

from collections.abc import Sequence

from sijo.errors import InvalidRequestError, shown


def select_page(
    ids: Sequence[str], limit: int, after_id: str | None, before_id: str | None, what: str
) -> tuple[list[str], bool]:
    """The ids on the requested page, and whether more lie beyond it in the direction of paging.
    `what` names the objects in errors ("unknown model id …")."""
    if after_id is not None and before_id is not None:
        raise InvalidRequestError("after_id: cannot be combined with before_id")
    start, stop = 0, len(ids)
    if after_id is not None:
        start = _position(ids, after_id, "after_id", what) + 1
    if before_id is not None:
        stop = _position(ids, before_id, "before_id", what)
        start = max(0, stop - limit)
    chunk = list(ids[start:stop][:limit])
    has_more = start + len(chunk) < len(ids) if before_id is None else start > 0
    return chunk, has_more


def _position(ids: Sequence[str], wanted: str, field: str, what: str) -> int:
    try:
        return list(ids).index(wanted)
    except ValueError:
        raise InvalidRequestError(f"{field}: unknown {what} {shown(wanted)}") from None
