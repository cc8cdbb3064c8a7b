"""A real SMTP server in the test process (aiosmtpd), keeping every message it accepts."""

from __future__ import annotations

import email
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller

from cli.embedded import free_port


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []
        self.refused: set[str] = set()  # recipients answered with 550

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,  # noqa: N802
                          rcpt_options: list[str]) -> str:
        if address in self.refused:
            return "550 5.1.1 No such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content)))
        return "250 Message accepted for delivery"


class SmtpFake:
    def __init__(self) -> None:
        self.inbox = _Inbox()
        self.port = free_port()
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    def to(self, address: str) -> list[Message]:
        return [message for rcpts, message in self.inbox.messages if address in rcpts]
