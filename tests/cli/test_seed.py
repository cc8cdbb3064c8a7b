"""`spotless seed --demo`, run as a process against the session's database, twice."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import shapely
from tortoise import connections

from cli.seed import DEMO_ADMIN_EMAIL, DEMO_CLEANERS, DEMO_CLIENTS, DEMO_PASSWORD, run_seed_steps
from cli.seed.city import cleaners_serving
from core.settings import Settings
from storage.models import User
from storage.passwords import verify_password
from storage.search import load_candidates

ROOT = Path(__file__).resolve().parents[2]


async def seed_demo_command(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "cli.main", "seed", "--demo"], cwd=ROOT, env=env,
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
    )


async def demo_users() -> dict[str, tuple[str, str, str | None, object, object]]:
    """e-mail -> (id, role, password hash, verified at, updated at) of every demo account."""
    rows = await User.filter(email__endswith="@spotless.demo").order_by("email")
    return {u.email: (str(u.id), u.role, u.password_hash, u.email_verified_at, u.updated_at) for u in rows}


async def rows(sql: str, *params: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = await connections.get("default").execute_query_dict(sql, list(params))
    return found


DEMO_CLEANER_IDS = "SELECT id FROM users WHERE role = 'cleaner' AND email LIKE '%@spotless.demo'"


async def demo_supply() -> dict[str, list[dict[str, Any]]]:
    """Everything the seed writes beyond the accounts, as plain rows, to compare runs."""
    return {
        "profiles": await rows(
            "SELECT user_id, bio, time_zone, travel_buffer_minutes, verification_status, verified_at, "
            f"updated_at FROM cleaner_profiles WHERE user_id IN ({DEMO_CLEANER_IDS}) ORDER BY user_id"),
        "services": await rows(
            "SELECT cleaner_id, service_id, hourly_rate_minor FROM cleaner_services "
            f"WHERE cleaner_id IN ({DEMO_CLEANER_IDS}) ORDER BY cleaner_id, service_id"),
        "schedules": await rows(
            "SELECT cleaner_id, weekday, start_minute, end_minute FROM availability_rules "
            f"WHERE cleaner_id IN ({DEMO_CLEANER_IDS}) ORDER BY cleaner_id, weekday, start_minute"),
        "documents": await rows(
            "SELECT d.id, d.cleaner_id, d.status, u.email AS reviewed_by FROM verification_documents d "
            f"LEFT JOIN users u ON u.id = d.reviewed_by_id WHERE d.cleaner_id IN ({DEMO_CLEANER_IDS}) "
            "ORDER BY d.id"),
        "areas": await rows(
            "SELECT cleaner_id, geojson::text, area_km2, version, updated_at FROM service_areas "
            f"WHERE cleaner_id IN ({DEMO_CLEANER_IDS}) ORDER BY cleaner_id"),
        "bookings": await rows(
            "SELECT id, state, client_id, cleaner_id, starts_at, updated_at FROM bookings "
            f"WHERE cleaner_id IN ({DEMO_CLEANER_IDS}) ORDER BY id"),
        "writes": await rows("SELECT (SELECT count(*) FROM outbox) AS outbox, "
                             "(SELECT count(*) FROM audit_log) AS audit"),
    }


async def test_seed_demo_creates_the_demo_city_once(services: dict[str, str], db: None,
                                                    settings: Settings) -> None:
    # given a migrated database without demo accounts
    env = {**os.environ, **services}
    assert await demo_users() == {}

    # when `spotless seed --demo` runs
    first = await seed_demo_command(env)

    # then it reports the accounts it made and the demo logins
    assert first.returncode == 0, first.stderr
    assert "1 admin, 10 clients, 20 cleaners created (0 already there)" in first.stdout
    assert DEMO_ADMIN_EMAIL in first.stdout and DEMO_PASSWORD in first.stdout
    # and the admin, the clients and the cleaners exist, verified, with the demo password
    users = await demo_users()
    roles = [role for _, role, _, _, _ in users.values()]
    assert users[DEMO_ADMIN_EMAIL][1] == "admin"
    assert (roles.count("admin"), roles.count("client"), roles.count("cleaner")) == (1, 10, 20)
    assert {p.email for p in DEMO_CLIENTS} | {p.email for p in DEMO_CLEANERS} | {DEMO_ADMIN_EMAIL} == set(users)
    assert all(verified_at is not None for _, _, _, verified_at, _ in users.values())
    for email in (DEMO_ADMIN_EMAIL, DEMO_CLIENTS[0].email, DEMO_CLEANERS[-1].email):
        assert await verify_password(DEMO_PASSWORD, users[email][2], settings), email
    total = await User.all().count()
    # and every cleaner is approved by the admin, offers 2-4 services at allowed rates, works a
    # weekly schedule and has a service area
    supply = await demo_supply()
    cleaner_ids = {users[p.email][0] for p in DEMO_CLEANERS}
    assert {str(p["user_id"]) for p in supply["profiles"]
            if p["verification_status"] == "approved" and p["time_zone"] == "Europe/London"
            and p["bio"]} == cleaner_ids
    assert Counter(d["status"] for d in supply["documents"]) == {"approved": 20}
    assert {d["reviewed_by"] for d in supply["documents"]} == {DEMO_ADMIN_EMAIL}
    offered = Counter(str(s["cleaner_id"]) for s in supply["services"])
    assert set(offered) == cleaner_ids and all(2 <= n <= 4 for n in offered.values())
    assert all(settings.cleaner_min_hourly_rate_minor <= s["hourly_rate_minor"]
               <= settings.cleaner_max_hourly_rate_minor for s in supply["services"])
    assert {str(r["cleaner_id"]) for r in supply["schedules"]} == cleaner_ids
    assert {str(a["cleaner_id"]) for a in supply["areas"]} == cleaner_ids
    assert all(20 < a["area_km2"] < 160 for a in supply["areas"])  # 5 to 15 km across
    # and the clients have bookings in every state the lifecycle reaches
    assert Counter(b["state"] for b in supply["bookings"]) == {
        "requested": 4, "accepted": 4, "completed": 4, "cancelled": 2, "declined": 1}
    assert "bookings: 15 created" in first.stdout

    # when it runs a second time
    second = await seed_demo_command(env)

    # then it succeeds and changes nothing
    assert second.returncode == 0, second.stderr
    assert "0 admin, 0 clients, 0 cleaners created (31 already there)" in second.stdout
    assert "bookings: 0 created (15 demo client bookings already there)" in second.stdout
    assert await demo_users() == users
    assert await User.all().count() == total
    assert await demo_supply() == supply


async def test_seeded_cleaners_are_search_candidates_where_they_serve(services: dict[str, str], db: None,
                                                                      settings: Settings) -> None:
    # given the demo city (seeded again: a no-op after the test above) and a client's home
    await run_seed_steps(settings)
    home_lat, home_lng = DEMO_CLIENTS[0].home
    areas = await rows("SELECT cleaner_id::text AS id, geojson::text AS geojson FROM service_areas "
                       "WHERE min_lat <= $1 AND $1 <= max_lat AND min_lng <= $2 AND $2 <= max_lng",
                       home_lat, home_lng)

    # when the areas covering that home are looked up, and search loads them as candidates
    # (other tests of the session draw areas around London too; only the demo city's count here)
    demo_ids = {str(u.id) for u in await User.filter(email__in=[c.email for c in DEMO_CLEANERS])}
    covering = [a["id"] for a in areas if a["id"] in demo_ids
                and shapely.from_geojson(a["geojson"]).covers(shapely.Point(home_lng, home_lat))]
    candidates = await load_candidates(covering, service="standard", window=None)

    # then the nearby demo cleaners are there, bookable for a standard clean at their rate
    nearby = {str(u.id) for u in await User.filter(
        email__in=[DEMO_CLEANERS[i].email for i in cleaners_serving(DEMO_CLIENTS[0].home)])}
    assert nearby and nearby <= set(covering)
    assert set(candidates) == set(covering)
    assert all(c.hourly_rate_minor and c.currency == "GBP" for c in candidates.values())
