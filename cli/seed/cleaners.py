"""Seed steps for the demo cleaners' supply: profile and schedule, verification, service area.

Each cleaner goes through the same actions a cleaner (and the admin reviewing them) would use
in the app. A cleaner who already has the thing a step makes is skipped, so a second run, or a
cleaner edited by hand after seeding, is left alone.
"""

from __future__ import annotations

import io

from PIL import Image, ImageDraw

from cli.seed.accounts import demo_admin, users_of
from cli.seed.city import (
    DEMO_CLEANERS,
    DEMO_TIME_ZONE,
    DemoPerson,
    SeedReport,
    area_radius_km,
    bio_of,
    circle_area,
    hourly_rate_minor,
    offered_service_ids,
    schedule_of,
    travel_buffer_minutes,
)
from core.settings import Settings
from core.supply import OfferedService, VerificationStatus
from storage import service_areas, supply
from storage.files import file_store
from storage.models import ServiceArea


async def seed_cleaner_profiles(settings: Settings, report: SeedReport) -> None:
    """Bio, time zone, travel buffer, services with rates, and a weekly schedule."""
    catalogue = {service.id: service for service in await supply.list_services()}
    profiles = schedules = 0
    for index, cleaner in enumerate(await users_of(DEMO_CLEANERS)):
        person = DEMO_CLEANERS[index]
        if not (await supply.get_profile(actor=cleaner)).services:
            offer = [OfferedService(sid, hourly_rate_minor(
                        catalogue[sid].base_price_minor, index,
                        floor_minor=settings.cleaner_min_hourly_rate_minor,
                        ceiling_minor=settings.cleaner_max_hourly_rate_minor))
                     for sid in offered_service_ids(index) if sid in catalogue]
            await supply.update_profile(actor=cleaner, settings=settings, bio=bio_of(person, index),
                                        time_zone=DEMO_TIME_ZONE,
                                        travel_buffer_minutes=travel_buffer_minutes(index),
                                        services=offer)
            profiles += 1
        if not (await supply.get_availability(actor=cleaner)).rules:
            await supply.replace_availability(actor=cleaner, rules=schedule_of(index), exceptions=[])
            schedules += 1
    report.add(f"cleaner profiles: {profiles} set up, {schedules} weekly schedules "
               f"({len(DEMO_CLEANERS) - profiles} profiles already there)")


def identity_document(person: DemoPerson) -> bytes:
    """A small PNG standing in for a scanned identity document."""
    image = Image.new("RGB", (360, 200), (236, 240, 245))
    draw = ImageDraw.Draw(image)
    draw.rectangle((10, 10, 349, 189), outline=(40, 60, 90), width=3)
    draw.text((24, 28), "SPOTLESS DEMO - NOT A REAL DOCUMENT", fill=(40, 60, 90))
    draw.text((24, 80), person.name, fill=(0, 0, 0))
    draw.text((24, 110), f"{person.neighbourhood}, London", fill=(0, 0, 0))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


async def seed_verifications(settings: Settings, report: SeedReport) -> None:
    """Each cleaner submits a (generated) document and the demo admin approves it."""
    admin = await demo_admin()
    store = file_store(settings)
    approved = 0
    for index, cleaner in enumerate(await users_of(DEMO_CLEANERS)):
        profile, _ = await supply.get_verification(actor=cleaner)
        if profile.verification_status == VerificationStatus.APPROVED:
            continue
        if profile.verification_status != VerificationStatus.PENDING:
            await supply.submit_verification_document(
                actor=cleaner, data=identity_document(DEMO_CLEANERS[index]), settings=settings,
                store=store)
        await supply.decide_verification(cleaner_id=cleaner.id, decision="approve",
                                         reason="Demo identity document checked.", actor=admin)
        approved += 1
    report.add(f"verification: {approved} cleaners approved by {admin.email} "
               f"({len(DEMO_CLEANERS) - approved} already approved)")


async def seed_service_areas(settings: Settings, report: SeedReport) -> None:
    """A circle-ish area 8-14 km across around each cleaner's home neighbourhood.

    Only PostgreSQL is written (no Ray): a spatial shard loads every area from it on its first
    call. Shards already loaded in a running stack are not told (the edge does that after the
    action, through Ray), so seed before the first search or restart the shards."""
    cleaners = await users_of(DEMO_CLEANERS)
    has_area = {str(cid) for cid in await ServiceArea.filter(cleaner_id__in=[c.id for c in cleaners])
                .values_list("cleaner_id", flat=True)}
    placed = 0
    for index, cleaner in enumerate(cleaners):
        if str(cleaner.id) in has_area:
            continue
        area = circle_area(DEMO_CLEANERS[index].home, area_radius_km(index))
        await service_areas.set_service_area(actor=cleaner, geojson=area, settings=settings)
        placed += 1
    report.add(f"service areas: {placed} placed ({len(cleaners) - placed} already there)")
