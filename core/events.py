"""Event types, their payload schemas and NATS subject names, defined once.

Durable work travels outbox → relay → JetStream. Every name on the shared NATS server (streams,
consumers, subjects) starts with the deployment's `jetstream_prefix`, so two deployments or two
test sessions on one server never see each other's work. Live fan-out uses `rt.<channel>`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NotRequired, TypedDict


class EventType(StrEnum):
    USER_REGISTERED = "account.registered"
    EMAIL_VERIFICATION_REQUESTED = "account.email_verification_requested"
    PASSWORD_RESET_REQUESTED = "account.password_reset_requested"
    PASSWORD_CHANGED = "account.password_changed"
    ACCESS_REVOKED = "account.access_revoked"
    PUSH_REQUESTED = "notify.push_requested"
    IMAGE_UPLOADED = "media.image_uploaded"
    CLEANER_PROFILE_UPDATED = "cleaner.profile_updated"
    CLEANER_AVAILABILITY_UPDATED = "cleaner.availability_updated"
    CLEANER_VERIFICATION_SUBMITTED = "cleaner.verification_submitted"
    CLEANER_VERIFICATION_APPROVED = "cleaner.verification_approved"
    CLEANER_VERIFICATION_REJECTED = "cleaner.verification_rejected"
    SERVICE_AREA_CHANGED = "supply.service_area_changed"
    SERVICE_AREA_REMOVED = "supply.service_area_removed"
    BOOKING_REQUESTED = "booking.requested"
    BOOKING_ACCEPTED = "booking.accepted"
    BOOKING_DECLINED = "booking.declined"
    BOOKING_EXPIRED = "booking.expired"
    BOOKING_CANCELLED = "booking.cancelled"
    BOOKING_ON_THE_WAY = "booking.on_the_way"
    BOOKING_STARTED = "booking.started"
    BOOKING_COMPLETED = "booking.completed"
    BOOKING_DISPUTED = "booking.disputed"
    BOOKING_REMINDER_DUE = "booking.reminder_due"
    BOOKING_PAYMENT_UPDATED = "booking.payment_updated"
    INVOICE_ISSUED = "invoice.issued"
    REVIEW_POSTED = "review.posted"
    REVIEW_REPLIED = "review.replied"


# --- payload schemas, one per event type ---

class UserRegistered(TypedDict):
    user_id: str
    role: str


class EmailVerificationRequested(TypedDict):
    user_id: str
    email: str
    name: str
    token: str
    expires_at: str  # ISO 8601


class PasswordResetRequested(EmailVerificationRequested):
    pass


class PasswordChanged(TypedDict):
    user_id: str
    email: str
    name: str


class AccessRevoked(TypedDict):
    """Tokens that stopped working (a suspension, a password reset, a sign-out): the sockets
    they authorised are closed. `at` is when, in Unix seconds."""

    user_id: str
    token_ids: list[int]
    reason: str  # suspended | password_reset | signed_out
    at: float


class PushCategory(StrEnum):
    """What a notification is about; users switch categories on and off."""

    ACCOUNT = "account"
    BOOKINGS = "bookings"
    CHAT = "chat"
    MARKETING = "marketing"


class PushRequested(TypedDict):
    user_ids: list[str]
    category: str  # a PushCategory
    title: str
    body: str
    data: dict[str, str]  # apps route on data["route"]
    badge: NotRequired[int]


class ImageUploaded(TypedDict):
    image_id: str
    key: str  # the original's key in storage.files
    owner_id: NotRequired[str]
    kind: NotRequired[str]  # "evidence": image_id is a booking_evidence row (storage/evidence.py)
    # "profile_photo": owner_id is the cleaner whose photo it is (storage/supply.py)
    # "chat_attachment": image_id is a chat_attachments row (storage/attachments.py)



class CleanerChanged(TypedDict):
    """Profile or availability changed: caches of search and presence reload the cleaner."""

    cleaner_id: str


class CleanerVerificationSubmitted(TypedDict):
    cleaner_id: str
    document_id: str


class CleanerVerificationDecided(TypedDict):
    cleaner_id: str
    status: str  # "approved" | "rejected"
    reason: str | None
    decided_by: str

class BookingChanged(TypedDict):
    """A booking moved (or is due a reminder); jobs notify both parties from this alone."""

    booking_id: str
    state: str
    client_id: str
    cleaner_id: str
    starts_at: str  # ISO 8601
    by: str  # the party that acted: client | cleaner | admin | system
    reason: NotRequired[str]
    cancellation_fee_minor: NotRequired[int]
    reminder_lead_s: NotRequired[int]  # booking.reminder_due: how long before the start
    # booking.completed: the final price next to the quote (they differ when the cleaner
    # completed with other hours); booking.payment_updated (reason capture_shortfall) too
    hours: NotRequired[str]
    quoted_hours: NotRequired[str]
    amount_minor: NotRequired[int]
    quoted_amount_minor: NotRequired[int]
    shortfall_minor: NotRequired[int]  # what the card would not cover (audited; staff follow up)


class ServiceAreaChanged(TypedDict):
    cleaner_id: str
    version: int
    bbox: NotRequired[list[float]]  # [min_lng, min_lat, max_lng, max_lat]; absent when removed
    area_km2: NotRequired[float]


class InvoiceIssued(TypedDict):
    """A completed booking's invoice exists, its PDF stored (storage/invoices.py)."""

    invoice_id: str
    booking_id: str
    number: str  # e.g. 2026-000001
    client_id: str
    cleaner_id: str
    total_minor: int
    currency: str


