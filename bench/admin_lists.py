"""Benchmark: the admin's list pages with 100,000 users and 100,000 bookings.

Loads a fresh database (COPY, triggers off for the load only), starts `spotless admin` on it as
production runs it, signs in as staff, and times over HTTP each list's first page, a deep page,
a search, a filter and a sort (full page render: the SQL page, the COUNT, relations, row actions,
HTML). The baseline is measured in the same run on the same database: the plain SQL a naive list
would run for the same shape (`SELECT count(*)` plus `ORDER BY ... OFFSET ... LIMIT`), straight on
asyncpg. The target is every list page under 300 ms. Not a test.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test .venv/bin/python -m bench.admin_lists \
        [--rows 100000] [--requests 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx

from core.ids import new_id
from core.settings import get_settings
from storage.accounts import create_user
from storage.db import asyncpg_dsn, close_database, open_database
from storage.migrate import migrate
from tests.admin.conftest import Dashboard, start_admin
from tests.stack import create_database, drop_database

TARGET_MS = 300.0
PAGE_SIZE = 10
WORDS = ("amber", "birch", "cedar", "delta", "ember", "fjord", "grove", "heath", "iris", "juniper",
         "kestrel", "larch", "maple", "nettle", "olive", "poppy", "quartz", "rowan", "sorrel", "thyme")
PASSWORD = "bench-admin-password-2026"


@dataclass
class Case:
    name: str
    path: str
    params: dict[str, str]
    baseline: str  # the naive SQL for the same shape, run twice: count(*) then the page
    baseline_count: str


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def load(dsn: str, rows: int) -> dict[str, str]:
    """100k users (a fiftieth of them approved cleaners) and 100k bookings between them."""
    rng = random.Random(7)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET session_replication_role = replica")  # triggers and FKs off for the load
        now = datetime.now(UTC)
        users, cleaners, clients = [], [], []
        for i in range(rows):
            uid = new_id()
            role = "cleaner" if i % 50 == 0 else "client"
            name = f"{rng.choice(WORDS).title()} {rng.choice(WORDS).title()} {i}"
            users.append((uid, f"user{i}@bench.example", name, f"+4477{i:08d}", role,
                          now - timedelta(minutes=rows - i), now))
            (cleaners if role == "cleaner" else clients).append(uid)
        await conn.copy_records_to_table(
            "users", records=users,
            columns=["id", "email", "name", "phone", "role", "created_at", "updated_at"])
        await conn.copy_records_to_table(
            "cleaner_profiles", records=[(c, "approved", now) for c in cleaners],
            columns=["user_id", "verification_status", "verification_changed_at"])
        states = ["requested", "accepted", "completed", "completed", "completed", "cancelled", "declined"]
        bookings = []
        for i in range(rows):
            cleaner = cleaners[i % len(cleaners)]
            # Each cleaner's bookings a day apart: no overlap, whatever the state.
            starts = now + timedelta(days=(i // len(cleaners)) - 25, hours=i % 9)
            subtotal = rng.randrange(2600, 20000)
            state = states[i % len(states)]
            created = now - timedelta(minutes=rows - i)
            # The lifecycle stamps each state implies, as the booking actions would have written them.
            accepted = created if state in ("accepted", "completed") else None
            completed = starts + timedelta(hours=2) if state == "completed" else None
            cancelled = created if state == "cancelled" else None
            declined = created if state == "declined" else None
            bookings.append((new_id(), rng.choice(clients), cleaner, "standard", state,
                             starts, starts + timedelta(hours=2), subtotal, subtotal * 15 // 100,
                             subtotal // 5, subtotal + subtotal // 5,
                             f"{i} {rng.choice(WORDS).title()} Street, London", accepted, completed,
                             cancelled, "client" if cancelled else None, declined, created, now))
        await conn.copy_records_to_table("bookings", records=bookings, columns=[
            "id", "client_id", "cleaner_id", "service_id", "state", "starts_at", "ends_at",
            "subtotal_minor", "platform_fee_minor", "tax_minor", "amount_minor", "address",
            "accepted_at", "completed_at", "cancelled_at", "cancelled_by", "declined_at",
            "created_at", "updated_at"])
        await conn.execute("ANALYZE")
        some = users[rows // 3]
        return {"name_word": some[2].split()[0], "email": some[1], "cleaner": str(cleaners[7])}
    finally:
        await conn.close()


def cases(sample: dict[str, str], rows: int) -> list[Case]:
    deep = max(1, (rows // PAGE_SIZE) * 9 // 10)
    offset = (deep - 1) * PAGE_SIZE
    word = sample["name_word"]
    page = f"LIMIT {PAGE_SIZE}"
    return [
        # The same page machinery over an empty table: what rendering alone costs on this machine.
        Case("empty list (render floor)", "/admin/content-page/list", {},
             f"SELECT * FROM content_pages ORDER BY sort_order, id {page}",
             "SELECT count(*) FROM content_pages"),
        Case("users: first page", "/admin/user/list", {},
             f"SELECT * FROM users ORDER BY created_at DESC {page}", "SELECT count(*) FROM users"),
        Case("users: deep page", "/admin/user/list", {"page": str(deep)},
             f"SELECT * FROM users ORDER BY created_at DESC OFFSET {offset} {page}",
             "SELECT count(*) FROM users"),
        Case("users: search name", "/admin/user/list", {"q": word},
             f"SELECT * FROM users WHERE name ILIKE '%{word}%' OR email ILIKE '%{word}%' "
             f"OR phone ILIKE '%{word}%' ORDER BY created_at DESC {page}",
             f"SELECT count(*) FROM users WHERE name ILIKE '%{word}%' OR email ILIKE '%{word}%' "
             f"OR phone ILIKE '%{word}%'"),
        Case("users: search e-mail", "/admin/user/list", {"q": sample["email"]},
             f"SELECT * FROM users WHERE email = '{sample['email']}' ORDER BY created_at DESC {page}",
             f"SELECT count(*) FROM users WHERE email = '{sample['email']}'"),
        Case("users: sort by name", "/admin/user/list", {"sort": "name__asc"},
             f"SELECT * FROM users ORDER BY name {page}", "SELECT count(*) FROM users"),
        Case("bookings: first page", "/admin/booking/list", {},
             f"SELECT * FROM bookings ORDER BY starts_at DESC {page}", "SELECT count(*) FROM bookings"),
        Case("bookings: deep page", "/admin/booking/list", {"page": str(deep)},
             f"SELECT * FROM bookings ORDER BY starts_at DESC OFFSET {offset} {page}",
             "SELECT count(*) FROM bookings"),
        Case("bookings: search address", "/admin/booking/list", {"q": "Street, London"},
             f"SELECT * FROM bookings WHERE address ILIKE '%Street, London%' ORDER BY starts_at DESC {page}",
             "SELECT count(*) FROM bookings WHERE address ILIKE '%Street, London%'"),
        Case("bookings: filter state", "/admin/booking/list", {"filter": "state__eq=completed"},
             f"SELECT * FROM bookings WHERE state = 'completed' ORDER BY starts_at DESC {page}",
             "SELECT count(*) FROM bookings WHERE state = 'completed'"),
        Case("bookings: filter cleaner", "/admin/booking/list", {"filter": f"cleaner__eq={sample['cleaner']}"},
             f"SELECT * FROM bookings WHERE cleaner_id = '{sample['cleaner']}' ORDER BY starts_at DESC {page}",
             f"SELECT count(*) FROM bookings WHERE cleaner_id = '{sample['cleaner']}'"),
        Case("bookings: sort by price", "/admin/booking/list", {"sort": "amount_minor__desc"},
             f"SELECT * FROM bookings ORDER BY amount_minor DESC {page}", "SELECT count(*) FROM bookings"),
        # Not a list, but it reads the same 100k rows: the figures and the 14-day charts.
        Case("dashboard (home page)", "/admin/", {},
             "SELECT count(*) FILTER (WHERE state = 'completed'), sum(amount_minor) FROM bookings "
             "WHERE starts_at >= now() - interval '30 days'",
             "SELECT count(*) FROM bookings WHERE created_at >= date_trunc('week', now())"),
    ]


async def timed(n: int, call: Callable[[], Awaitable[None]]) -> list[float]:
    await call()  # warm-up: connections, caches, templates
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - t0) * 1000)
    return samples


async def run(rows: int, requests: int) -> None:
    server_url = os.environ.get("DATABASE_URL", "")
    if not server_url:
        raise SystemExit("set DATABASE_URL to a PostgreSQL server (a scratch database is made there)")
    database_url, db_name = await create_database(server_url)
    admin = None
    try:
        await migrate(database_url)
        t0 = time.perf_counter()
        sample = await load(asyncpg_dsn(database_url), rows)
        print(f"loaded {rows:,} users and {rows:,} bookings in {time.perf_counter() - t0:.1f}s")
        env = {"DATABASE_URL": database_url, "RAY_ADDRESS": "", "SPOTLESS_LOG_JSON": "true",
               "SPOTLESS_PASSWORD_HASH_TIME_COST": "1", "SPOTLESS_PASSWORD_HASH_MEMORY_KIB": "8192"}
        os.environ.update(env)
        get_settings.cache_clear()
        settings = get_settings()
        await open_database(settings)
        staff = await create_user(email="staff@bench.example", password=PASSWORD, name="Bench Staff",
                                  role="admin", settings=settings, verified=True)
        await close_database()
        admin = start_admin(env, Path(tempfile.mkdtemp(prefix="spotless-bench-")))
        baseline_conn = await asyncpg.connect(asyncpg_dsn(database_url))
        async with httpx.AsyncClient(base_url=admin.url, timeout=60) as client:
            board = Dashboard(client)
            signed_in = await board.log_in(staff.email, PASSWORD)
            assert signed_in.status_code == 303, signed_in.text
            load_avg = os.getloadavg()[0]
            print(f"{requests} requests per case after one warm-up; page size {PAGE_SIZE}; "
                  f"load average {load_avg:.1f} on {os.cpu_count()} CPUs; target p99 < {TARGET_MS:.0f} ms")
            print(f"{'list':26} {'admin p50':>10} {'p99':>8} | {'baseline p50':>12} {'p99':>8} | target")
            worst = 0.0
            for case in cases(sample, rows):
                async def page(case: Case = case) -> None:
                    response = await client.get(case.path, params={"page_size": str(PAGE_SIZE), **case.params})
                    assert response.status_code == 200, (case.name, response.status_code, response.text[:500])

                async def naive(case: Case = case) -> None:
                    await baseline_conn.fetchval(case.baseline_count)
                    await baseline_conn.fetch(case.baseline)

                admin_ms = await timed(requests, page)
                base_ms = await timed(requests, naive)
                p99 = percentile(admin_ms, 99)
                worst = max(worst, p99)
                print(f"{case.name:26} {statistics.median(admin_ms):>10.1f} {p99:>8.1f} | "
                      f"{statistics.median(base_ms):>12.1f} {percentile(base_ms, 99):>8.1f} | "
                      f"{'ok' if p99 < TARGET_MS else 'MISSED'}")
            print(f"worst admin p99 {worst:.1f} ms: target {'met' if worst < TARGET_MS else 'NOT met'}")
        await baseline_conn.close()
    finally:
        if admin is not None:
            admin.stop()
        await drop_database(server_url, db_name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(run(args.rows, args.requests))


if __name__ == "__main__":
    main()
