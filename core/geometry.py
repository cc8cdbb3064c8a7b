"""Service-area geometry: checking a cleaner's GeoJSON area and measuring it. Pure; no I/O.

An area is a GeoJSON Polygon or MultiPolygon in WGS84 (RFC 7946), read the way every other part
of Spotless reads it: edges are straight lines in longitude/latitude, and a point on an area's
border is inside it (shapely `intersects`, i.e. "covers").

The antimeridian is not crossed implicitly. RFC 7946 section 3.1.9 asks writers to split such a
shape at ±180°, and that is what we accept: a MultiPolygon whose parts meet the line from either
side. A ring edge that jumps more than 180° of longitude is refused with `crosses_antimeridian`
and a message saying how to split it, because reading it "the short way" silently would disagree
with the planar index every shard and PostGIS use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import shapely
import shapely.geometry
from shapely.geometry.base import BaseGeometry

from core.errors import Invalid

# Authalic (equal-area) radius of the WGS84 ellipsoid, km.
AUTHALIC_RADIUS_KM = 6371.0072


class GeometryError(StrEnum):
    NOT_GEOJSON = "not_geojson"
    UNSUPPORTED_TYPE = "unsupported_geometry_type"
    NON_NUMERIC = "non_numeric_coordinates"
    OUT_OF_RANGE = "coordinates_out_of_range"
    TOO_FEW_POINTS = "too_few_points"
    UNCLOSED_RING = "unclosed_ring"
    TOO_MANY_VERTICES = "too_many_vertices"
    CROSSES_ANTIMERIDIAN = "crosses_antimeridian"
    HOLE_OUTSIDE_SHELL = "hole_outside_shell"
    SELF_INTERSECTION = "self_intersection"
    INVALID = "invalid_geometry"
    AREA_TOO_LARGE = "area_too_large"


@dataclass(frozen=True)
class CheckedArea:
    """A service area that passed every check, with what the index and the table need."""

    geojson: dict[str, Any]
    geometry: BaseGeometry
    min_lng: float
    min_lat: float
    max_lng: float
    max_lat: float
    area_km2: float


def _fail(code: GeometryError, message: str) -> Invalid:
    return Invalid(message, field="geometry", code=code)


def _number(value: Any, where: str) -> float:
    # bool is an int in Python but never a coordinate.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(GeometryError.NON_NUMERIC, f"{where}: coordinates must be numbers, got {value!r}"[:200])
    number = float(value)
    if not math.isfinite(number):
        raise _fail(GeometryError.NON_NUMERIC, f"{where}: coordinates must be finite numbers")
    return number


def _ring(raw: Any, where: str) -> list[tuple[float, float]]:
    if not isinstance(raw, list):
        raise _fail(GeometryError.NOT_GEOJSON, f"{where} must be an array of positions")
    points: list[tuple[float, float]] = []
    for i, position in enumerate(raw):
        if not isinstance(position, list) or len(position) not in (2, 3):
            raise _fail(GeometryError.NON_NUMERIC, f"{where}[{i}] must be [longitude, latitude]")
        lng = _number(position[0], f"{where}[{i}]")
        lat = _number(position[1], f"{where}[{i}]")
        if len(position) == 3:
            _number(position[2], f"{where}[{i}]")  # altitude is allowed and ignored
        if not -180.0 <= lng <= 180.0 or not -90.0 <= lat <= 90.0:
            raise _fail(GeometryError.OUT_OF_RANGE,
                        f"{where}[{i}]: longitude must be within ±180 and latitude within ±90, "
                        f"got [{lng}, {lat}]")
        points.append((lng, lat))
    if len(points) < 4:
        raise _fail(GeometryError.TOO_FEW_POINTS,
                    f"{where} has {len(points)} positions; a ring needs at least 4 (3 corners and "
                    "the first repeated at the end)")
    if points[0] != points[-1]:
        raise _fail(GeometryError.UNCLOSED_RING, f"{where} is not closed: its last position must "
                                                 "repeat its first")
    if len(set(points)) < 3:
        raise _fail(GeometryError.TOO_FEW_POINTS, f"{where} has fewer than 3 distinct corners")
    for (lng1, _), (lng2, _) in zip(points, points[1:], strict=False):
        if abs(lng2 - lng1) > 180.0:
            raise _fail(GeometryError.CROSSES_ANTIMERIDIAN,
                        f"{where} crosses the antimeridian; split the area at ±180° into a "
                        "MultiPolygon (RFC 7946 section 3.1.9)")
    return points


def ring_area_km2(ring: list[tuple[float, float]]) -> float:
    """Area enclosed by a ring whose edges are straight in lon/lat, on the authalic sphere.

    Exact for our planar-in-degrees edges: by Green's theorem the area R²∬cosφ dφ dλ is
    R²|∮ sinφ dλ|, and along a straight lon/lat edge that integral has a closed form.
    """
    total = 0.0
    for (lng1, lat1), (lng2, lat2) in zip(ring, ring[1:], strict=False):
        dl = math.radians(lng2 - lng1)
        p1, p2 = math.radians(lat1), math.radians(lat2)
        if abs(p2 - p1) < 1e-12:
            total += dl * math.sin(p1)
        else:
            total += dl * (math.cos(p1) - math.cos(p2)) / (p2 - p1)
    return abs(total) * AUTHALIC_RADIUS_KM**2


def _polygons(geojson: Any) -> list[list[Any]]:
    if not isinstance(geojson, dict):
        raise _fail(GeometryError.NOT_GEOJSON, "the area must be a GeoJSON geometry object")
    kind = geojson.get("type")
    coordinates = geojson.get("coordinates")
    if kind not in ("Polygon", "MultiPolygon"):
        raise _fail(GeometryError.UNSUPPORTED_TYPE, "the area must be a GeoJSON Polygon or MultiPolygon")
    if not isinstance(coordinates, list) or not coordinates:
        raise _fail(GeometryError.NOT_GEOJSON, "coordinates must be a non-empty array")
    polygons = [coordinates] if kind == "Polygon" else coordinates
    for polygon in polygons:
        if not isinstance(polygon, list) or not polygon:
            raise _fail(GeometryError.NOT_GEOJSON, "each polygon must be a non-empty array of rings")
    return polygons


def check_service_area(geojson: Any, *, max_vertices: int, max_area_km2: float) -> CheckedArea:
    """Validate a GeoJSON area; raise Invalid(code=GeometryError.…) naming the first problem."""
    raw_polygons = _polygons(geojson)
    vertices = sum(len(ring) for polygon in raw_polygons for ring in polygon if isinstance(ring, list))
    if vertices > max_vertices:
        raise _fail(GeometryError.TOO_MANY_VERTICES,
                    f"the area has {vertices} positions; the limit is {max_vertices}")
    polygons: list[list[list[tuple[float, float]]]] = []
    for p, polygon in enumerate(raw_polygons):
        polygons.append([_ring(ring, f"polygon {p} ring {r}") for r, ring in enumerate(polygon)])

    shapes = []
    for p, rings in enumerate(polygons):
        shell = shapely.Polygon(rings[0])
        for r, hole in enumerate(rings[1:], start=1):
            if not shell.covers(shapely.LinearRing(hole)):
                raise _fail(GeometryError.HOLE_OUTSIDE_SHELL,
                            f"polygon {p} ring {r} is a hole that is not inside its outer ring")
        shapes.append(shapely.Polygon(rings[0], rings[1:]))
    geometry: BaseGeometry = shapes[0] if geojson["type"] == "Polygon" else shapely.MultiPolygon(shapes)
    reason = shapely.is_valid_reason(geometry)
    if reason != "Valid Geometry":
        if "Self-intersection" in reason:
            raise _fail(GeometryError.SELF_INTERSECTION,
                        f"the area's edges cross each other ({reason}); draw it without crossings "
                        "and without overlapping parts")
        if "Hole lies outside shell" in reason:
            raise _fail(GeometryError.HOLE_OUTSIDE_SHELL, f"a hole is not inside its outer ring ({reason})")
        raise _fail(GeometryError.INVALID, f"the area is not a valid polygon: {reason}")

    area_km2 = sum(
        ring_area_km2(rings[0]) - sum(ring_area_km2(hole) for hole in rings[1:]) for rings in polygons
    )
    if area_km2 > max_area_km2:
        raise _fail(GeometryError.AREA_TOO_LARGE,
                    f"the area covers {area_km2:,.0f} km²; the limit is {max_area_km2:,.0f} km²")
    min_lng, min_lat, max_lng, max_lat = geometry.bounds
    normalised = {
        "type": geojson["type"],
        "coordinates": [[[list(pt) for pt in ring] for ring in rings] for rings in polygons]
        if geojson["type"] == "MultiPolygon"
        else [[list(pt) for pt in ring] for ring in polygons[0]],
    }
    return CheckedArea(normalised, geometry, min_lng, min_lat, max_lng, max_lat, area_km2)


def area_covers(geojson: Any, *, lat: float, lng: float) -> bool:
    """Whether a stored (checked) area covers the point, its border included: the same answer
    as the spatial shards' search gives."""
    geometry = shapely.geometry.shape(geojson)
    return bool(shapely.intersects_xy(geometry, lng, lat))


def haversine_m(lat1: Any, lng1: Any, lat2: Any, lng2: Any) -> Any:
    """Great-circle distance in metres; works on floats and numpy arrays alike."""
    import numpy as np

    p1, p2 = np.radians(lat1), np.radians(lat2)
    return haversine_radians_m(p1, np.radians(lng1), np.cos(p1), p2, np.radians(lng2), np.cos(p2))


def haversine_radians_m(p1: Any, l1: Any, cos_p1: Any, p2: Any, l2: Any, cos_p2: Any) -> Any:
    """`haversine_m` from latitudes and longitudes in radians and the latitudes' cosines, for
    callers that keep those per point (the spatial shards, which measure thousands of pairs a
    batch and would otherwise work out the same cosine again for every pair)."""
    import numpy as np

    h = np.sin((p2 - p1) / 2) ** 2 + cos_p1 * cos_p2 * np.sin((l2 - l1) / 2) ** 2
    return 2 * AUTHALIC_RADIUS_KM * 1000 * np.arcsin(np.sqrt(np.minimum(h, 1.0)))

