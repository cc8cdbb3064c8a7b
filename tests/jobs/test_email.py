"""Account and booking e-mails: rendered from templates, sent over SMTP to a real (in-process)
server after travelling outbox → relay → JetStream → e-mail worker."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from nats.aio.client import Client

from core.clock import utcnow
from core.events import EventType
from core.ids import new_id
from jobs import booking_emails
from jobs.email import TEMPLATES, compose, email_worker, render
from jobs.relay import relay_until_empty
from jobs.worker import Worker
from storage import accounts, bookings, supply
from storage.models import Booking, FailedJob, OutboxEvent, User
from tests.conftest import STRONG_PASSWORD, unique_email
from tests.fakes.smtp import SmtpFake
from tests.mailbox import text_of
from tests.storage.test_bookings import make_bookable, request_for, tomorrow_at


def html_of(message) -> str:
    return next(p.get_payload(decode=True).decode() for p in message.walk()
                if p.get_content_type() == "text/html")


async def send_mail(nc: Client, settings) -> None:
    await relay_until_empty(nc, settings)
    await Worker(nc, settings, email_worker(settings)).run(asyncio.Event(), until_idle_s=1.0)


async def test_the_sign_up_email_arrives_over_smtp_with_text_and_html(
        nc: Client, settings, smtp_fake: SmtpFake, make_account):
    # given SMTP configured, and a new account
    smtp = settings.model_copy(update={"smtp_url": smtp_fake.url})
    account = make_account()
    # when the relay and the e-mail worker run
    await send_mail(nc, smtp)
    # then one message reached the SMTP server, with a text and an HTML part
    [message] = smtp_fake.to(account.email)
    event = await OutboxEvent.get(type=EventType.EMAIL_VERIFICATION_REQUESTED, payload__contains={"email": account.email})
    assert message["Subject"] == "Confirm your e-mail address"
    assert message["From"] == settings.mail_from
    assert message["Message-ID"] == f"<{event.event_id}@spotless.local>"
    token = event.payload["token"]
    assert f"{settings.public_url}/verify-email?token={token}" in text_of(message)
    assert f'<a href="{settings.public_url}/verify-email?token={token}">' in html_of(message)


async def test_a_recipient_the_server_refuses_is_dead_lettered_not_retried(
        nc: Client, settings, smtp_fake: SmtpFake, make_account):
    smtp = settings.model_copy(update={"smtp_url": smtp_fake.url})
    account = make_account()
    smtp_fake.inbox.refused.add(account.email)
    await send_mail(nc, smtp)
    event = await OutboxEvent.get(type=EventType.EMAIL_VERIFICATION_REQUESTED, payload__contains={"email": account.email})
    failed = await FailedJob.get(event_id=event.event_id)
    assert failed.deliveries == 1 and "550" in failed.error


def test_every_account_email_renders_and_html_is_escaped(settings):
    payload = {"email": "ana@example.com", "name": "<b>Ana & Bo</b>", "token": "T0KEN", "expires_at": "soon"}
    for event_type in TEMPLATES:
        message = compose(event_type, payload, settings, event_id=new_id())
        assert message["Subject"] and "\n" not in message["Subject"]
        assert "Hi <b>Ana & Bo</b>," in text_of(message)
        assert "Hi &lt;b&gt;Ana &amp; Bo&lt;/b&gt;," in html_of(message)


# --- booking e-mails: the handler looks the people up; each goes to the right party ---


async def person(settings, role: str, name: str) -> User:
    return await accounts.create_user(email=unique_email(role), password=STRONG_PASSWORD, name=name, role=role,
                                      settings=settings, verified=True)


async def two_parties(settings, *, time_zone: str = "UTC") -> tuple[User, User]:
    cleaner = await make_bookable(await person(settings, "cleaner", "Cleo Cleaner"), settings)
    await supply.update_profile(actor=cleaner, settings=settings, time_zone=time_zone)
    return cleaner, await person(settings, "client", "Ana Client")


def soon(hours: int) -> datetime:
    """A whole minute `hours` from now."""
    return (utcnow() + timedelta(hours=hours)).replace(second=0, microsecond=0)


async def test_a_request_reaches_the_cleaner_and_the_acceptance_the_client_in_the_cleaners_time(
        nc: Client, settings, smtp_fake: SmtpFake):
    # given SMTP, a cleaner working in Tokyo and a client
    smtp = settings.model_copy(update={"smtp_url": smtp_fake.url})
    cleaner, client = await two_parties(settings, time_zone="Asia/Tokyo")
    # when the client books 09:00 UTC in three days and the cleaner accepts
    start = tomorrow_at(9, days=3)
    booking = await bookings.create_booking(actor=client, settings=settings, request=request_for(cleaner, start))
    await bookings.accept_booking(booking.id, actor=cleaner, settings=settings)
    await send_mail(nc, smtp)
    # then the cleaner got the request and the client the acceptance, times in Tokyo (18:00 JST)
    [request] = smtp_fake.to(cleaner.email)
    [accepted] = smtp_fake.to(client.email)
    assert request["Subject"].startswith("New booking request: ")
    assert "Ana Client would like to book you" in text_of(request)
    assert "18:00 (JST)" in text_of(request) and "1 Test Street, London" in text_of(request)
    assert accepted["Subject"].startswith("Cleo Cleaner accepted your booking")
    assert "18:00 (JST)" in text_of(accepted) and "£48.00" in text_of(accepted)
    assert f"{settings.public_url}/bookings/{booking.id}" in text_of(accepted)
    assert f'href="{settings.public_url}/bookings/{booking.id}"' in html_of(accepted)


async def test_a_late_cancellation_tells_both_parties_who_cancelled_why_and_the_fee(
        nc: Client, settings, smtp_fake: SmtpFake):
    # given an accepted booking three hours away (inside the free-cancellation window)
    smtp = settings.model_copy(update={"smtp_url": smtp_fake.url})
    cleaner, client = await two_parties(settings)
    booking = await bookings.create_booking(actor=client, settings=settings, request=request_for(cleaner, soon(3)))
    await bookings.accept_booking(booking.id, actor=cleaner, settings=settings)
    # when the client cancels it
    await bookings.cancel_booking(booking.id, actor=client, reason="plans changed", settings=settings)
    await send_mail(nc, smtp)
    # then both are told, each in their own words, with the reason and the fee (half of £48)
    [for_client] = [m for m in smtp_fake.to(client.email) if "cancelled" in m["Subject"]]
    [for_cleaner] = [m for m in smtp_fake.to(cleaner.email) if "cancelled" in m["Subject"]]
    assert "You cancelled the booking" in text_of(for_client)
    assert "Ana Client cancelled the booking" in text_of(for_cleaner)
    for message in (for_client, for_cleaner):
        assert "Reason: plans changed" in text_of(message)
    assert "cancellation fee of £24.00 is charged" in text_of(for_client)
    assert "The client pays a late-cancellation fee of £24.00" in text_of(for_cleaner)


async def test_a_declined_and_an_expired_request_tell_the_client(nc: Client, settings, smtp_fake: SmtpFake):
    smtp = settings.model_copy(update={"smtp_url": smtp_fake.url})
    cleaner, client = await two_parties(settings)
    declined = await bookings.create_booking(actor=client, settings=settings,
                                             request=request_for(cleaner, tomorrow_at(9, days=2)))
    await bookings.decline_booking(declined.id, actor=cleaner, settings=settings, reason="on holiday")
    expired = await bookings.create_booking(actor=client, settings=settings,
                                            request=request_for(cleaner, tomorrow_at(9, days=4)))
    await bookings.expire_unanswered(settings=settings,
                                     now=utcnow() + timedelta(seconds=settings.booking_request_ttl_s + 1))
    assert (await Booking.get(id=expired.id)).state == "expired"
    await send_mail(nc, smtp)
    subjects = {m["Subject"]: m for m in smtp_fake.to(client.email)}
    [no] = [m for s, m in subjects.items() if s.endswith("was declined")]
    [late] = [m for s, m in subjects.items() if s.endswith("expired")]
    assert "Their note: on holiday" in text_of(no) and "Nothing is charged" in text_of(no)
    assert "did not answer your request" in text_of(late)


async def test_reminders_reach_both_parties_and_say_how_soon_unless_cancelled_meanwhile(
        nc: Client, settings, smtp_fake: SmtpFake):
    # given two accepted bookings, both reminded a day ahead
    smtp = settings.model_copy(update={"smtp_url": smtp_fake.url})
    cleaner, client = await two_parties(settings)
    kept, dropped = [await bookings.create_booking(actor=client, settings=settings,
                                                   request=request_for(cleaner, tomorrow_at(hour, days=3)))
                     for hour in (9, 15)]
    for booking in (kept, dropped):
        await bookings.accept_booking(booking.id, actor=cleaner, settings=settings)
    queued = await bookings.reminders_due(settings=settings, now=dropped.starts_at - timedelta(hours=23))
    assert {kept.id, dropped.id} <= set(queued)
    await bookings.reminders_due(settings=settings, now=kept.starts_at - timedelta(minutes=45))
    # when one is cancelled before the reminders go out
    await bookings.cancel_booking(dropped.id, actor=client, reason="moved house", settings=settings)
    await send_mail(nc, smtp)
    # then both parties of the other got the day and the hour reminders, and nobody one for the cancelled
    for who in (client, cleaner):
        reminders = sorted(m["Subject"] for m in smtp_fake.to(who.email) if m["Subject"].startswith("Reminder"))
        assert reminders == ["Reminder: Standard clean in 1 hour", "Reminder: Standard clean in 24 hours"], reminders
        texts = [text_of(m) for m in smtp_fake.to(who.email) if m["Subject"].startswith("Reminder")]
        assert all(kept.address in t and "09:00 (UTC)" in t for t in texts)


async def test_a_refused_party_is_dead_lettered_and_the_other_still_told(nc: Client, settings, smtp_fake: SmtpFake):
    # given a booking whose client's mailbox the server refuses
    smtp = settings.model_copy(update={"smtp_url": smtp_fake.url})
    cleaner, client = await two_parties(settings)
    booking = await bookings.create_booking(actor=client, settings=settings,
                                            request=request_for(cleaner, tomorrow_at(9, days=5)))
    smtp_fake.inbox.refused.add(client.email)
    # when the cleaner cancels it
    await bookings.cancel_booking(booking.id, actor=cleaner, reason="van broke down", settings=settings)
    await send_mail(nc, smtp)
    # then the cleaner still has the confirmation, and the event is parked once with the refusal
    [message] = [m for m in smtp_fake.to(cleaner.email) if "cancelled" in m["Subject"]]
    assert "You cancelled the booking" in text_of(message)
    event = await OutboxEvent.get(type="booking.cancelled", payload__contains={"booking_id": str(booking.id)})
    failed = await FailedJob.get(event_id=event.event_id)
    assert failed.deliveries == 1 and "550" in failed.error


def booking_context(name: str) -> dict:
    return {"name": name, "part": "client", "other_name": name, "client_name": name, "cleaner_name": name,
            "service": "Standard clean", "hours": "2", "start": "Thursday 26 November 2026 at 09:00 (GMT)",
            "start_date": "Thu 26 Nov", "end": "", "address": name, "notes": name, "total": "£48.00",
            "booking_url": "http://x/bookings/1", "when": "in 1 hour", "reason": name, "fee": "£1.00",
            "cancelled_by": name, "counts_against_you": True, "invoice_number": "2026-000001"}


def test_every_booking_email_renders_and_html_is_escaped(settings):
    for template, _ in booking_emails.TEMPLATES.values():
        for part in ("client", "cleaner"):
            context = {**booking_context("<b>Ana & Bo</b>"), "part": part}
            message = render(template, context, settings, to="ana@example.com", message_id=str(new_id()))
            assert message["Subject"] and "\n" not in message["Subject"]
            assert "Hi <b>Ana & Bo</b>," in text_of(message)
            assert "<b>Ana" not in html_of(message) and "Hi &lt;b&gt;Ana &amp; Bo&lt;/b&gt;," in html_of(message)
