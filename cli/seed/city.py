"""The demo city's cast and plan: who lives where, what each cleaner offers and when they work.

Pure data and pure functions, no I/O, so every step reads the same deterministic city: the
cleaner at index i of DEMO_CLEANERS always gets the same services, schedule and area.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from core.availability import WeeklyInterval
from core.geometry import haversine_m
from core.settings import Settings

DEMO_PASSWORD = "spotless-demo-2026"
DEMO_DOMAIN = "spotless.demo"
DEMO_CITY = "London"
DEMO_CITY_CENTRE = (51.5072, -0.1276)  # (latitude, longitude), Charing Cross
DEMO_TIME_ZONE = "Europe/London"


@dataclass(frozen=True)
class DemoPerson:
    name: str
    neighbourhood: str
    home: tuple[float, float]  # (latitude, longitude)

    @property
    def email(self) -> str:
        local = ".".join(part.lower().replace("'", "") for part in self.name.split())
        return f"{local}@{DEMO_DOMAIN}"

    @property
    def first_name(self) -> str:
        return self.name.split()[0]


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


# --- what each cleaner offers ---

# Every cleaner offers a standard clean (so any demo client can book any nearby cleaner);
# the extras rotate so that the catalogue's other services all have someone.
EXTRA_SERVICES = (("deep",), ("oven", "carpet"), ("end_of_tenancy",), ("deep", "office", "oven"),
                  ("carpet",))
TRAVEL_BUFFERS_MINUTES = (15, 20, 30, 45)
SPECIALITIES = (
    "Known for spotless kitchens and a calm, careful pace.",
    "Brings eco-friendly products on request and loves a good before-and-after.",
    "Happy with pets at home and used to busy family flats.",
    "Trained in end-of-tenancy standards; landlords and letting agents are regulars.",
    "Fast, thorough and always on time; key-safe and concierge pick-ups are fine.",
)


def offered_service_ids(index: int) -> list[str]:
    """Two to four catalogue ids for the cleaner at `index`."""
    return ["standard", *EXTRA_SERVICES[index % len(EXTRA_SERVICES)]]


def hourly_rate_minor(base_price_minor: int, index: int, *, floor_minor: int,
                      ceiling_minor: int) -> int:
    """The catalogue's base rate plus up to £4 for experience, kept within the allowed band."""
    return min(max(base_price_minor + (index % 5) * 100, floor_minor), ceiling_minor)


def bio_of(cleaner: DemoPerson, index: int) -> str:
    years = 2 + index % 9
    return (f"{cleaner.first_name} has been cleaning homes around {cleaner.neighbourhood} for "
            f"{years} years. {SPECIALITIES[index % len(SPECIALITIES)]}")


def travel_buffer_minutes(index: int) -> int:
    return TRAVEL_BUFFERS_MINUTES[index % len(TRAVEL_BUFFERS_MINUTES)]


# --- when each cleaner works (local time, Europe/London) ---


def _days(weekdays: tuple[int, ...], start: str, end: str) -> list[WeeklyInterval]:
    def minute(hhmm: str) -> int:
        hours, minutes = hhmm.split(":")
        return int(hours) * 60 + int(minutes)

    return [WeeklyInterval(day, minute(start), minute(end)) for day in weekdays]


WEEKDAYS = (0, 1, 2, 3, 4)
SCHEDULES = (
    _days(WEEKDAYS, "08:00", "18:00"),
    [*_days(WEEKDAYS, "09:00", "17:00"), *_days((5,), "09:00", "14:00")],
    _days((1, 2, 3, 4, 5), "08:00", "16:00"),
    [*_days((0, 2, 4), "07:30", "15:30"), *_days((3,), "12:00", "20:00")],
)


def schedule_of(index: int) -> list[WeeklyInterval]:
    return SCHEDULES[index % len(SCHEDULES)]


# --- where each cleaner works ---

AREA_VERTICES = 24
KM_PER_DEGREE_LATITUDE = 111.32


def area_radius_km(index: int) -> float:
    """4 to 7 km, so areas are 8 to 14 km across."""
    return 4.0 + index % 4


def circle_area(centre: tuple[float, float], radius_km: float) -> dict[str, object]:
    """A GeoJSON Polygon approximating a circle: AREA_VERTICES corners, counter-clockwise."""
    lat, lng = centre
    lat_step = radius_km / KM_PER_DEGREE_LATITUDE
    lng_step = radius_km / (KM_PER_DEGREE_LATITUDE * math.cos(math.radians(lat)))
    ring = []
    for k in range(AREA_VERTICES):
        angle = 2 * math.pi * k / AREA_VERTICES
        ring.append([round(lng + lng_step * math.cos(angle), 6), round(lat + lat_step * math.sin(angle), 6)])
    ring.append(ring[0])
    return {"type": "Polygon", "coordinates": [ring]}


def cleaners_serving(home: tuple[float, float]) -> list[int]:
    """Indexes of the cleaners whose area reaches `home`, nearest first."""
    reach = []
    for index, cleaner in enumerate(DEMO_CLEANERS):
        distance_km = float(haversine_m(*home, *cleaner.home)) / 1000
        # A little inside the radius: the polygon's edges cut the circle between its corners.
        if distance_km < area_radius_km(index) * 0.95:
            reach.append((distance_km, index))
    return [index for _, index in sorted(reach)]
