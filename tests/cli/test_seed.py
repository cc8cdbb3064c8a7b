"""`spotless seed --demo`, run as a process against the session's database, twice."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from cli.seed import DEMO_ADMIN_EMAIL, DEMO_CLEANERS, DEMO_CLIENTS, DEMO_PASSWORD
from core.settings import Settings
from storage.models import User
from storage.passwords import verify_password

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

    # when it runs a second time
    second = await seed_demo_command(env)

    # then it succeeds and changes nothing
    assert second.returncode == 0, second.stderr
    assert "0 admin, 0 clients, 0 cleaners created (31 already there)" in second.stdout
    assert await demo_users() == users
    assert await User.all().count() == total
