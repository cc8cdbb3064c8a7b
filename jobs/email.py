"""Account e-mails (verification, password reset, password changed).

Until the jobs issue moves delivery onto JetStream and SMTP, the e-mail worker claims e-mail
events straight from the outbox (FOR UPDATE SKIP LOCKED, so several workers never send one
twice) and writes each message as an .eml file into the dev mailbox folder.
"""

from __future__ import annotations

import logging
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

from tortoise.transactions import in_transaction

from core.clock import utcnow
from core.events import EventType
from core.settings import Settings
from storage.models import OutboxEvent

log = logging.getLogger("spotless.jobs.email")

EMAIL_EVENTS = (
    EventType.EMAIL_VERIFICATION_REQUESTED,
    EventType.PASSWORD_RESET_REQUESTED,
    EventType.PASSWORD_CHANGED,
)


def compose(event_type: str, payload: dict[str, Any], settings: Settings) -> EmailMessage:
    """The message for one e-mail event."""
    base = settings.public_url.rstrip("/")
    name = payload.get("name") or "there"
    if event_type == EventType.EMAIL_VERIFICATION_REQUESTED:
        subject = "Confirm your e-mail address"
        text = (f"Hi {name},\n\nConfirm your address for Spotless with this code:\n\n"
                f"    {payload['token']}\n\nor open {base}/verify-email?token={payload['token']}\n\n"
                f"The link expires at {payload['expires_at']}.\n")
    elif event_type == EventType.PASSWORD_RESET_REQUESTED:
        subject = "Reset your Spotless password"
        text = (f"Hi {name},\n\nSomeone asked to reset your password. If it was you, use this code:\n\n"
                f"    {payload['token']}\n\nor open {base}/reset-password?token={payload['token']}\n\n"
                f"The link expires at {payload['expires_at']}. If it was not you, ignore this message.\n")
    elif event_type == EventType.PASSWORD_CHANGED:
        subject = "Your Spotless password was changed"
        text = (f"Hi {name},\n\nYour password was just changed and every device was signed out.\n"
                "If this was not you, reset your password now and contact support.\n")
    else:
        raise ValueError(f"no e-mail for event {event_type}")
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = payload["email"]
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="spotless.local")
    message.set_content(text)
    return message


def write_to_mailbox(message: EmailMessage, mail_dir: Path, *, name: str) -> Path:
    mail_dir.mkdir(parents=True, exist_ok=True)
    path = mail_dir / f"{name}.eml"
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(bytes(message))
    tmp.replace(path)  # readers never see half a message
    return path


async def deliver_pending(settings: Settings, *, batch: int = 50) -> int:
    """Deliver the e-mail events waiting in the outbox; return how many went out."""
    async with in_transaction() as tx:
        rows = await (
            OutboxEvent.filter(sent_at=None, type__in=[str(t) for t in EMAIL_EVENTS])
            .using_db(tx).order_by("id").limit(batch).select_for_update(skip_locked=True)
        )
        for row in rows:
            message = compose(row.type, row.payload, settings)
            stamp = row.created_at.strftime("%Y%m%dT%H%M%S")
            write_to_mailbox(message, settings.mail_path, name=f"{stamp}-{row.event_id}")
            row.sent_at = utcnow()
            row.attempts += 1
            await row.save(update_fields=["sent_at", "attempts"], using_db=tx)
    return len(rows)
