"""The shapes of successful answers, for the OpenAPI document (and so for schemathesis, which
holds every answer to them). Documentation only: handlers build their JSON themselves.

`additionalProperties: false` throughout, so a field added to an answer without being added
here fails the contract test instead of drifting out of the document unseen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from sanic_ext.extensions.openapi.builders import OperationStore
from sanic_ext.extensions.openapi.definitions import Response

from edge.validation import inline_schema

Handler = TypeVar("Handler", bound=Callable[..., Any])


class Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PublicUser(Shape):
    id: str
    email: str
    name: str
    phone: str | None
    role: Literal["client", "cleaner", "admin"]
    email_verified: bool
    suspended: bool
    created_at: str


class AccessToken(Shape):
    id: int
    name: str
    abilities: list[str]
    last_used_at: str | None
    expires_at: str | None
    created_at: str
    current: bool


class SignedIn(Shape):
    user: PublicUser
    token: str
    token_id: int


class Me(Shape):
    user: PublicUser
    token: AccessToken


class UserOnly(Shape):
    user: PublicUser


class TokenPage(Shape):
    data: list[AccessToken]
    next_cursor: str | None


class Revoked(Shape):
    revoked: int


class Status(Shape):
    status: str


class Money(Shape):
    amount_minor: int
    currency: str


class Service(Shape):
    id: str
    name: str
    description: str
    price: Money
    min_duration_minutes: int
    requires_photo_evidence: bool


class Catalogue(Shape):
    data: list[Service]
    next_cursor: str | None  # always null: the whole catalogue is one page


class Device(Shape):
    platform: str
    kind: str
    token: str
    created_at: str


class Readiness(Shape):
    status: Literal["ready"]
    checks: dict[str, str]


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


def present_when(description: str) -> Any:
    """A field that some answers leave out (it is never null when sent): not required."""
    return Field(default=None, description=description, json_schema_extra=_no_default)


UploadStatus = Literal["processing", "ready", "refused"]
VerificationStatus = Literal["unsubmitted", "pending", "approved", "rejected"]
BookingState = Literal["requested", "accepted", "declined", "expired", "on_the_way", "in_progress",
                       "completed", "cancelled", "disputed"]
Party = Literal["client", "cleaner", "admin", "system"]
ImageType = Literal["image/jpeg", "image/png", "image/webp"]


class Point(Shape):
    lat: float
    lng: float


class PublicPhoto(Shape):
    """A cleaner's processed photo; thumbnails by width in pixels."""

    url: str
    width: int
    height: int
    thumbnails: dict[str, str]


# --- cleaner supply ---


class OwnPhoto(Shape):
    status: UploadStatus | None  # null until the first upload
    refused_reason: str | None
    processed_at: str | None
    shown: PublicPhoto | None


class OfferedService(Shape):
    service_id: str
    name: str
    hourly_rate: Money


class Verification(Shape):
    status: VerificationStatus
    reason: str | None
    verified_at: str | None
    changed_at: str


class Rating(Shape):
    average: float | None = Field(description="null while no visible review counts")
    count: int


class CleanerProfile(Shape):
    id: str
    name: str
    bio: str
    photo: OwnPhoto
    time_zone: str
    travel_buffer_minutes: int
    services: list[OfferedService]
    verification: Verification
    rating: Rating


class ProfileAnswer(Shape):
    profile: CleanerProfile


class VerificationDocument(Shape):
    id: str
    content_type: Literal["image/jpeg", "image/png", "image/webp", "application/pdf"]
    size_bytes: int
    status: Literal["pending", "approved", "rejected"]
    reason: str | None
    created_at: str
    reviewed_at: str | None


class VerificationAnswer(Shape):
    verification: Verification
    documents: list[VerificationDocument]


class DocumentSent(Shape):
    verification: Verification
    document: VerificationDocument


class CleanerForReview(Shape):
    id: str
    name: str
    email: str
    created_at: str
    verification: Verification
    documents: list[VerificationDocument]


class ReviewQueuePage(Shape):
    data: list[CleanerForReview]
    next_cursor: str | None


class VerificationDecided(Shape):
    id: str
    verification: Verification


class WeeklyInterval(Shape):
    weekday: int = Field(ge=0, le=6)
    start_minute: int
    end_minute: int


class DatedException(Shape):
    date: str
    kind: Literal["off", "extra"]
    start_minute: int | None
    end_minute: int | None


class Availability(Shape):
    time_zone: str
    weekly: list[WeeklyInterval]
    exceptions: list[DatedException]


