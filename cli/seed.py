"""`spotless seed --demo`: a small demo city (London) to click through on a fresh stack.

Every demo account signs in with DEMO_PASSWORD and has a verified e-mail address:
- admin@spotless.demo, the operations admin;
- ten clients and twenty cleaners, <first>.<last>@spotless.demo (see DEMO_CLIENTS and
  DEMO_CLEANERS), each with a home neighbourhood whose coordinates later steps use.

Seeding is a list of steps (SEED_STEPS), each an idempotent async function that writes through
the domain actions (never raw SQL) and reports what it did. Running the seed twice changes
nothing: a step skips what already exists. Service areas and bookings do not exist in the
schema yet; the issues that add them append their own step (for example `seed_service_areas`,
placing each cleaner's area around their home) to SEED_STEPS, after `seed_accounts`.

Never run this against production: the demo password is public.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from core.accounts import Role
from core.errors import Conflict
from core.settings import Settings
from storage import accounts
from storage.db import close_database, open_database
from storage.models import User

DEMO_PASSWORD = "spotless-demo-2026"
DEMO_DOMAIN = "spotless.demo"
DEMO_CITY = "London"
DEMO_CITY_CENTRE = (51.5072, -0.1276)  # (latitude, longitude), Charing Cross


@dataclass(frozen=True)
class DemoPerson:
    name: str
    neighbourhood: str
    home: tuple[float, float]  # (latitude, longitude)

    @property
    def email(self) -> str:
        local = ".".join(part.lower().replace("'", "") for part in self.name.split())
        return f"{local}@{DEMO_DOMAIN}"


DEMO_ADMIN = DemoPerson("Spotless Operations", "Westminster", DEMO_CITY_CENTRE)
DEMO_ADMIN_EMAIL = f"admin@{DEMO_DOMAIN}"

DEMO_CLIENTS = (
    DemoPerson("Olivia Bennett", "Islington", (51.5362, -0.1033)),
    DemoPerson("James Whitaker", "Clapham", (51.4618, -0.1384)),
    DemoPerson("Priya Sharma", "Wembley", (51.5588, -0.2817)),
    DemoPerson("Tom Hughes", "Greenwich", (51.4826, -0.0077)),
    DemoPerson("Chloe Adeyemi", "Peckham", (51.4740, -0.0690)),
    DemoPerson("Daniel Kowalski", "Ealing", (51.5130, -0.3089)),
    DemoPerson("Sophie Marsh", "Fulham", (51.4749, -0.2010)),
    DemoPerson("Mohammed Rahman", "Whitechapel", (51.5196, -0.0598)),
    DemoPerson("Emily Clarke", "Hampstead", (51.5557, -0.1780)),
    DemoPerson("Oliver Grant", "Camden Town", (51.5390, -0.1426)),
)

DEMO_CLEANERS = (
    DemoPerson("Amara Okafor", "Hackney", (51.5450, -0.0553)),
    DemoPerson("Maria Santos", "Brixton", (51.4613, -0.1156)),
    DemoPerson("Ana Popescu", "Walthamstow", (51.5838, -0.0200)),
    DemoPerson("Kwame Mensah", "Lewisham", (51.4452, -0.0209)),
    DemoPerson("Joanna Nowak", "Acton", (51.5080, -0.2720)),
    DemoPerson("Fatima Begum", "Bow", (51.5290, -0.0200)),
    DemoPerson("Lucas Oliveira", "Stockwell", (51.4723, -0.1230)),
    DemoPerson("Grace Adebayo", "Woolwich", (51.4906, 0.0690)),
    DemoPerson("Elena Ionescu", "Tottenham", (51.5975, -0.0681)),
    DemoPerson("Patrick O'Neill", "Kilburn", (51.5375, -0.1916)),
    DemoPerson("Aisha Mohamed", "Shepherd's Bush", (51.5050, -0.2240)),
    DemoPerson("Tomasz Zielinski", "Hammersmith", (51.4927, -0.2339)),
    DemoPerson("Rosa Fernandes", "Battersea", (51.4700, -0.1700)),
    DemoPerson("Samuel Osei", "Stratford", (51.5413, -0.0032)),
    DemoPerson("Nadia Haddad", "Shoreditch", (51.5264, -0.0780)),
    DemoPerson("Irina Petrova", "Wimbledon", (51.4214, -0.2064)),
    DemoPerson("Chidi Eze", "Croydon", (51.3762, -0.0982)),
    DemoPerson("Lucia Moreno", "Stoke Newington", (51.5620, -0.0740)),
    DemoPerson("Ravi Patel", "Harrow", (51.5806, -0.3420)),
    DemoPerson("Hannah Doyle", "Bermondsey", (51.4980, -0.0630)),
)


@dataclass
class SeedReport:
    """What the steps did, one line each, for the command's summary."""

    lines: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        self.lines.append(line)


SeedStep = Callable[[Settings, SeedReport], Awaitable[None]]


def demo_accounts() -> list[tuple[str, DemoPerson, Role]]:
    """Every demo account as (e-mail, person, role), the admin first."""
    return [
        (DEMO_ADMIN_EMAIL, DEMO_ADMIN, Role.ADMIN),
        *((p.email, p, Role.CLIENT) for p in DEMO_CLIENTS),
        *((p.email, p, Role.CLEANER) for p in DEMO_CLEANERS),
    ]


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


SEED_STEPS: tuple[SeedStep, ...] = (seed_accounts,)


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
        f"demo city {DEMO_CITY}:",
        *(f"  {line}" for line in report.lines),
        f"demo logins (password {DEMO_PASSWORD!r}):",
        f"  admin    {DEMO_ADMIN_EMAIL}",
        f"  client   {DEMO_CLIENTS[0].email}",
        f"  cleaner  {DEMO_CLEANERS[0].email}",
    ])
