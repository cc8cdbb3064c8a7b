"""`spotless seed --demo`: a small demo city (London) to click through on a fresh stack.

Every demo account signs in with DEMO_PASSWORD and has a verified e-mail address:
- admin@spotless.demo, the operations admin;
- ten clients and twenty cleaners, <first>.<last>@spotless.demo (see cli/seed/city.py), each
  with a home neighbourhood.
Each cleaner then gets a profile (bio, services with rates, travel buffer), a weekly schedule,
an identity verification approved by the admin, and a service area around their home; and
the clients book the cleaners who serve their homes, in every state a booking reaches.

Seeding is a list of steps (SEED_STEPS), each an idempotent async function that writes through
the domain actions (never raw SQL; the one write past them dates completed demo bookings back
into the past, since no action books the past: see cli/seed/bookings.py) and reports what it
did. Running the seed twice changes nothing: a step skips what already exists. It writes
PostgreSQL (and the file store) only, never Ray or NATS; events wait in the outbox for the relay.

Never run this against production: the demo password is public.
"""

from __future__ import annotations

from cli.seed.accounts import seed_accounts
from cli.seed.bookings import BOOKING_PLAN, seed_bookings
from cli.seed.city import (
    DEMO_ADMIN_EMAIL,
    DEMO_CITY,
    DEMO_CLEANERS,
    DEMO_CLIENTS,
    DEMO_PASSWORD,
    SeedReport,
    SeedStep,
)
from cli.seed.cleaners import seed_cleaner_profiles, seed_service_areas, seed_verifications
from core.settings import Settings
from storage.db import close_database, open_database

__all__ = ["DEMO_ADMIN_EMAIL", "DEMO_CLEANERS", "DEMO_CLIENTS", "DEMO_PASSWORD", "SEED_STEPS",
           "run_seed_steps", "seed_demo"]

SEED_STEPS: tuple[SeedStep, ...] = (
    seed_accounts,
    seed_cleaner_profiles,
    seed_verifications,
    seed_service_areas,
    seed_bookings,
)


async def run_seed_steps(settings: Settings) -> SeedReport:
    """Run every step on the open database; the caller opens and closes it."""
    report = SeedReport()
    for step in SEED_STEPS:
        await step(settings, report)
    return report


async def seed_demo(settings: Settings) -> str:
    """Load the demo city into the database at settings.database_url; return a summary."""
    await open_database(settings)
    try:
        report = await run_seed_steps(settings)
    finally:
        await close_database()
    return "\n".join([
        f"demo city {DEMO_CITY} (1 admin, {len(DEMO_CLIENTS)} clients, {len(DEMO_CLEANERS)} cleaners, "
        f"{len(BOOKING_PLAN)} bookings planned):",
        *(f"  {line}" for line in report.lines),
        f"demo logins (password {DEMO_PASSWORD!r}):",
        f"  admin    {DEMO_ADMIN_EMAIL}",
        f"  client   {DEMO_CLIENTS[0].email}",
        f"  cleaner  {DEMO_CLEANERS[0].email}",
    ])
