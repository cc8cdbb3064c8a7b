"""Reading the dev mailbox the way a person reads their inbox."""

from __future__ import annotations

import email
import re
from email.message import Message

from core.settings import Settings
from jobs.email import deliver_pending


async def messages_to(settings: Settings, address: str) -> list[Message]:
    """Deliver what is waiting, then return the messages sent to `address`, oldest first."""
    while await deliver_pending(settings):
        pass
    found = []
    for path in sorted(settings.mail_path.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes())
        if message["To"] == address:
            found.append(message)
    return found


def token_in(message: Message) -> str:
    body = message.get_payload(decode=True).decode()
    match = re.search(r"token=([A-Za-z0-9]+)", body)
    assert match, body
    return match[1]
