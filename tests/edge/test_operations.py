"""Health, readiness, metrics and the OpenAPI document."""

import json

from openapi_spec_validator import validate


def test_readyz_names_each_dependency(api):
    response = api.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "nats": "ok", "ray": "ok"}


def test_metrics_count_requests_in_prometheus_text(api):
    api.get("/healthz")
    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'spotless_http_requests_total{method="GET",route="healthz",status="200"}' in response.text


def test_every_response_carries_a_request_id(api):
    response = api.get("/api/v1/me")
    assert response.headers["x-request-id"] == response.json()["request_id"]


def test_openapi_document_is_valid_openapi_3_1_as_its_schemas_need(api):
    # given the document as served (its schemas use JSON Schema 2020-12: {"type": "null"}, const)
    response = api.get("/api/v1/docs/openapi.json")
    spec = response.json()
    # then it says 3.1.0 and a validator of the ecosystem finds it valid as such
    assert spec["openapi"] == "3.1.0"
    validate(spec)
    # and it carries what every answer carries, and describes each of its tags
    assert response.headers["x-request-id"] and response.headers["content-type"] == "application/json"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert all(tag.get("description") for tag in spec["tags"]), spec["tags"]
    assert spec["servers"] == [{"url": "/", "description": "the host serving this document"}]
    assert any('"type": "null"' in json.dumps(op) for op in spec["paths"].values())  # what 3.0 would refuse


def test_openapi_document_lists_the_account_endpoints_with_body_schemas(api):
    spec = api.get("/api/v1/docs/openapi.json").json()
    paths = spec["paths"]
    for path in ["/api/v1/auth/register", "/api/v1/auth/login", "/api/v1/auth/logout", "/api/v1/auth/logout-all",
                 "/api/v1/me", "/api/v1/me/tokens", "/api/v1/auth/oauth/{provider}", "/healthz", "/readyz"]:
        assert path in paths, path
    register = paths["/api/v1/auth/register"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(register["required"]) >= {"email", "password", "name", "role"}
    assert paths["/api/v1/me"]["get"]["security"] == [{"token": []}]



def test_openapi_document_lists_query_parameters_and_request_bodies(api):
    paths = api.get("/api/v1/docs/openapi.json").json()["paths"]

    def query(path):
        return {p["name"] for p in paths[path]["get"].get("parameters", []) if p["in"] == "query"}

    def body(path, method="post", media_type="application/json"):
        return paths[path][method]["requestBody"]["content"][media_type]["schema"]

    search = {p["name"]: p for p in paths["/api/v1/cleaners/search"]["get"]["parameters"]}
    assert set(search) >= {"lat", "lng", "service", "start", "hours", "cursor", "limit"}
    assert search["lat"]["required"] and search["lng"]["required"]
    assert set(body("/api/v1/conversations/{raw_id}/messages")["properties"]) == {
        "client_msg_id", "body", "attachment_id"}
    assert body("/api/v1/conversations/{raw_id}/messages")["required"] == ["client_msg_id"]
    assert set(body("/api/v1/conversations/{raw_id}/read")["properties"]) == {"seq"}
    for media_type in ("application/x-www-form-urlencoded", "application/json"):
        auth = body("/api/v1/broadcasting/auth", media_type=media_type)
        assert set(auth["required"]) == {"socket_id", "channel_name"}
    area = body("/api/v1/cleaner/service-area", method="put")
    assert {kind["properties"]["type"]["enum"][0] for kind in area["oneOf"]} == {"Polygon", "MultiPolygon", "Feature"}
    upload = body("/api/v1/conversations/{raw_id}/attachments", media_type="multipart/form-data")
    assert upload["required"] == ["file"] and upload["properties"]["file"]["format"] == "binary"
    assert query("/api/v1/conversations/{raw_id}/messages") >= {"after_seq", "before_seq", "limit"}
    for path in ("/apps/{app_id}/events", "/apps/{app_id}/batch_events"):  # signed as Pusher's libraries sign
        signing = {p["name"]: p.get("required", False) for p in paths[path]["post"]["parameters"] if p["in"] == "query"}
        assert signing == {"auth_key": True, "auth_timestamp": True, "auth_version": True, "body_md5": False,
                           "auth_signature": True}
    signed_by = {"auth_key", "auth_timestamp", "auth_version", "body_md5", "auth_signature"}
    for path, own in [("/apps/{app_id}/channels", {"filter_by_prefix", "info"}),  # Pusher's channel queries
                      ("/apps/{app_id}/channels/{channel_name}", {"info"}),
                      ("/apps/{app_id}/channels/{channel_name}/users", set())]:
        assert query(path) == signed_by | own, path