class AvailabilityAnswer(Shape):
    availability: Availability


Position = Annotated[list[float], Field(min_length=2, max_length=2, description="[lng, lat]")]


class PolygonGeometry(Shape):
    type: Literal["Polygon"]
    coordinates: list[list[Position]]


class MultiPolygonGeometry(Shape):
    type: Literal["MultiPolygon"]
    coordinates: list[list[list[Position]]]


class ServiceArea(Shape):
    geometry: PolygonGeometry | MultiPolygonGeometry
    bbox: list[float] = Field(min_length=4, max_length=4, description="[min_lng, min_lat, max_lng, max_lat]")
    area_km2: float
    version: int
    updated_at: str


class Heartbeat(Shape):
    online: Literal[True]
    timeout_s: float


class WindowPrice(Shape):
    amount_minor: int
    currency: str
    hours: float = Field(description="a multiple of 0.25")


class SearchResult(Shape):
    cleaner_id: str
    name: str
    rating_avg: float | None = Field(description="null while no visible review counts")
    rating_count: int
    distance_m: int
    hourly_rate_minor: int | None
    currency: str
    price: WindowPrice | None
    online: bool
    photo: PublicPhoto | None


class SearchPage(Shape):
    data: list[SearchResult]
    next_cursor: str | None


class NotificationPreferences(Shape):
    account: bool
    bookings: bool
    chat: bool
    marketing: bool


# --- bookings ---


class Quote(Shape):
    hours: float = Field(description="a multiple of 0.25")
    hourly_rate: Money
    subtotal: Money
    tax: Money
    total: Money


class QuoteAnswer(Shape):
    quote: Quote


class PriceLines(Shape):
    hours: float = Field(description="a multiple of 0.25")
    subtotal: Money
    tax: Money
    total: Money


class Price(Shape):
    hourly_rate: Money
    subtotal: Money
    tax: Money
    total: Money
    quoted: PriceLines
    final: PriceLines | None
    platform_fee: Money = present_when("the cleaner and staff only")
    cleaner_payout: Money = present_when("the cleaner and staff only")


class Payment(Shape):
    status: Literal["none", "authorized", "captured", "partially_captured", "canceled", "failed", "refunded",
                    "disputed", "settle_failed"]
    captured: Money
    refunded: Money
    held: Money
    shortfall: Money


class Cancellation(Shape):
    by: Party
    reason: str | None
    late: bool
    fee: Money


class Navigation(Shape):
    geo: str
    google_maps: str
    apple_maps: str
    openstreetmap: str


class TimelineStep(Shape):
    from_: BookingState | None = Field(alias="from")
    to: BookingState
    by: Party
    reason: str | None
    at: str


class Booking(Shape):
    id: str
    state: BookingState
    client_id: str
    cleaner_id: str
    service: str
    start: str
    end: str
    hours: float = Field(description="a multiple of 0.25")
    price: Price
    address: str
    city: str | None
    location: Point | None
    notes: str
    created_at: str
    accepted_at: str | None
    declined_at: str | None
    expired_at: str | None
    on_the_way_at: str | None
    started_at: str | None
    completed_at: str | None
    cancelled_at: str | None
    disputed_at: str | None
    payment: Payment
    cancellation: Cancellation | None = Field(description="null unless the booking was cancelled")
    navigation: Navigation = present_when("the cleaner and staff only")
    timeline: list[TimelineStep] = present_when("reading one booking only")


class BookingAnswer(Shape):
    booking: Booking


class BookingPage(Shape):
    data: list[Booking]
    next_cursor: str | None


class Evidence(Shape):
    id: str
    booking_id: str
    status: UploadStatus
    content_type: ImageType
    size_bytes: int
    width: int | None
    height: int | None
    captured_at: str | None
    location: Point | None
    refused_reason: str | None
    created_at: str
    processed_at: str | None
    url: str | None
    thumbnails: dict[str, str]


class EvidenceAnswer(Shape):
    evidence: Evidence


class EvidencePage(Shape):
    data: list[Evidence]
    next_cursor: str | None


class Reply(Shape):
    text: str
    at: str


class PublicReview(Shape):
    id: str
    rating: int = Field(ge=1, le=5)
    text: str
    author: str = Field(description="the client's first name")
    created_at: str
    reply: Reply | None


class Review(PublicReview):
    """A review as its booking's parties and staff see it."""

    author: str | None = Field(description="the client's first name; null once the account is gone")
    booking_id: str
    cleaner_id: str
    hidden: bool


