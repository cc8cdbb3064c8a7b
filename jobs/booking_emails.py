"""Who gets which booking e-mail, and what it says: the one place that turns a booking event
(ids only) into recipients with names, addresses and local times.

Times are shown in the recipient's time zone when we know it; clients have none on record, so
they see the cleaner's zone, which is where the work happens. There are no per-user e-mail
preferences (the notification preferences are push categories): these e-mails are about a
booking the recipient is party to, so they are always sent, as account e-mails are.
A reminder is not sent for a booking that is no longer going ahead (cancelled after it was
queued) or whose start has passed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from core.bookings import BookingState
from core.clock import utcnow
from core.errors import NotFound
from core.events import EventType
from core.invoices import format_money
from core.settings import Settings
from jobs.worker import Poison
from storage import invoices
from storage.files import FileStore
from storage.models import Booking, CleanerProfile, ServiceType, User

CLIENT, CLEANER = "client", "cleaner"

# One entry per booking e-mail: its template and who receives it.
TEMPLATES: dict[str, tuple[str, tuple[str, ...]]] = {
    EventType.BOOKING_REQUESTED: ("booking_requested.j2", (CLEANER,)),
    EventType.BOOKING_ACCEPTED: ("booking_accepted.j2", (CLIENT,)),
    EventType.BOOKING_DECLINED: ("booking_declined.j2", (CLIENT,)),
    EventType.BOOKING_EXPIRED: ("booking_expired.j2", (CLIENT,)),
    EventType.BOOKING_CANCELLED: ("booking_cancelled.j2", (CLIENT, CLEANER)),
    EventType.BOOKING_REMINDER_DUE: ("booking_reminder.j2", (CLIENT, CLEANER)),
    EventType.INVOICE_ISSUED: ("booking_completed.j2", (CLIENT,)),
}

_STILL_ON = {BookingState.ACCEPTED, BookingState.ON_THE_WAY}


@dataclass(frozen=True)
class Attachment:
    filename: str
    data: bytes
    content_type: str  # "application/pdf"


@dataclass(frozen=True)
class Mail:
    part: str  # the recipient's part in the booking: client | cleaner
    template: str
    to: str
    context: dict[str, Any]
    attachments: tuple[Attachment, ...] = field(default=())


@dataclass(frozen=True)
class Person:
    name: str
    email: str
    zone: ZoneInfo | None  # None: not on record


@dataclass(frozen=True)
class BookingFacts:
    booking: Booking
    service: str
    client: Person
    cleaner: Person

    def person(self, part: str) -> Person:
        return self.client if part == CLIENT else self.cleaner

    def context_for(self, part: str, settings: Settings) -> dict[str, Any]:
        """What every booking template may say, as `part` should read it."""
        me, other = self.person(part), self.person(CLEANER if part == CLIENT else CLIENT)
        zone = me.zone or self.cleaner.zone or ZoneInfo("UTC")
        b = self.booking
        return {
            "name": me.name, "part": part, "other_name": other.name, "client_name": self.client.name,
            "cleaner_name": self.cleaner.name, "service": self.service, "hours": f"{b.hours.normalize():f}",
            "start": local_time(b.starts_at, zone), "start_date": local_date(b.starts_at, zone),
            "end": local_time(b.ends_at, zone), "address": b.address, "notes": b.notes,
            "total": format_money(b.amount_minor, b.currency),
            "booking_url": f"{settings.public_url.rstrip('/')}/bookings/{b.id}",
        }


def local_time(moment: datetime, zone: ZoneInfo) -> str:
    """`Thursday 26 November 2026 at 09:00 (GMT)`."""
    at = moment.astimezone(zone)
    return f"{at:%A} {at.day} {at:%B %Y at %H:%M} ({at.tzname()})"


def local_date(moment: datetime, zone: ZoneInfo) -> str:
    at = moment.astimezone(zone)
    return f"{at:%a} {at.day} {at:%b}"


async def booking_facts(booking_id: UUID) -> BookingFacts:
    """The booking with both parties' names, addresses and time zones."""
    booking = await Booking.get_or_none(id=booking_id)
    if booking is None:
        raise NotFound("no such booking")
    users = {u.id: u for u in await User.filter(id__in=[booking.client_id, booking.cleaner_id])}
    profile = await CleanerProfile.get_or_none(user_id=booking.cleaner_id)
    service = await ServiceType.get_or_none(id=booking.service_id)
    client, cleaner = users[booking.client_id], users[booking.cleaner_id]
    return BookingFacts(
        booking=booking, service=service.name if service else booking.service_id,
        client=Person(client.name, client.email, None),
        cleaner=Person(cleaner.name, cleaner.email, ZoneInfo(profile.time_zone) if profile else None))


