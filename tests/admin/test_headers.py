"""Every dashboard response carries the security headers: pages, errors, files, exports."""

from __future__ import annotations

import pytest

from tests.admin.conftest import Dashboard


@pytest.mark.parametrize("path", ["/admin/login", "/admin/user/list", "/admin/no-such-page", "/healthz"])
async def test_every_dashboard_response_refuses_framing_and_sniffing(browser: Dashboard, path: str):
    response = await browser.client.get(path)
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["referrer-policy"] == "same-origin"


async def test_a_signed_in_page_carries_them_too(dashboard: Dashboard):
    response = await dashboard.client.get("/admin/")
    assert response.status_code == 200
    assert response.headers["x-frame-options"] == "DENY"
    assert "script-src 'self'" in response.headers["content-security-policy"]
