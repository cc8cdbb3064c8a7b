"""Enqueueing events in the outbox, inside the caller's transaction. Never publishes directly."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from tortoise.backends.base.client import BaseDBAsyncClient

from core.events import EventType
from core.ids import new_id
from storage.models import OutboxEvent


async def enqueue(event_type: EventType, payload: dict[str, Any], *, using: BaseDBAsyncClient) -> UUID:
    """Write one event row in the open transaction `using`; return its event id."""
    event_id = new_id()
    await OutboxEvent.create(event_id=event_id, type=str(event_type), payload=payload, using_db=using)
    return event_id
