"""Every Tortoise model, one module per domain. Tables are created by storage/migrations only."""

from storage.models.accounts import OneTimeToken, PersonalAccessToken, SocialIdentity, User
from storage.models.audit import AuditLog
from storage.models.outbox import OutboxEvent

__all__ = [
    "AuditLog",
    "OneTimeToken",
    "OutboxEvent",
    "PersonalAccessToken",
    "SocialIdentity",
    "User",
]
