"""Content pages (FAQ, help, legal) in the dashboard: write, preview, publish, retire.

Staff write Markdown or HTML; every save validates the page with core.content's rules and
stores the sanitised rendering next to what was written, so the API (edge/content.py) serves
only `body_html`. The generic view audits each change. A page is retired by unpublishing it
(the API then answers 404) or deleted outright; nothing else points at pages.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette_admin import (
    BooleanField,
    DateTimeField,
    EnumField,
    IntegerField,
    StringField,
    TextAreaField,
)

from admin.tortoise_view import TortoiseModelView
from core.content import Audience, BodyFormat, ContentKind, check_page, render_body
from core.errors import Invalid
from storage.models import ContentPage


def _choices(values: type[Any]) -> list[tuple[str, str]]:
    return [(str(v), str(v).title()) for v in values]


class ContentPageView(TortoiseModelView):
    audit_entity = "content_page"
    menu_label = "Content pages"
    display_name = "Content page"
    icon = "fa fa-file-alt"
    fields = [
        IntegerField("id", label="Id", read_only=True),
        StringField("slug", required=True, maxlength=80,
                    help_text="The page's address: /api/v1/content/<slug>, e.g. cancel-a-booking"),
        StringField("title", required=True, maxlength=200),
        EnumField("kind", choices=_choices(ContentKind), required=True),
        EnumField("audience", choices=_choices(Audience), required=True),
        EnumField("body_format", label="Written in", choices=_choices(BodyFormat), required=True),
        TextAreaField("body", exclude_from_list=True, rows=14),
        TextAreaField("body_html", label="Served HTML (sanitised)", read_only=True,
                      exclude_from_list=True, exclude_from_create=True, exclude_from_edit=True),
        BooleanField("published"),
        IntegerField("sort_order", label="Display order"),
        DateTimeField("updated_at", label="Changed", read_only=True),
    ]
    searchable_fields = ["slug", "title", "body"]
    sortable_fields = ["slug", "title", "kind", "audience", "published", "sort_order", "updated_at"]
    fields_default_sort = ["sort_order", "id"]

    def __init__(self) -> None:
        super().__init__(ContentPage)

    async def repr(self, obj: Any, request: Request) -> str:
        return f"{obj.title} (/{obj.slug})"

    async def clean(self, request: Request, data: dict[str, Any]) -> dict[str, Any]:
        cleaned = dict(data)
        cleaned["slug"], cleaned["title"] = check_page(
            slug=data.get("slug") or "", title=data.get("title") or "", body=data.get("body") or "",
            audience=data.get("audience") or "", kind=data.get("kind") or "",
            body_format=data.get("body_format") or "")
        taken = ContentPage.filter(slug=cleaned["slug"])
        editing = request.path_params.get("pk") or request.query_params.get("pk")
        if editing:  # the page may keep its own slug
            taken = taken.exclude(pk=self._key(editing))
        if await taken.exists():
            raise Invalid("another page already has this slug", field="slug")
        cleaned["body"] = data.get("body") or ""
        cleaned["sort_order"] = data.get("sort_order") or 0
        cleaned["published"] = bool(data.get("published"))
        return cleaned

    async def before_create(self, request: Request, data: dict[str, Any], obj: Any) -> None:
        obj.body_html = render_body(obj.body, obj.body_format)

    async def before_edit(self, request: Request, data: dict[str, Any], obj: Any) -> None:
        obj.body_html = render_body(obj.body, obj.body_format)
