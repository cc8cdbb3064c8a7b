"""Service-area checks: every way an area can be wrong gets its own code, and areas are measured."""

from __future__ import annotations

import math

import pytest

from core.errors import Invalid
from core.geometry import GeometryError, check_service_area, haversine_m, ring_area_km2

LIMITS = {"max_vertices": 100, "max_area_km2": 5000.0}
SQUARE = [[-0.2, 51.4], [0.0, 51.4], [0.0, 51.6], [-0.2, 51.6], [-0.2, 51.4]]


def polygon(*rings: list[list[float]]) -> dict:
    return {"type": "Polygon", "coordinates": list(rings)}


def code_of(geojson: object, **limits: float) -> str:
    with pytest.raises(Invalid) as caught:
        check_service_area(geojson, **{**LIMITS, **limits})
    assert caught.value.errors[0].field == "geometry"
    return caught.value.code


def test_a_valid_polygon_is_measured_and_boxed() -> None:
    checked = check_service_area(polygon(SQUARE), **LIMITS)
    assert (checked.min_lng, checked.min_lat, checked.max_lng, checked.max_lat) == (-0.2, 51.4, 0.0, 51.6)
    # 0.2° x 0.2° at 51.5°N is about 13.9 km x 22.2 km
    assert 300 < checked.area_km2 < 315


def test_area_matches_the_spherical_formula_for_a_lat_lon_box() -> None:
    # The exact area of a lon/lat box on a sphere: R² Δλ (sin φ2 - sin φ1)
    ring = [(10.0, 40.0), (12.0, 40.0), (12.0, 43.0), (10.0, 43.0), (10.0, 40.0)]
    expected = 6371.0072**2 * math.radians(2) * (math.sin(math.radians(43)) - math.sin(math.radians(40)))
    assert ring_area_km2(ring) == pytest.approx(expected, rel=1e-9)


def test_a_hole_is_subtracted_from_the_area() -> None:
    hole = [[-0.15, 51.45], [-0.15, 51.55], [-0.05, 51.55], [-0.05, 51.45], [-0.15, 51.45]]
    whole = check_service_area(polygon(SQUARE), **LIMITS).area_km2
    holed = check_service_area(polygon(SQUARE, hole), **LIMITS).area_km2
    assert holed == pytest.approx(whole * 0.75, rel=0.01)


@pytest.mark.parametrize(("geojson", "code"), [
    (polygon([[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]), GeometryError.SELF_INTERSECTION),
    (polygon([[0, 0], [0.1, 0], [0.1, 0.1], [0, 0.1]]), GeometryError.UNCLOSED_RING),
    (polygon([[0, 0], [0.1, 0], [0, 0]]), GeometryError.TOO_FEW_POINTS),
    (polygon([[0, 0], [0.1, 0], [0.1, 0], [0, 0]]), GeometryError.TOO_FEW_POINTS),
    (polygon([[0, 0], [0.1, 0], [0.1, 91], [0, 0]]), GeometryError.OUT_OF_RANGE),
    (polygon([[0, 0], [180.5, 0], [0.1, 0.1], [0, 0]]), GeometryError.OUT_OF_RANGE),
    (polygon([[0, 0], ["0.1", 0], [0.1, 0.1], [0, 0]]), GeometryError.NON_NUMERIC),
    (polygon([[0, 0], [True, 0], [0.1, 0.1], [0, 0]]), GeometryError.NON_NUMERIC),
    (polygon([[0, 0], [None, 0], [0.1, 0.1], [0, 0]]), GeometryError.NON_NUMERIC),
    (polygon([[0, 0], [0.1], [0.1, 0.1], [0, 0]]), GeometryError.NON_NUMERIC),
    (polygon(SQUARE, [[1, 1], [1.1, 1], [1.1, 1.1], [1, 1]]), GeometryError.HOLE_OUTSIDE_SHELL),
    (polygon([[179.9, 0], [-179.9, 0], [-179.9, 0.1], [179.9, 0.1], [179.9, 0]]),
     GeometryError.CROSSES_ANTIMERIDIAN),
    ({"type": "Point", "coordinates": [0, 0]}, GeometryError.UNSUPPORTED_TYPE),
    ({"type": "Polygon", "coordinates": []}, GeometryError.NOT_GEOJSON),
    ("not an object", GeometryError.NOT_GEOJSON),
    ({"type": "MultiPolygon", "coordinates": [[SQUARE], [SQUARE]]}, GeometryError.SELF_INTERSECTION),
])
def test_each_kind_of_bad_area_is_named(geojson: object, code: str) -> None:
    assert code_of(geojson) == code


def test_non_finite_numbers_are_refused() -> None:
    assert code_of(polygon([[0, 0], [math.nan, 0], [0.1, 0.1], [0, 0]])) == GeometryError.NON_NUMERIC
    assert code_of(polygon([[0, 0], [math.inf, 0], [0.1, 0.1], [0, 0]])) == GeometryError.NON_NUMERIC


def test_too_many_vertices_is_refused_before_anything_else() -> None:
    ring = [[math.cos(a / 50 * math.tau) * 0.1, math.sin(a / 50 * math.tau) * 0.1] for a in range(50)]
    ring.append(ring[0])
    assert code_of(polygon(ring), max_vertices=50) == GeometryError.TOO_MANY_VERTICES
    check_service_area(polygon(ring), **{**LIMITS, "max_vertices": 51})


def test_an_area_over_the_limit_is_refused_with_its_size() -> None:
    big = [[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]  # about 12,300 km²
    with pytest.raises(Invalid) as caught:
        check_service_area(polygon(big), **LIMITS)
    assert caught.value.code == GeometryError.AREA_TOO_LARGE
    assert "12," in caught.value.detail


def test_an_area_split_at_the_antimeridian_is_accepted() -> None:
    east = [[179.8, -17.9], [180, -17.9], [180, -17.7], [179.8, -17.7], [179.8, -17.9]]
    west = [[-180, -17.9], [-179.9, -17.9], [-179.9, -17.7], [-180, -17.7], [-180, -17.9]]
    checked = check_service_area({"type": "MultiPolygon", "coordinates": [[east], [west]]}, **LIMITS)
    assert checked.min_lng == -180 and checked.max_lng == 180
    assert checked.area_km2 < 1000


def test_haversine_wraps_across_the_antimeridian() -> None:
    assert haversine_m(0, 179.9, 0, -179.9) == pytest.approx(22_239, rel=1e-3)
