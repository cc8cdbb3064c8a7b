"""The dashboard's home page: today's and this week's bookings, money and sign-ups, completion
and cancellation rates, cleaners online now, and the last two weeks as charts.

Figures come from storage.dashboard (SQL) and from the presence shards through AdminLinks; a
shard or cluster that cannot answer makes that one figure "unknown", never the page an error.
Charts are starlette-admin's widgets, drawn by the ApexCharts copy it serves from its own
static files: the page loads nothing from the internet.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette_admin import CustomView
from starlette_admin.widgets import (
    BaseWidget,
    Breakpoints,
    ChartWidget,
    GridWidget,
    StatWidget,
    TextWidget,
)

from admin.runtime import AdminLinks
from core.settings import Settings
from storage import dashboard

UNKNOWN = "unknown"


def money(amount_minor: int, currency: str) -> str:
    """Minor units as the amount staff read, e.g. 123456 GBP -> "1,234.56 GBP"."""
    sign = "-" if amount_minor < 0 else ""
    major, minor = divmod(abs(amount_minor), 100)
    return f"{sign}{major:,}.{minor:02d} {currency}"


def percent(rate: float | None) -> str:
    return "no outcomes yet" if rate is None else f"{rate * 100:.1f} %"


def _value(value: Any) -> Any:
    async def get(request: Request) -> Any:
        return value
    return get


class DashboardView(CustomView):
    """The admin's index page."""

    def __init__(self, settings: Settings, links: AdminLinks) -> None:
        super().__init__(menu_label="Dashboard", icon="fa fa-chart-line", path="/",
                         widget=self.widgets)
        self.settings = settings
        self.links = links

    async def widgets(self, request: Request) -> BaseWidget:
        figures = await dashboard.figures()
        online = await self.links.cleaners_online()
        currency = self.settings.payments_currency

        def stat(title: str, value: Any, description: str = "", color: str = "") -> StatWidget:
            return StatWidget(title=title, value_callback=_value(value), description=description,
                              color=color)

        stats = [
            stat("Bookings made today", figures.bookings_today,
                 f"{figures.bookings_week} this week"),
            stat("GMV today", money(figures.gmv_today_minor, currency),
                 f"{money(figures.gmv_week_minor, currency)} this week (completed bookings)"),
            stat("Platform fees today", money(figures.fees_today_minor, currency),
                 f"{money(figures.fees_week_minor, currency)} this week"),
            stat("Completion rate", percent(figures.completion_rate),
                 f"bookings started in the last {dashboard.RATE_WINDOW_DAYS} days", "success"),
            stat("Cancellation rate", percent(figures.cancellation_rate),
                 f"bookings started in the last {dashboard.RATE_WINDOW_DAYS} days", "danger"),
            stat("Cleaners online now", UNKNOWN if online is None else online,
                 self.links.ray_problem or "from the presence shards",
                 "warning" if online is None else ""),
            stat("New sign-ups today", figures.signups_today,
                 f"{figures.signups_week} this week, {figures.cleaner_signups_week} of them cleaners"),
        ]
        days = [d.day.isoformat() for d in figures.daily]
        charts = [
            ChartWidget(title=f"Bookings made, last {dashboard.CHART_DAYS} days", chart_type="bar",
                        series_callback=_value([{"name": "Bookings",
                                                 "data": [d.bookings for d in figures.daily]}]),
                        height=260, options={"xaxis": {"categories": days}}),
            ChartWidget(title=f"GMV of completed bookings ({currency}), last {dashboard.CHART_DAYS} days",
                        chart_type="line",
                        series_callback=_value([{"name": f"GMV ({currency})",
                                                 "data": [d.gmv_minor / 100 for d in figures.daily]}]),
                        height=260, options={"xaxis": {"categories": days}}),
        ]
        return GridWidget(children=[
            TextWidget(content="Figures in UTC; a week starts on Monday."),
            GridWidget(children=stats, breakpoints=Breakpoints(default=1, md=2, lg=4)),
            GridWidget(children=charts, breakpoints=Breakpoints(default=1, lg=2)),
        ])
