"""Reading content pages for the apps: one published page by slug, or a page of the published
pages an audience sees. Staff write pages in the admin (admin/content.py), whose saves render
and sanitise the body through core.content; nothing here ever serves an unpublished page."""

from __future__ import annotations

from typing import Any

from core.content import Audience, ContentError, audiences_for
from core.errors import Invalid, NotFound
from core.pagination import decode_cursor, encode_cursor
from storage.models import ContentPage


def page_json(page: ContentPage, *, with_body: bool = True) -> dict[str, Any]:
    data: dict[str, Any] = {
        "slug": page.slug, "title": page.title, "kind": page.kind, "audience": page.audience,
        "updated_at": page.updated_at.isoformat(),
    }
    if with_body:
        data["body_html"] = page.body_html
    return data


async def published_page(slug: str) -> ContentPage:
    """The published page at `slug`; an unknown or unpublished one is not found, alike."""
    page = await ContentPage.get_or_none(slug=slug.strip().lower()[:80], published=True)
    if page is None:
        raise NotFound(f"there is no page {slug!r}", code=ContentError.PAGE_NOT_FOUND)
    return page


async def list_published_pages(*, audience: str | None, cursor: str | None,
                               limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """Published pages for `audience` (its own and those for all; every page when None), in
    display order, without bodies; returns the page and the next cursor (None on the last)."""
    query = ContentPage.filter(published=True)
    if audience is not None:
        if audience not in {str(a) for a in Audience}:
            raise Invalid("must be one of client, cleaner, all", field="audience")
        query = query.filter(audience__in=audiences_for(audience))
    after = decode_cursor(cursor)
    if after is not None:
        try:
            sort_order, page_id = int(after[0]), int(after[1])
        except (TypeError, ValueError, IndexError, KeyError):
            raise Invalid("cursor is not one this API issued", field="cursor") from None
        # (sort_order, id) > (after): the keyset that follows the last page's last row.
        query = query.filter(sort_order__gte=sort_order).exclude(sort_order=sort_order, id__lte=page_id)
    rows = await query.order_by("sort_order", "id").limit(limit + 1)
    page = rows[:limit]
    next_cursor = encode_cursor([page[-1].sort_order, page[-1].id]) if len(rows) > limit else None
    return [page_json(p, with_body=False) for p in page], next_cursor
