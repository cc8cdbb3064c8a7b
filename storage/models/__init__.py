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
from storage.models.chat import ChatMessage, Conversation, ReadCursor
from storage.models.jobs import (
    Device,
    FailedJob,
    NotificationPreference,
    ProcessedEvent,
    ScheduledEvent,
    ScheduledTask,
)
from storage.models.outbox import OutboxEvent
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
    "BookingTransition",
    "PaymentCustomer",
    "PayoutAccount",
    "StripeEvent",
    "ChatMessage",
    "Conversation",
    "ReadCursor",
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
