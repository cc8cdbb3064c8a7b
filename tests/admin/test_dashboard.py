"""The dashboard's home page: the day's and week's figures, and who is online now."""

from __future__ import annotations

import re

import ray

from actors.clients import PresenceClient
from actors.presence import presence_shard
from core.settings import Settings
from storage import bookings, dashboard
from tests.admin.conftest import Dashboard
from tests.storage.test_bookings import bookable_cleaner, make_user, request_for, tomorrow_at


def stat(page: str, title: str) -> str:
    """The value shown under a stat card's title."""
    match = re.search(re.escape(title) + r'</div>\s*<div class="h1[^"]*"[^>]*>([^<]*)<', page)
    assert match, f"no stat {title!r} on the page"
    return match.group(1).strip()


async def test_a_booking_and_a_sign_up_made_today_show_on_the_dashboard(dashboard: Dashboard,
                                                                        settings: Settings):
    # given the figures as they are
    before = await dashboard_figures()

    # when a new client signs up and books a cleaner who also just signed up
    cleaner, client = await bookable_cleaner(settings), await make_user(settings, "client")
    await bookings.create_booking(actor=client, settings=settings,
                                  request=request_for(cleaner, tomorrow_at(9)))
    page = await dashboard_page(dashboard)

    # then today's and this week's bookings and sign-ups count them (staff accounts do not count)
    after = await dashboard_figures()
    assert after.bookings_today == before.bookings_today + 1
    assert after.bookings_week == before.bookings_week + 1
    assert after.signups_today == before.signups_today + 2
    assert stat(page, "Bookings made today") == str(after.bookings_today)
    assert stat(page, "New sign-ups today") == str(after.signups_today)
    # and the charts' data is on the page, drawn by the locally served chart library
    assert "apexcharts.min.js" in page and "Bookings made, last 14 days" in page
    assert "cdn" not in page.lower()


async def test_cleaners_online_now_come_from_the_presence_shards(dashboard: Dashboard,
                                                                  settings: Settings):
    # given a verified cleaner whose app just sent a heartbeat, written through by the shards
    cleaner = await bookable_cleaner(settings)
    await PresenceClient(settings).heartbeat(str(cleaner.id), 51.5, -0.12)
    await _flush_presence(settings)

    # when staff open the dashboard
    page = await dashboard_page(dashboard)

    # then the online count is a number that includes the cleaner
    shown = stat(page, "Cleaners online now")
    assert shown.isdigit() and int(shown) >= 1, shown


def test_money_is_shown_in_major_units_with_its_currency():
    from admin.dashboard import money, percent

    assert money(123456, "GBP") == "1,234.56 GBP"
    assert money(-5, "GBP") == "-0.05 GBP"
    assert percent(None) == "no outcomes yet" and percent(0.125) == "12.5 %"


async def dashboard_figures() -> dashboard.Figures:
    return await dashboard.figures()


async def dashboard_page(board: Dashboard) -> str:
    page = await board.client.get("/admin/")
    assert page.status_code == 200, page.text
    return page.text


async def _flush_presence(settings: Settings) -> None:
    """Have every presence shard write its heartbeats to PostgreSQL now, not in a few seconds."""
    for shard in range(settings.presence_shards):
        await presence_shard(settings, shard).flush.remote()
    assert ray.is_initialized()
