"""/api/v1/cleaner/service-area: a cleaner sets, reads and removes their service area.

The body of PUT is a GeoJSON Polygon or MultiPolygon (or a Feature holding one). After the
database commits, the change goes to the spatial shards so searches see it at once.
"""

from __future__ import annotations

import logging
from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, empty, json
from sanic_ext import openapi

from core.accounts import Role
from core.errors import Invalid
from core.settings import Settings
from edge.auth import authenticated, current_session
from edge.responses import ServiceArea, json_response, no_content
from edge.validation import openapi_content
from storage import service_areas
from storage.service_areas import AreaChange

bp = Blueprint("service_areas", url_prefix="/api/v1")
log = logging.getLogger("spotless.edge.service_areas")


async def tell_shards(request: Request, change: AreaChange) -> None:
    # The area is committed; a shard that misses this catches up when it next (re)loads.
    try:
        await request.app.ctx.spatial.apply(change)
    except Exception:
        log.exception("spatial shards did not take the change of %s", change.cleaner_id)


_POSITION = {"type": "array", "minItems": 2, "maxItems": 3, "items": {"type": "number"},
             "description": "[longitude, latitude], an altitude is ignored"}
_RING = {"type": "array", "minItems": 4, "items": _POSITION,
         "description": "closed: the last position repeats the first"}
_POLYGON = {"type": "object", "required": ["type", "coordinates"], "properties": {
    "type": {"enum": ["Polygon"]}, "coordinates": {"type": "array", "minItems": 1, "items": _RING}}}
_MULTIPOLYGON = {"type": "object", "required": ["type", "coordinates"], "properties": {
    "type": {"enum": ["MultiPolygon"]},
    "coordinates": {"type": "array", "minItems": 1, "items": {"type": "array", "minItems": 1, "items": _RING}}}}
AREA_BODY = {"description": "a GeoJSON Polygon or MultiPolygon (RFC 7946), or a Feature holding one",
             "oneOf": [_POLYGON, _MULTIPOLYGON, {
                 "type": "object", "required": ["type", "geometry"], "properties": {
                     "type": {"enum": ["Feature"]}, "geometry": {"oneOf": [_POLYGON, _MULTIPOLYGON]}}}]}


def _geometry(payload: Any) -> Any:
    if isinstance(payload, dict) and payload.get("type") == "Feature":
        return payload.get("geometry")
    if payload is None:
        raise Invalid("send a GeoJSON Polygon or MultiPolygon as the body", field="geometry")
    return payload


@bp.put("/cleaner/service-area")
@openapi.definition(summary="Set your service area (GeoJSON Polygon or MultiPolygon, WGS84)",
                    body=openapi_content(AREA_BODY), tag="supply")
@openapi.response(200, json_response(ServiceArea), "your area, as stored")
@authenticated(Role.CLEANER)
async def put_service_area(request: Request) -> HTTPResponse:
    settings: Settings = request.app.ctx.settings
    area, change = await service_areas.set_service_area(
        actor=current_session(request).user, geojson=_geometry(request.json), settings=settings)
    await tell_shards(request, change)
    return json(service_areas.area_public(area))


@bp.get("/cleaner/service-area")
@openapi.definition(summary="Your service area", tag="supply")
@openapi.response(200, json_response(ServiceArea), "your area")
@authenticated(Role.CLEANER)
async def get_service_area(request: Request) -> HTTPResponse:
    area = await service_areas.get_service_area(actor=current_session(request).user)
    return json(service_areas.area_public(area))


@bp.delete("/cleaner/service-area")
@openapi.definition(summary="Remove your service area (you stop appearing in search)", tag="supply")
@no_content("removed")
@authenticated(Role.CLEANER)
async def delete_service_area(request: Request) -> HTTPResponse:
    change = await service_areas.remove_service_area(actor=current_session(request).user)
    await tell_shards(request, change)
    return empty()
