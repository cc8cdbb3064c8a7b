"""The apps reading help and FAQ pages: published pages only, per audience, paginated."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest_asyncio
from starlette.requests import Request
from starlette_admin import RequestAction

from admin.content import ContentPageView
from storage.accounts import create_user
from storage.models import ContentPage
from tests.conftest import STRONG_PASSWORD, unique_email


@pytest_asyncio.fixture
async def apps(edge: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The REST API as the apps call it (the session's running edge)."""
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as client:
        yield client


@pytest_asyncio.fixture
async def write_page(db: None, settings: Any) -> Any:
    """Pages written as staff write them: through the admin's content view (rendered, audited)."""
    staff = await create_user(email=unique_email("staff"), password=STRONG_PASSWORD, name="Cora Content",
                              role="admin", settings=settings, verified=True)
    tag = secrets.token_hex(4)

    async def write(slug: str, **fields: Any) -> ContentPage:
        request = Request({"type": "http", "method": "POST", "path": "/admin/", "headers": [],
                           "query_string": b"", "path_params": {},
                           "state": {"staff": staff, "action": RequestAction.CREATE}})
        data = {"slug": f"{slug}-{tag}", "title": slug.replace("-", " ").title(), "kind": "faq",
                "audience": "all", "body_format": "markdown", "body": "Some **help**.",
                "published": True, "sort_order": 0, **fields}
        page: ContentPage = await ContentPageView().create(request, data)
        return page

    write.tag = tag  # type: ignore[attr-defined]
    return write


async def test_a_published_page_is_served_with_its_sanitised_html(apps: httpx.AsyncClient,
                                                                   write_page: Any):
    # given a published page whose body tried to carry a script
    page = await write_page("paying-by-card", body="Cards are charged **after** the clean.<script>x()</script>")

    # when an app asks for it by slug
    response = await apps.get(f"/api/v1/content/{page.slug}")

    # then it gets the title and the safe HTML, never the raw body
    assert response.status_code == 200, response.text
    body = response.json()["page"]
    assert body["title"] == "Paying By Card"
    assert "<strong>after</strong>" in body["body_html"] and "script" not in body["body_html"]
    assert "body" not in body


async def test_unknown_and_unpublished_slugs_are_not_found_alike(apps: httpx.AsyncClient,
                                                                  write_page: Any):
    # given a draft page
    draft = await write_page("draft-terms", published=False)

    # when an app asks for the draft, and for a slug that never existed
    responses = [await apps.get(f"/api/v1/content/{draft.slug}"),
                 await apps.get("/api/v1/content/no-such-page-at-all")]

    # then both are the same 404 problem
    for response in responses:
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == "content_not_found"


async def test_the_list_shows_an_audience_its_own_pages_and_pages_for_all(apps: httpx.AsyncClient,
                                                                           write_page: Any):
    # given pages for clients, for cleaners, for everyone, and a draft for clients
    await write_page("client-faq", audience="client", sort_order=1)
    await write_page("cleaner-faq", audience="cleaner", sort_order=2)
    await write_page("everyone-faq", audience="all", sort_order=3)
    await write_page("client-draft", audience="client", published=False)
    tag = write_page.tag

    # when the client app lists the pages for clients, one at a time
    slugs: list[str] = []
    cursor = None
    for _ in range(100):
        params = {"audience": "client", "limit": "1", **({"cursor": cursor} if cursor else {})}
        response = await apps.get("/api/v1/content", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"data", "next_cursor"}
        slugs += [p["slug"] for p in body["data"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break

    # then it sees the client and everyone pages of this test, in display order, and no draft
    mine = [s for s in slugs if s.endswith(tag)]
    assert mine == [f"client-faq-{tag}", f"everyone-faq-{tag}"]


def test_a_bad_audience_or_cursor_is_a_422(api: httpx.Client):
    # when an app asks with an audience that does not exist, or a forged cursor
    bad_audience = api.get("/api/v1/content", params={"audience": "staff"})
    bad_cursor = api.get("/api/v1/content", params={"cursor": "bm90LWEtY3Vyc29y"})

    # then each is a 422 naming the field
    assert bad_audience.status_code == 422
    assert bad_audience.json()["errors"][0]["field"] == "audience"
    assert bad_cursor.status_code == 422
    assert bad_cursor.json()["errors"][0]["field"] == "cursor"