class ReviewAnswer(Shape):
    review: Review


class ReviewPage(Shape):
    data: list[PublicReview]
    next_cursor: str | None


# --- chat ---


class Participant(Shape):
    id: str
    name: str


class Conversation(Shape):
    id: str
    booking_id: str
    channel: str
    client_id: str
    cleaner_id: str
    booking_state: BookingState
    with_: Participant = Field(alias="with")
    last_seq: int
    read_seq: int
    unread: int
    last_message_at: str | None


class ConversationPage(Shape):
    data: list[Conversation]
    next_cursor: str | None


class Attachment(Shape):
    id: str
    status: UploadStatus
    content_type: ImageType
    width: int | None
    height: int | None
    url: str | None
    thumbnails: dict[str, str]


class Message(Shape):
    id: int
    conversation_id: str
    seq: int
    sender_id: str = Field(description="the author's user id; never null: an account that has sent messages "
                                       "cannot be deleted (staff suspend it), so every message keeps its author")
    client_msg_id: str
    body: str
    attachment: Attachment | None
    created_at: str


class MessageAnswer(Shape):
    data: Message


class MessageList(Shape):
    data: list[Message]


class ReadCursor(Shape):
    conversation_id: str
    read_seq: int


class ReadAnswer(Shape):
    data: ReadCursor


class AttachmentUploaded(Shape):
    id: str
    status: UploadStatus


# --- payments ---


class SetupIntent(Shape):
    id: str
    client_secret: str
    customer: str


class SetupIntentAnswer(Shape):
    setup_intent: SetupIntent


class OnboardingLink(Shape):
    url: str
    expires_at: str
    charges_enabled: bool


class OnboardingAnswer(Shape):
    onboarding: OnboardingLink


class WebhookReceived(Shape):
    received: Literal[True]
    id: str
    duplicate: bool


# --- content ---


class ContentPageSummary(Shape):
    slug: str
    title: str
    kind: Literal["faq", "help", "legal", "page"]
    audience: Literal["client", "cleaner", "all"]
    updated_at: str


class ContentPage(ContentPageSummary):
    body_html: str


class ContentPageAnswer(Shape):
    page: ContentPage


class ContentPagePage(Shape):
    data: list[ContentPageSummary]
    next_cursor: str | None


# --- realtime (Pusher's own wire formats) ---


class ChannelAuth(Shape):
    auth: str = Field(description="<key>:<HMAC-SHA256 signature>")
    channel_data: str = present_when("presence channels only: the member's JSON, as signed")


class PusherChannelInfo(Shape):
    """What `info` asked of one channel (core/channel_queries.py)."""

    user_count: int = present_when("info=user_count, presence channels only: distinct users")
    subscription_count: int = present_when("info=subscription_count: subscribed sockets")


class PusherBatch(Shape):
    batch: list[PusherChannelInfo] = Field(description="per event: what its `info` asked of its channel, "
                                                        "else an empty object")


class PusherChannels(Shape):
    channels: dict[str, PusherChannelInfo] = Field(description="occupied channels by name")


class PusherTriggered(Shape):
    channels: dict[str, PusherChannelInfo] = present_when("when the trigger's `info` asked: each channel")


class PusherTerminated(Shape):
    """An empty object, as Pusher answers."""


class PusherChannel(Shape):
    occupied: bool
    user_count: int = present_when("info=user_count (presence channels only)")
    subscription_count: int = present_when("info=subscription_count")


class PusherUser(Shape):
    id: str


class PusherUsers(Shape):
    users: list[PusherUser]


BINARY = {"type": "string", "format": "binary"}


def json_response(model: type[BaseModel]) -> dict[str, Any]:
    """The `content` of a documented JSON answer shaped like `model`."""
    return {"application/json": inline_schema(model)}


def binary_response(*content_types: str) -> dict[str, Any]:
    """The `content` of a documented file answer served as any of `content_types`."""
    return {content_type: BINARY for content_type in content_types}


IMAGE_FILE = binary_response("image/jpeg", "image/png", "image/webp")
DOCUMENT_FILE = binary_response("image/jpeg", "image/png", "image/webp", "application/pdf")


def no_content(description: str) -> Callable[[Handler], Handler]:
    """Document a 204 answer (sanic-ext's own decorator would give it a `*/*` body)."""

    def decorate(handler: Handler) -> Handler:
        OperationStore()[handler].responses[204] = Response(description=description)
        return handler

    return decorate
