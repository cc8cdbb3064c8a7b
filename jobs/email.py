"""E-mail jobs: render an event's message from its Jinja2 template, then send it.

Each e-mail is one template in jobs/templates/email/ (blocks `subject`, `text`, `html`). Account
e-mails carry their address in the payload and are one entry in `TEMPLATES`; booking e-mails
(jobs/booking_emails.py) look their recipients up and may go to both parties, each recipient
sent once (an idempotency key per event and recipient). Sending goes over SMTP (aiosmtplib)
when `smtp_url` is set; otherwise the message is written as an .eml file to the dev mailbox,
`settings.mail_path`. The Message-ID is derived from the event id (and the recipient's part),
so a message sent twice is recognisably the same one.
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
from jobs import booking_emails
from jobs.booking_emails import Attachment
from jobs.worker import Job, Poison, WorkerKind
from storage import jobs as job_store
from storage.files import FileStore, file_store

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


def render(name: str, context: dict[str, Any], settings: Settings, *, to: str, message_id: str,
           attachments: tuple[Attachment, ...] = ()) -> EmailMessage:
    """The message (text and HTML alternatives, then any attachments) of template `name`."""
    context = {"name": "", **context, "base_url": settings.public_url.rstrip("/")}
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = " ".join(_block(_text, name, "subject", context).split())
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = f"<{message_id}@spotless.local>"
    message.set_content(_block(_text, name, "text", context) + "\n")
    message.add_alternative(_html.get_template(name).render(context), subtype="html")
    for attachment in attachments:
        maintype, subtype = attachment.content_type.split("/", 1)
        message.add_attachment(attachment.data, maintype=maintype, subtype=subtype,
                               filename=attachment.filename)
    return message


def compose(event_type: str, payload: dict[str, Any], settings: Settings, *, event_id: UUID) -> EmailMessage:
    """The message for one account e-mail event (its payload names the address)."""
    name = TEMPLATES.get(event_type)
    if name is None:
        raise Poison(f"no e-mail template for event {event_type}")
    return render(name, payload, settings, to=payload["email"], message_id=str(event_id))


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


async def deliver(message: EmailMessage, settings: Settings, *, name: str) -> None:
    """Over SMTP when it is configured, else into the dev mailbox as `<name>.eml`."""
    if settings.smtp_url:
        await send_smtp(message, settings)
    else:
        write_to_mailbox(message, settings.mail_path, name=name)


async def send_email(job: Job, settings: Settings) -> None:
    """The handler of an account e-mail: compose and deliver it."""
    message = compose(job.type, job.payload, settings, event_id=job.event_id)
    await deliver(message, settings, name=str(job.event_id))


async def send_booking_emails(job: Job, settings: Settings, store: FileStore) -> None:
    """The handler of a booking e-mail: one message per recipient, each sent once; a recipient
    the server refuses for good does not keep the message from the other."""
    refused: list[Poison] = []
    for mail in await booking_emails.mails_for(job.type, job.payload, settings=settings, store=store):
        consumer = f"email:{mail.part}"
        if await job_store.already_processed(consumer, job.event_id):
            continue  # sent on an earlier delivery that failed for another recipient
        name = f"{job.event_id}-{mail.part}"
        message = render(mail.template, mail.context, settings, to=mail.to, message_id=name,
                         attachments=mail.attachments)
        try:
            await deliver(message, settings, name=name)
        except Poison as exc:
            refused.append(exc)
            continue
        await job_store.mark_processed(consumer, job.event_id)
    if refused:
        raise refused[0]


def email_worker(settings: Settings) -> WorkerKind:
    store = file_store(settings)

    async def handle(job: Job) -> None:
        await send_email(job, settings)

    async def handle_booking(job: Job) -> None:
        await send_booking_emails(job, settings, store)

    return WorkerKind("email", {**{event_type: handle for event_type in TEMPLATES},
                                **{event_type: handle_booking for event_type in booking_emails.TEMPLATES}})