def lead_text(lead_s: int) -> str:
    """`in 24 hours`, `in 1 hour`, `in 30 minutes`."""
    if lead_s % 3600 == 0:
        hours = lead_s // 3600
        return f"in {hours} hour{'s' if hours != 1 else ''}"
    minutes = max(1, round(lead_s / 60))
    return f"in {minutes} minute{'s' if minutes != 1 else ''}"


def _cancellation(facts: BookingFacts, part: str) -> dict[str, Any]:
    b = facts.booking
    by = b.cancelled_by or "admin"
    who = ("You" if by == part else
           {CLIENT: facts.client.name, CLEANER: facts.cleaner.name}.get(by, "Spotless"))
    fee = format_money(b.cancellation_fee_minor, b.currency) if b.cancellation_fee_minor > 0 else ""
    return {"cancelled_by": who, "reason": b.cancel_reason or "", "fee": fee,
            "counts_against_you": part == CLEANER and b.counts_against_cleaner}


async def mails_for(event_type: str, payload: dict[str, Any], *, settings: Settings,
                    store: FileStore) -> list[Mail]:
    """The messages a booking event sends; empty when it no longer should send any."""
    if event_type not in TEMPLATES:
        raise Poison(f"no booking e-mail for event {event_type}")
    template, parts = TEMPLATES[event_type]
    try:
        facts = await booking_facts(UUID(payload["booking_id"]))
    except (KeyError, ValueError, TypeError, NotFound) as exc:
        raise Poison(f"bad booking event: {exc!r}") from exc
    extra: dict[str, Any] = {}
    attachments: tuple[Attachment, ...] = ()
    booking = facts.booking
    if event_type == EventType.BOOKING_REMINDER_DUE:
        if booking.state not in _STILL_ON or booking.starts_at <= utcnow():
            return []
        extra["when"] = lead_text(int(payload.get("reminder_lead_s", settings.booking_reminder_lead_s)))
    elif event_type == EventType.BOOKING_DECLINED:
        extra["reason"] = booking.decline_reason or ""
    elif event_type == EventType.INVOICE_ISSUED:
        try:
            invoice = await invoices.get_invoice(UUID(payload["invoice_id"]))
        except (KeyError, ValueError, NotFound) as exc:
            raise Poison(f"bad invoice event: {exc!r}") from exc
        if invoice.file_key is None:
            raise Poison(f"invoice {invoice.number} has no PDF")
        try:
            pdf = await store.get(invoice.file_key)
        except NotFound as exc:  # attached only after it was stored: it will not appear later
            raise Poison(f"the PDF of invoice {invoice.number} is missing") from exc
        attachments = (Attachment(f"spotless-invoice-{invoice.number}.pdf", pdf, "application/pdf"),)
        extra.update(invoice_number=invoice.number, total=format_money(invoice.total_minor, invoice.currency))
    mails = []
    for part in parts:
        context = {**facts.context_for(part, settings), **extra}
        if event_type == EventType.BOOKING_CANCELLED:
            context.update(_cancellation(facts, part))
        mails.append(Mail(part, template, facts.person(part).email, context, attachments))
    return mails
