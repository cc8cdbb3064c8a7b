"""Content pages over REST, public: `GET /api/v1/content?audience=` lists the published pages an
audience sees ({data, next_cursor}, no bodies), `GET /api/v1/content/{slug}` serves one with
its sanitised HTML. Thin handlers over storage.content; an unpublished page does not exist here."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext import openapi

from core.pagination import parse_limit
from edge.responses import ContentPageAnswer, ContentPagePage, json_response
from edge.validation import paged
from storage import content

bp = Blueprint("content", url_prefix="/api/v1/content")

CACHE = {"Cache-Control": "public, max-age=60"}


@bp.get("/")
@openapi.definition(summary="Published help and FAQ pages for an audience (client, cleaner, all)",
                    tag="content")
@openapi.parameter("audience", str, description="client, cleaner or all; omitted: every page")
@paged
@openapi.response(200, json_response(ContentPagePage), "one page of pages, without bodies")
async def list_pages(request: Request) -> HTTPResponse:
    pages, next_cursor = await content.list_published_pages(
        audience=request.args.get("audience") or None, cursor=request.args.get("cursor"),
        limit=parse_limit(request.args.get("limit")))
    return json({"data": pages, "next_cursor": next_cursor}, headers=CACHE)


@bp.get("/<slug:str>")
@openapi.definition(summary="One published page with its sanitised HTML body", tag="content")
@openapi.response(200, json_response(ContentPageAnswer), "the page")
async def get_page(request: Request, slug: str) -> HTTPResponse:
    page = await content.published_page(slug)
    return json({"page": content.page_json(page)}, headers=CACHE)
