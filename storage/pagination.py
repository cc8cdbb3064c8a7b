"""Keyset pages over a Tortoise query: the one place a `(timestamp, id)` cursor is read and made."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from tortoise.expressions import Q
from tortoise.models import Model
from tortoise.queryset import QuerySet

from core.errors import Invalid
from core.pagination import decode_cursor, encode_cursor

M = TypeVar("M", bound=Model)


async def time_keyset_page(query: QuerySet[M], *, field: str, cursor: str | None, limit: int,
                           newest_first: bool) -> tuple[list[M], str | None]:
    """One page of `query` ordered by (`field`, id), and the cursor of the next (None on the last).

    The cursor is the last row's (`field`, id); ties on `field` are broken by the UUID id, so no
    row is skipped or repeated when rows share a timestamp or arrive between pages.
    """
    after: Any = decode_cursor(cursor)
    if after is not None:
        try:
            at, last_id = datetime.fromisoformat(after[0]), UUID(after[1])
        except (TypeError, ValueError, IndexError, KeyError):
            raise Invalid("cursor is not one this API issued", field="cursor") from None
        op = "lt" if newest_first else "gt"
        later: dict[str, Any] = {f"{field}__{op}": at}
        tied: dict[str, Any] = {field: at, f"id__{op}": last_id}
        query = query.filter(Q(**later) | Q(**tied))
    sign = "-" if newest_first else ""
    rows = await query.order_by(f"{sign}{field}", f"{sign}id").limit(limit + 1)
    if len(rows) <= limit:
        return list(rows), None
    last = rows[limit - 1]
    return list(rows[:limit]), encode_cursor([getattr(last, field).isoformat(), str(last.pk)])
