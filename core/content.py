"""Content pages' rules: which slugs, audiences and formats exist, and how a body becomes safe
HTML. Pure: no I/O. Staff write Markdown or HTML; the apps are served only the sanitised
rendering, so a page can never carry script, event handlers, styles or `javascript:` links."""

from __future__ import annotations

import re
from enum import StrEnum

import nh3
from markdown_it import MarkdownIt

from core.errors import FieldError, Invalid

SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
SLUG_MAX_CHARS = 80
TITLE_MAX_CHARS = 200
BODY_MAX_CHARS = 100_000


class Audience(StrEnum):
    CLIENT = "client"
    CLEANER = "cleaner"
    ALL = "all"


class ContentKind(StrEnum):
    FAQ = "faq"
    HELP = "help"
    LEGAL = "legal"
    PAGE = "page"


class BodyFormat(StrEnum):
    MARKDOWN = "markdown"
    HTML = "html"


class ContentError(StrEnum):
    PAGE_NOT_FOUND = "content_not_found"


# Raw HTML inside Markdown is allowed through to the sanitiser, which has the last word.
_markdown = MarkdownIt("commonmark", {"html": True, "linkify": False}).enable("table")
_TAGS = (nh3.ALLOWED_TAGS - {"area", "map", "center"}) | {"h1", "h2", "h3"}
_ATTRIBUTES = {**nh3.ALLOWED_ATTRIBUTES, "a": {"href", "hreflang", "title"}, "img": {"alt", "src", "width", "height"}}
_URL_SCHEMES = {"http", "https", "mailto", "tel"}


def render_body(body: str, body_format: BodyFormat | str) -> str:
    """The HTML served for `body`: Markdown rendered (or HTML as written), then sanitised."""
    html = _markdown.render(body) if BodyFormat(body_format) == BodyFormat.MARKDOWN else body
    return nh3.clean(html, tags=_TAGS, attributes=_ATTRIBUTES, url_schemes=_URL_SCHEMES,
                     link_rel="noopener noreferrer").strip()


def audiences_for(audience: Audience | str) -> list[str]:
    """Which stored audiences a reader of `audience` sees: their own pages and pages for all."""
    audience = Audience(audience)
    return [Audience.ALL] if audience == Audience.ALL else [audience, Audience.ALL]


def check_page(*, slug: str, title: str, body: str, audience: str, kind: str,
               body_format: str) -> tuple[str, str]:
    """Validate a page's fields (every problem at once); returns the normalised slug and title."""
    errors: list[FieldError] = []
    slug = (slug or "").strip().lower()
    title = (title or "").strip()
    if not SLUG.match(slug) or len(slug) > SLUG_MAX_CHARS:
        errors.append(FieldError("slug", f"use lowercase letters, digits and single hyphens, "
                                         f"at most {SLUG_MAX_CHARS} characters (e.g. cancel-a-booking)"))
    if not title or len(title) > TITLE_MAX_CHARS:
        errors.append(FieldError("title", f"a title of 1 to {TITLE_MAX_CHARS} characters is needed"))
    if len(body or "") > BODY_MAX_CHARS:
        errors.append(FieldError("body", f"at most {BODY_MAX_CHARS} characters"))
    for field, value, allowed in (("audience", audience, Audience), ("kind", kind, ContentKind),
                                  ("body_format", body_format, BodyFormat)):
        if value not in {str(a) for a in allowed}:
            errors.append(FieldError(field, "must be one of " + ", ".join(str(a) for a in allowed)))
    if errors:
        raise Invalid("the page is not valid", errors=errors)
    return slug, title
