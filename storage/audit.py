"""Writing audit rows. Always called inside the transaction of the change it records."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from tortoise.backends.base.client import BaseDBAsyncClient

from storage.models import AuditLog


async def record(
    *,
    actor_id: UUID | None,
    action: str,
    entity_type: str,
    entity_id: Any,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    using: BaseDBAsyncClient,
) -> None:
    await AuditLog.create(
        actor_id=actor_id,
        action=action,
        entity_type=entity_type,
        entity_id=str(entity_id),
        before=before,
        after=after,
        using_db=using,
    )
