"""Reading the dev mailbox the way a person reads their inbox.

Mail travels as in production (outbox → relay → JetStream → e-mail worker → .eml file); reading
first runs the relay and the e-mail worker until nothing is left, then opens the folder.
"""

from __future__ import annotations

import asyncio
import email
import re
from email.message import Message

from core.settings import Settings
from jobs.email import email_worker
from jobs.relay import relay_until_empty
from jobs.runner import connect_nats
from jobs.streams import ensure_streams
from jobs.worker import Worker


async def deliver_mail(settings: Settings) -> None:
    """Relay every pending event, then run the e-mail worker until it is idle."""
    nc = await connect_nats(settings, name="spotless-test-mailbox")
    try:
        await ensure_streams(nc.jetstream(), settings)
        await relay_until_empty(nc, settings)
        await Worker(nc, settings, email_worker(settings)).run(asyncio.Event(), until_idle_s=0.5)
    finally:
        await nc.close()


async def messages_to(settings: Settings, address: str) -> list[Message]:
    """Deliver what is waiting, then return the messages sent to `address`, oldest first."""
    await deliver_mail(settings)
    found = []
    for path in sorted(settings.mail_path.glob("*.eml")):  # named by event id: UUIDv7, time order
        message = email.message_from_bytes(path.read_bytes())
        if message["To"] == address:
            found.append(message)
    return found


def text_of(message: Message) -> str:
    """The plain-text part of a message."""
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload.decode()
    raise AssertionError("no text/plain part")


def token_in(message: Message) -> str:
    body = text_of(message)
    match = re.search(r"token=([A-Za-z0-9]+)", body)
    assert match, body
    return match[1]
