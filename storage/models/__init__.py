"""Every Tortoise model, one module per domain. Tables are created by storage/migrations only."""

from storage.models.accounts import OneTimeToken, PersonalAccessToken, SocialIdentity, User
from storage.models.audit import AuditLog
from storage.models.bookings import (
    Booking,
    BookingTransition,
    PaymentCustomer,
    PayoutAccount,
    StripeEvent,
)
from storage.models.chat import ChatAttachment, ChatMessage, Conversation, ReadCursor
from storage.models.content import ContentPage
from storage.models.evidence import BookingEvidence
from storage.models.invoices import BookingReminder, Invoice, InvoiceCounter
from storage.models.jobs import (
    Device,
    FailedJob,
    NotificationPreference,
    ProcessedEvent,
    ScheduledEvent,
    ScheduledTask,
)
from storage.models.outbox import OutboxEvent
from storage.models.payments import BookingRefund, SettleRetry
from storage.models.reviews import Review
from storage.models.shards import ShardLayout
from storage.models.supply import (
    AvailabilityException,
    AvailabilityRule,
    CleanerPresence,
    CleanerProfile,
    CleanerService,
    ServiceArea,
    ServiceType,
    VerificationDocument,
)

__all__ = [
    "AvailabilityException",
    "AvailabilityRule",
    "Booking",
    "CleanerPresence",
    "CleanerProfile",
    "CleanerService",
    "ServiceArea",
    "ServiceType",
    "VerificationDocument",
    "AuditLog",
    "BookingEvidence",
    "BookingTransition",
    "BookingRefund",
    "Review",
    "ShardLayout",
    "SettleRetry",
    "PaymentCustomer",
    "PayoutAccount",
    "StripeEvent",
    "ChatAttachment",
    "ChatMessage",
    "ContentPage",
    "Conversation",
    "ReadCursor",
    "BookingReminder",
    "Invoice",
    "InvoiceCounter",
    "Device",
    "FailedJob",
    "NotificationPreference",
    "ProcessedEvent",
    "ScheduledEvent",
    "ScheduledTask",
    "OneTimeToken",
    "OutboxEvent",
    "PersonalAccessToken",
    "SocialIdentity",
    "User",
]
