def test_healthz(api):
    assert api.get("/healthz").json() == {"status": "ok"}