class ReviewChanged(TypedDict):
    """A client reviewed a booking, or its cleaner replied (storage/reviews.py)."""

    review_id: str
    booking_id: str
    client_id: str
    cleaner_id: str
    rating: int


PAYLOADS: dict[EventType, type] = {
    EventType.USER_REGISTERED: UserRegistered,
    EventType.EMAIL_VERIFICATION_REQUESTED: EmailVerificationRequested,
    EventType.PASSWORD_RESET_REQUESTED: PasswordResetRequested,
    EventType.PASSWORD_CHANGED: PasswordChanged,
    EventType.ACCESS_REVOKED: AccessRevoked,
    EventType.PUSH_REQUESTED: PushRequested,
    EventType.IMAGE_UPLOADED: ImageUploaded,
    EventType.CLEANER_PROFILE_UPDATED: CleanerChanged,
    EventType.CLEANER_AVAILABILITY_UPDATED: CleanerChanged,
    EventType.CLEANER_VERIFICATION_SUBMITTED: CleanerVerificationSubmitted,
    EventType.CLEANER_VERIFICATION_APPROVED: CleanerVerificationDecided,
    EventType.CLEANER_VERIFICATION_REJECTED: CleanerVerificationDecided,
    EventType.SERVICE_AREA_CHANGED: ServiceAreaChanged,
    EventType.SERVICE_AREA_REMOVED: ServiceAreaChanged,
    EventType.BOOKING_REQUESTED: BookingChanged,
    EventType.BOOKING_ACCEPTED: BookingChanged,
    EventType.BOOKING_DECLINED: BookingChanged,
    EventType.BOOKING_EXPIRED: BookingChanged,
    EventType.BOOKING_CANCELLED: BookingChanged,
    EventType.BOOKING_ON_THE_WAY: BookingChanged,
    EventType.BOOKING_STARTED: BookingChanged,
    EventType.BOOKING_COMPLETED: BookingChanged,
    EventType.BOOKING_DISPUTED: BookingChanged,
    EventType.BOOKING_REMINDER_DUE: BookingChanged,
    EventType.BOOKING_PAYMENT_UPDATED: BookingChanged,
    EventType.INVOICE_ISSUED: InvoiceIssued,
    EventType.REVIEW_POSTED: ReviewChanged,
    EventType.REVIEW_REPLIED: ReviewChanged,
}


# --- NATS names ---

