"""Driving the admin in a real headless Chromium (Debian's /usr/bin/chromium) with Playwright.

The admin runs as production runs it (`spotless admin` under uvicorn) with Stripe pointed at the
local fake, so refunds go through the official SDK. Playwright never downloads a browser here:
it launches the system Chromium (`make test` installs it when missing). Each test gets a fresh
browser context (no cookies); screenshots go to tests/artifacts/, which git ignores.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright

from tests.admin.conftest import AdminProcess, Person, start_admin
from tests.fakes.stripe import API_KEY, StripeFake

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def browser_admin(services: dict[str, str], tmp_root: Path, stripe_fake: StripeFake) -> Iterator[AdminProcess]:
    process = start_admin({**services, "SPOTLESS_STRIPE_API_KEY": API_KEY,
                           "SPOTLESS_STRIPE_API_BASE": stripe_fake.url}, tmp_root)
    yield process
    process.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def chromium(chromium_path: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(chromium_path), headless=True)
        yield browser
        await browser.close()


@pytest_asyncio.fixture(loop_scope="session")
async def page(chromium: Browser, browser_admin: AdminProcess) -> AsyncIterator[Page]:
    context = await chromium.new_context(base_url=browser_admin.url, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    tab = await context.new_page()
    yield tab
    await context.close()


async def sign_in(page: Page, person: Person) -> None:
    """What staff do: open the login page, type their e-mail and password, submit."""
    await page.goto("/admin/login")
    await page.fill("input[name=username]", person.email)
    await page.fill("input[name=password]", person.password)
    await page.click("button[type=submit]")
    await page.wait_for_load_state("networkidle")


async def screenshot(page: Page, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"  # playwright makes the folder
    await page.screenshot(path=str(path), full_page=True)
    return path


async def run_row_action(page: Page, name: str, *, form: dict[str, str] | None = None) -> int:
    """On a detail page: click the row action, fill its form, confirm; returns the POST's status."""
    await page.click(f'a[data-sa-name="{name}"]')
    await page.wait_for_selector("#modal-action.show")
    for field, value in (form or {}).items():
        await page.fill(f'#modal-action [name="{field}"]', value)
    async with page.expect_response(lambda r: "row-action" in r.url and r.request.method == "POST") as info:
        await page.click("#actionSubmit")
    response = await info.value
    await page.wait_for_load_state("networkidle")
    return response.status
