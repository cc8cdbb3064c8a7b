"""A cleaner draws their service area over HTTP; bad shapes get a 422 that says what is wrong."""

from __future__ import annotations

import pytest

from storage.models import AuditLog, CleanerProfile, OutboxEvent

SQUARE = {"type": "Polygon", "coordinates": [[[-2.3, 53.4], [-2.1, 53.4], [-2.1, 53.55], [-2.3, 53.55], [-2.3, 53.4]]]}


async def test_a_cleaner_sets_reads_and_removes_their_area(api, db, make_account):
    # given a new cleaner with no profile yet
    cleaner = make_account(role="cleaner")

    # when they set an area
    response = api.put("/api/v1/cleaner/service-area", headers=cleaner.auth, json=SQUARE)

    # then it is stored with its box and size, and reading it back gives the same
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["geometry"] == SQUARE and body["bbox"] == [-2.3, 53.4, -2.1, 53.55]
    assert 200 < body["area_km2"] < 250
    assert api.get("/api/v1/cleaner/service-area", headers=cleaner.auth).json() == body
    assert await CleanerProfile.filter(user_id=cleaner.id).exists()
    assert await AuditLog.filter(entity_id=cleaner.id, action="service_area.set").exists()
    assert await OutboxEvent.filter(type="supply.service_area_changed",
                                    payload__contains={"cleaner_id": cleaner.id}).exists()

    # when they replace it with a GeoJSON Feature, the version moves on
    moved = {"type": "Feature", "properties": {}, "geometry": {**SQUARE, "coordinates": [[
        [-2.4, 53.4], [-2.1, 53.4], [-2.1, 53.55], [-2.4, 53.4]]]}}
    again = api.put("/api/v1/cleaner/service-area", headers=cleaner.auth, json=moved)
    assert again.status_code == 200 and again.json()["version"] > body["version"]

    # when they remove it, it is gone
    assert api.delete("/api/v1/cleaner/service-area", headers=cleaner.auth).status_code == 204
    assert api.get("/api/v1/cleaner/service-area", headers=cleaner.auth).status_code == 404
    assert api.delete("/api/v1/cleaner/service-area", headers=cleaner.auth).status_code == 404


@pytest.mark.parametrize(("geometry", "code"), [
    ({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}, "self_intersection"),
    ({"type": "Polygon", "coordinates": [[[0, 0], [0.1, 0], [0.1, 0.1], [0, 0.1]]]}, "unclosed_ring"),
    ({"type": "Polygon", "coordinates": [[[0, 0], [0.1, 0], [0, 0]]]}, "too_few_points"),
    ({"type": "Polygon", "coordinates": [[[0, 0], [0.1, 0], [0.1, 95], [0, 0]]]}, "coordinates_out_of_range"),
    ({"type": "Polygon", "coordinates": [[[0, 0], ["x", 0], [0.1, 0.1], [0, 0]]]}, "non_numeric_coordinates"),
    ({"type": "Polygon", "coordinates": [[[0, 0], [3, 0], [3, 3], [0, 3], [0, 0]]]}, "area_too_large"),
    ({"type": "Polygon", "coordinates": [SQUARE["coordinates"][0],
                                          [[1, 1], [1.1, 1], [1.1, 1.1], [1, 1]]]}, "hole_outside_shell"),
    ({"type": "Polygon", "coordinates": [[[179.9, 0], [-179.9, 0], [-179.9, 0.1], [179.9, 0]]]},
     "crosses_antimeridian"),
    ({"type": "Polygon", "coordinates": [[[i / 1000, (i % 2) / 1000] for i in range(2500)] + [[0, 0]]]},
     "too_many_vertices"),
    ({"type": "Point", "coordinates": [0, 0]}, "unsupported_geometry_type"),
])
def test_a_bad_area_is_a_422_naming_the_problem(api, make_account, geometry, code):
    cleaner = make_account(role="cleaner")
    response = api.put("/api/v1/cleaner/service-area", headers=cleaner.auth, json=geometry)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == code and problem["errors"][0]["field"] == "geometry"
    assert api.get("/api/v1/cleaner/service-area", headers=cleaner.auth).status_code == 404


def test_only_cleaners_have_areas(api, make_account):
    client = make_account(role="client")
    assert api.put("/api/v1/cleaner/service-area", headers=client.auth, json=SQUARE).status_code == 403
    assert api.get("/api/v1/cleaner/service-area").status_code == 401
