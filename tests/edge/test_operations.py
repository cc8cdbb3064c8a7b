"""Health, readiness, metrics and the OpenAPI document."""


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


def test_openapi_document_lists_the_account_endpoints_with_body_schemas(api):
    spec = api.get("/api/v1/docs/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    for path in ["/api/v1/auth/register", "/api/v1/auth/login", "/api/v1/auth/logout", "/api/v1/auth/logout-all",
                 "/api/v1/me", "/api/v1/me/tokens", "/api/v1/auth/oauth/{provider}", "/healthz", "/readyz"]:
        assert path in paths, path
    register = paths["/api/v1/auth/register"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(register["required"]) >= {"email", "password", "name", "role"}
    assert paths["/api/v1/me"]["get"]["security"] == [{"token": []}]
