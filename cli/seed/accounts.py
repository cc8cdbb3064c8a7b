"""Seed step for the demo accounts, and the look-up the later steps use to find them."""

from __future__ import annotations

from collections.abc import Sequence

from cli.seed.city import (
    DEMO_ADMIN,
    DEMO_ADMIN_EMAIL,
    DEMO_CLEANERS,
    DEMO_CLIENTS,
    DEMO_PASSWORD,
    DemoPerson,
    SeedReport,
)
from core.accounts import Role
from core.errors import Conflict
from core.settings import Settings
from storage import accounts
from storage.models import User


def demo_accounts() -> list[tuple[str, DemoPerson, Role]]:
    """Every demo account as (e-mail, person, role), the admin first."""
    return [
        (DEMO_ADMIN_EMAIL, DEMO_ADMIN, Role.ADMIN),
        *((p.email, p, Role.CLIENT) for p in DEMO_CLIENTS),
        *((p.email, p, Role.CLEANER) for p in DEMO_CLEANERS),
    ]


async def users_of(people: Sequence[DemoPerson]) -> list[User]:
    """The accounts of `people`, in their order (seed_accounts has made them all)."""
    by_email = {u.email: u for u in await User.filter(email__in=[p.email for p in people])}
    return [by_email[p.email] for p in people]


async def demo_admin() -> User:
    return await User.get(email=DEMO_ADMIN_EMAIL)


async def seed_accounts(settings: Settings, report: SeedReport) -> None:
    """The admin, the clients and the cleaners; an e-mail that already exists is left alone."""
    wanted = demo_accounts()
    existing = set(await User.filter(email__in=[email for email, _, _ in wanted])
                   .values_list("email", flat=True))
    created = {role: 0 for role in Role}
    for email, person, role in wanted:
        if email in existing:
            continue
        try:
            await accounts.create_user(email=email, password=DEMO_PASSWORD, name=person.name,
                                       role=str(role), settings=settings, verified=True)
        except Conflict:  # made by a concurrent seed since we looked
            continue
        created[role] += 1
    report.add(
        f"accounts: {created[Role.ADMIN]} admin, {created[Role.CLIENT]} clients, "
        f"{created[Role.CLEANER]} cleaners created "
        f"({len(wanted) - sum(created.values())} already there)"
    )
