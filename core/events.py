"""Event types and NATS subject names, defined once. Payload schemas live beside their type."""

from __future__ import annotations

from enum import StrEnum


class EventType(StrEnum):
    USER_REGISTERED = "account.registered"
    EMAIL_VERIFICATION_REQUESTED = "account.email_verification_requested"
    PASSWORD_RESET_REQUESTED = "account.password_reset_requested"
    PASSWORD_CHANGED = "account.password_changed"


# Durable work goes to JetStream under this prefix; live fan-out uses "rt.<channel>".
JOBS_SUBJECT_PREFIX = "jobs"
REALTIME_SUBJECT_PREFIX = "rt"


def job_subject(event_type: str) -> str:
    return f"{JOBS_SUBJECT_PREFIX}.{event_type}"


def realtime_subject(channel: str) -> str:
    return f"{REALTIME_SUBJECT_PREFIX}.{channel}"