JOBS_SUBJECT_PREFIX = "jobs"
DEAD_SUBJECT_PREFIX = "dead"
REALTIME_SUBJECT_PREFIX = "rt"


def job_subject(event_type: str, *, prefix: str) -> str:
    """The JetStream subject an outbox event of `event_type` is published on."""
    return f"{prefix}.{JOBS_SUBJECT_PREFIX}.{event_type}"


def dead_letter_subject(event_type: str, *, prefix: str, consumer: str) -> str:
    """Where a job that exhausted its deliveries (or was poison) is parked for people to read."""
    return f"{prefix}.{DEAD_SUBJECT_PREFIX}.{consumer}.{event_type}"


def jobs_stream(prefix: str) -> str:
    return f"{prefix}_jobs".upper().replace(".", "_")


def dead_letter_stream(prefix: str) -> str:
    return f"{prefix}_dead".upper().replace(".", "_")


# The last event of every cache channel (Pusher's `cache-` channels): a JetStream stream keeping
# one message per subject, one subject per app and channel (channel names are subject tokens).
REALTIME_CACHE_SUBJECT_PREFIX = "rtcache"


def realtime_cache_stream(prefix: str) -> str:
    return f"{prefix}_realtime_cache".upper().replace(".", "_")


def realtime_cache_subject(app_id: str, channel: str, *, prefix: str) -> str:
    return f"{prefix}.{REALTIME_CACHE_SUBJECT_PREFIX}.{app_id}.{channel}"


def consumer_name(prefix: str, kind: str, event_type: str) -> str:
    """The durable pull consumer of one worker kind (`email`, `push`, ...) for one event type.

    One consumer per (kind, type), each with a single filter subject, because servers before
    NATS 2.10 ignore a consumer's list of filter subjects.
    """
    return f"{prefix}_{kind}_{event_type}".replace(".", "_")


# Headers of a job message; the body is the payload as JSON.
EVENT_ID_HEADER = "Spotless-Event-Id"  # also sent as Nats-Msg-Id, for JetStream de-duplication
EVENT_TYPE_HEADER = "Spotless-Event-Type"
CREATED_AT_HEADER = "Spotless-Created-At"  # Unix seconds the outbox row was written


def realtime_subject(channel: str) -> str:
    return f"{REALTIME_SUBJECT_PREFIX}.{channel}"


# Live (core NATS) messages between edge workers about their sockets, not seen by clients:
# which user and token authorised a socket (sent to the worker holding it, named by the first
# part of its socket id), and which tokens were revoked (to every worker).
SOCKETS_REVOKED_SUBJECT = "sys.sockets.revoked"
# An app's server asked (Pusher's terminate_connections) to close a user's sockets: to every worker.
SOCKETS_TERMINATED_SUBJECT = "sys.sockets.terminated"


def socket_grant_subject(worker: str) -> str:
    return f"sys.sockets.{worker}.granted"


# A channel query of Pusher's HTTP API (GET /apps/{id}/channels...) asks every edge worker how
# many of its sockets are on which channels; each answers the request's reply inbox with its own
# counts (edge/realtime/census.py).
CHANNELS_QUERY_SUBJECT = "sys.channels.query"


class RealtimeEvent(StrEnum):
    """Event names that servers send to sockets on `rt.<channel>` (not outbox event types)."""

    CHAT_MESSAGE = "chat.message"  # data: a chat message with its per-conversation seq
    CHAT_READ = "chat.read"  # data: {user_id, seq}
    CHAT_SENT = "chat.sent"  # to a socket that sent client-chat-message: {client_msg_id, seq, created}
    CHAT_SEND_FAILED = "chat.send_failed"  # to that socket: {client_msg_id, status, code, detail}
    BOOKING_CREATED = "booking.created"  # data: a booking broadcast (core/booking_broadcasts.py)
    BOOKING_UPDATED = "booking.updated"  # data: the same shape, after a transition
    CLEANER_PRESENCE = "cleaner.presence"  # data: {cleaner_id, online, at, location?} (core/cleaner_presence.py)
