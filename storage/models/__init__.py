"""Every Tortoise model, one module per domain. Tables are created by storage/migrations only."""

from storage.models.accounts import OneTimeToken, PersonalAccessToken, SocialIdentity, User
from storage.models.audit import AuditLog
from storage.models.outbox import OutboxEvent
from storage.models.supply import (
    AvailabilityException,
    AvailabilityRule,
    Booking,
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
    "OneTimeToken",
    "OutboxEvent",
    "PersonalAccessToken",
    "SocialIdentity",
    "User",
]
