"""`spotless users make-admin EMAIL`, run as a process against the session's database."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from storage.models import AuditLog
from tests.conftest import register, unique_email

ROOT = Path(__file__).resolve().parents[2]


async def make_admin(services: dict[str, str], email: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "cli.main", "users", "make-admin", email], cwd=ROOT,
        env={**os.environ, **services}, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)


async def test_make_admin_promotes_an_account_and_staff_endpoints_open(api, db, services):
    # given a client account
    account = register(api)
    assert api.post(f"/api/v1/admin/users/{account.id}/suspend", headers=account.auth).status_code == 403
    # when an operator makes them an admin (the address in another case still finds them)
    done = await make_admin(services, account.email.upper())
    # then the command says so, the account's role is admin at once, and it is audited
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{account.email} is now an admin"
    assert api.get("/api/v1/me", headers=account.auth).json()["user"]["role"] == "admin"
    assert await AuditLog.filter(entity_id=account.id, action="user.made_admin").exists()


async def test_make_admin_of_an_unknown_address_fails_in_one_line(services):
    done = await make_admin(services, unique_email("nobody"))
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "no account with e-mail" in done.stderr and "Traceback" not in done.stderr
