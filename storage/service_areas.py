"""Service-area actions: set, read and remove a cleaner's one area.

Each write checks the geometry (core.geometry), then writes the area, its audit row and its
outbox event in one transaction. The cleaner's profile row is created with defaults when it is
missing. Telling the spatial shards is the caller's job after this returns (the transaction has
committed by then); the returned version orders those updates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tortoise.transactions import in_transaction

from core.accounts import Role
from core.errors import Forbidden, NotFound
from core.events import EventType
from core.geometry import check_service_area
from core.settings import Settings
from storage import audit, outbox
from storage.models import CleanerProfile, ServiceArea, User


@dataclass(frozen=True)
class AreaChange:
    """What the spatial shards need to hear about one committed change."""

    cleaner_id: str
    version: int
    geojson: str | None  # None: the area was removed
    bbox: tuple[float, float, float, float]  # min_lat, min_lng, max_lat, max_lng
    previous_bbox: tuple[float, float, float, float] | None = None  # shards that may hold the old one


def _check_cleaner(actor: User) -> None:
    if actor.role != Role.CLEANER:
        raise Forbidden("only cleaners have a service area")


def area_public(area: ServiceArea) -> dict[str, Any]:
    return {
        "geometry": area.geojson,
        "bbox": [area.min_lng, area.min_lat, area.max_lng, area.max_lat],
        "area_km2": round(area.area_km2, 3),
        "version": area.version,
        "updated_at": area.updated_at.isoformat() if area.updated_at else None,
    }


async def set_service_area(*, actor: User, geojson: Any, settings: Settings) -> tuple[ServiceArea, AreaChange]:
    """Replace the actor's service area with `geojson` (a Polygon or MultiPolygon)."""
    _check_cleaner(actor)
    checked = check_service_area(geojson, max_vertices=settings.service_area_max_vertices,
                                 max_area_km2=settings.service_area_max_km2)
    async with in_transaction() as tx:
        await CleanerProfile.get_or_create(user_id=actor.id, using_db=tx)
        before = await ServiceArea.filter(cleaner_id=actor.id).using_db(tx).select_for_update().first()
        if before is not None and before.geojson == checked.geojson:
            return before, AreaChange(str(actor.id), before.version, json.dumps(before.geojson),
                                      (before.min_lat, before.min_lng, before.max_lat, before.max_lng))
        rows = await tx.execute_query_dict(
            """INSERT INTO service_areas (cleaner_id, geojson, min_lng, min_lat, max_lng, max_lat, area_km2)
               VALUES ($1, $2::jsonb, $3, $4, $5, $6, $7)
               ON CONFLICT (cleaner_id) DO UPDATE SET
                   geojson = EXCLUDED.geojson, min_lng = EXCLUDED.min_lng, min_lat = EXCLUDED.min_lat,
                   max_lng = EXCLUDED.max_lng, max_lat = EXCLUDED.max_lat, area_km2 = EXCLUDED.area_km2,
                   version = nextval('service_area_versions'), updated_at = now()
               RETURNING version""",
            [str(actor.id), json.dumps(checked.geojson), checked.min_lng, checked.min_lat,
             checked.max_lng, checked.max_lat, checked.area_km2],
        )
        version = rows[0]["version"]
        after = {"bbox": [checked.min_lng, checked.min_lat, checked.max_lng, checked.max_lat],
                 "area_km2": round(checked.area_km2, 3), "version": version}
        await audit.record(actor_id=actor.id, action="service_area.set", entity_type="service_area",
                           entity_id=actor.id,
                           before={"bbox": [before.min_lng, before.min_lat, before.max_lng, before.max_lat],
                                   "version": before.version} if before else None,
                           after=after, using=tx)
        await outbox.enqueue(EventType.SERVICE_AREA_CHANGED,
                             {"cleaner_id": str(actor.id), **after}, using=tx)
        area = await ServiceArea.filter(cleaner_id=actor.id).using_db(tx).get()
    change = AreaChange(str(actor.id), version, json.dumps(checked.geojson),
                        (checked.min_lat, checked.min_lng, checked.max_lat, checked.max_lng),
                        (before.min_lat, before.min_lng, before.max_lat, before.max_lng) if before else None)
    return area, change


async def get_service_area(*, actor: User) -> ServiceArea:
    _check_cleaner(actor)
    area = await ServiceArea.get_or_none(cleaner_id=actor.id)
    if area is None:
        raise NotFound("you have not set a service area yet")
    return area


async def remove_service_area(*, actor: User) -> AreaChange:
    """Delete the actor's area. The returned change carries a fresh version so it orders after
    every earlier upsert in the shards."""
    _check_cleaner(actor)
    async with in_transaction() as tx:
        area = await ServiceArea.filter(cleaner_id=actor.id).using_db(tx).select_for_update().first()
        if area is None:
            raise NotFound("you have no service area")
        rows = await tx.execute_query_dict("SELECT nextval('service_area_versions') AS v")
        version = rows[0]["v"]
        await ServiceArea.filter(cleaner_id=actor.id).using_db(tx).delete()
        await audit.record(actor_id=actor.id, action="service_area.removed", entity_type="service_area",
                           entity_id=actor.id, before={"version": area.version}, using=tx)
        await outbox.enqueue(EventType.SERVICE_AREA_REMOVED,
                             {"cleaner_id": str(actor.id), "version": version}, using=tx)
    return AreaChange(str(actor.id), version, None, (area.min_lat, area.min_lng, area.max_lat, area.max_lng))
