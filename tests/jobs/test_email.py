"""Account e-mails: rendered from templates, sent over SMTP to a real (in-process) server."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client

from core.events import EventType
from core.ids import new_id
from jobs.email import TEMPLATES, compose, email_worker
from jobs.relay import relay_until_empty
from jobs.worker import Worker
from storage.models import FailedJob, OutboxEvent
from tests.fakes.smtp import SmtpFake
from tests.mailbox import text_of


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
