"""Staff writing help and FAQ pages: saved sanitised, slugs checked, every change audited."""

from __future__ import annotations

import secrets

from storage.models import AuditLog, ContentPage
from tests.admin.conftest import Dashboard, Person


def page_form(**changes: str) -> dict[str, str]:
    """The create/edit form as the browser submits it (an unticked checkbox is absent)."""
    form = {"slug": f"help-{secrets.token_hex(4)}", "title": "Cancelling a booking", "kind": "help",
            "audience": "client", "body_format": "markdown", "sort_order": "10",
            "body": "# Cancelling\n\nFree until **24 hours** before.", "published": "on", **changes}
    return {k: v for k, v in form.items() if v is not None}


async def test_a_new_page_is_stored_with_its_sanitised_rendering_and_audited(
        dashboard: Dashboard, staff: Person):
    # given a page whose body carries a script, an event handler and a javascript: link
    form = page_form(body="Hello <script>steal()</script><img src=x onerror=steal()> "
                          "[click](javascript:steal()) <a href='https://spotless.example/help'>ok</a>")

    # when staff create it
    response = await dashboard.submit_form("/admin/content-page/create", **form)

    # then it is saved, and what will be served keeps the text and safe link but no script
    assert response.status_code == 303, response.text
    page = await ContentPage.get(slug=form["slug"])
    assert page.published and page.body == form["body"]
    assert "Hello" in page.body_html and 'href="https://spotless.example/help"' in page.body_html
    for dangerous in ("<script", "onerror", 'href="javascript:'):
        assert dangerous not in page.body_html
    assert "[click](javascript:steal())" in page.body_html  # refused as a link: left as text
    # and the creation is audited with its author
    row = await AuditLog.get(entity_type="content_page", entity_id=str(page.id), action="content_page.created")
    assert str(row.actor_id) == staff.id
    assert row.after["slug"] == form["slug"]


async def test_a_bad_slug_and_a_taken_slug_are_shown_on_the_form(dashboard: Dashboard):
    # given an existing page
    first = page_form()
    assert (await dashboard.submit_form("/admin/content-page/create", **first)).status_code == 303

    # when staff try a slug with spaces, and then the taken slug
    bad = await dashboard.submit_form("/admin/content-page/create", **page_form(slug="Not A Slug!"))
    taken = await dashboard.submit_form("/admin/content-page/create", **page_form(slug=first["slug"]))

    # then both forms come back with the reason next to the slug, and nothing new is saved
    assert bad.status_code == 422 and "lowercase letters" in bad.text
    assert taken.status_code == 422 and "already has this slug" in taken.text
    assert await ContentPage.filter(slug=first["slug"]).count() == 1


async def test_editing_the_body_renders_it_again(dashboard: Dashboard):
    # given a published page
    form = page_form()
    await dashboard.submit_form("/admin/content-page/create", **form)
    page = await ContentPage.get(slug=form["slug"])

    # when staff rewrite its body
    response = await dashboard.submit_form("/admin/content-page/edit", params={"pk": str(page.id)},
                                           **{**form, "body": "Now *free* until 12 hours before."})

    # then the served HTML follows, and the audit row shows the body before and after
    assert response.status_code == 303, response.text
    saved = await ContentPage.get(id=page.id)
    assert "<em>free</em>" in saved.body_html
    row = await AuditLog.get(entity_id=str(page.id), action="content_page.updated")
    assert row.after["body"] == "Now *free* until 12 hours before."
    assert "Free until" in row.before["body"]
