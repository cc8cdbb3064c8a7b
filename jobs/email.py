"""E-mail jobs: render an event's message from its Jinja2 template, then send it.

Each e-mail is one template in jobs/templates/email/ (blocks `subject`, `text`, `html`) and one
entry in `TEMPLATES`. Sending goes over SMTP (aiosmtplib) when `smtp_url` is set; otherwise the
message is written as an .eml file to the dev mailbox, `settings.mail_path`. The Message-ID is
derived from the event id, so a message sent twice is recognisably the same one.
"""

from __future__ import annotations

import logging
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from uuid import UUID

import aiosmtplib
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from core.events import EventType
from core.settings import Settings
from jobs.worker import Job, Poison, WorkerKind

log = logging.getLogger("spotless.jobs.email")

TEMPLATE_DIR = Path(__file__).parent / "templates" / "email"

# One entry per e-mail: the event type and its template's name.
TEMPLATES: dict[str, str] = {
    EventType.EMAIL_VERIFICATION_REQUESTED: "verify_email.j2",
    EventType.PASSWORD_RESET_REQUESTED: "reset_password.j2",
    EventType.PASSWORD_CHANGED: "password_changed.j2",
}

_html = Environment(loader=FileSystemLoader(TEMPLATE_DIR), undefined=StrictUndefined,
                    autoescape=select_autoescape(default=True, default_for_string=True))
_text = Environment(loader=FileSystemLoader(TEMPLATE_DIR), undefined=StrictUndefined, autoescape=False)


def _block(env: Environment, name: str, block: str, context: dict[str, Any]) -> str:
    template = env.get_template(name)
    return "".join(template.blocks[block](template.new_context(context))).strip()


def compose(event_type: str, payload: dict[str, Any], settings: Settings, *, event_id: UUID) -> EmailMessage:
    """The message (text and HTML alternatives) for one e-mail event."""
    name = TEMPLATES.get(event_type)
    if name is None:
        raise Poison(f"no e-mail template for event {event_type}")
    context = {"name": "", **payload, "base_url": settings.public_url.rstrip("/")}
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = payload["email"]
    message["Subject"] = " ".join(_block(_text, name, "subject", context).split())
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = f"<{event_id}@spotless.local>"
    message.set_content(_block(_text, name, "text", context) + "\n")
    message.add_alternative(_html.get_template(name).render(context), subtype="html")
    return message


def write_to_mailbox(message: EmailMessage, mail_dir: Path, *, name: str) -> Path:
    mail_dir.mkdir(parents=True, exist_ok=True)
    path = mail_dir / f"{name}.eml"
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(bytes(message))
    tmp.replace(path)  # readers never see half a message
    return path


async def send_smtp(message: EmailMessage, settings: Settings) -> None:
    """Send through the SMTP server in `smtp_url`; 4xx and connection errors are retried, 5xx not."""
    url = urlsplit(settings.smtp_url)
    try:
        await aiosmtplib.send(
            message, hostname=url.hostname or "localhost",
            port=url.port or (465 if url.scheme == "smtps" else 587),
            username=unquote(url.username) if url.username else None,
            password=unquote(url.password) if url.password else None,
            use_tls=url.scheme == "smtps", timeout=settings.smtp_timeout_s,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = [refusal.code for refusal in exc.recipients]
        if codes and all(500 <= code < 600 for code in codes):
            raise Poison(f"SMTP refused every recipient: {exc.recipients[0]}") from exc
        raise
    except aiosmtplib.SMTPResponseException as exc:
        if 500 <= exc.code < 600:
            raise Poison(f"SMTP refused the message: {exc.code} {exc.message}") from exc
        raise


async def send_email(job: Job, settings: Settings) -> None:
    """The handler: compose and deliver one e-mail event."""
    message = compose(job.type, job.payload, settings, event_id=job.event_id)
    if settings.smtp_url:
        await send_smtp(message, settings)
    else:
        write_to_mailbox(message, settings.mail_path, name=str(job.event_id))


def email_worker(settings: Settings) -> WorkerKind:
    async def handle(job: Job) -> None:
        await send_email(job, settings)

    return WorkerKind("email", {event_type: handle for event_type in TEMPLATES})
