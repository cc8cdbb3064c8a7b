"""The transactional outbox, read-only: which events were written, sent, retried or stuck.

Some payloads carry one-time secrets (e-mail verification and password-reset links); the
dashboard shows them redacted, so reading the outbox never lets staff act as a user.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette_admin.fields import BaseField

from admin.tortoise_view import TortoiseModelView
from storage.models import OutboxEvent

SECRET_KEYS = frozenset({"token", "secret", "password", "code"})
REDACTED = "[redacted]"


class OutboxView(TortoiseModelView):
    writable = False
    menu_label = "Outbox"
    display_name = "Outbox event"
    icon = "fa fa-paper-plane"
    fields = ["id", "event_id", "type", "created_at", "sent_at", "attempts", "last_error", "payload"]
    exclude_fields_from_list = ["payload"]
    # The CSV export reads stored values, not the redacted display: payloads stay out of it.
    exclude_fields_from_export = ["payload"]
    searchable_fields = ["type", "last_error"]
    sortable_fields = ["id", "type", "created_at", "sent_at", "attempts"]
    fields_default_sort = [("id", True)]

    def __init__(self) -> None:
        super().__init__(OutboxEvent)

    async def serialize_field_value(self, value: Any, field: BaseField, request: Request) -> Any:
        if field.name == "payload":
            value = redact(value)
        return await super().serialize_field_value(value, field, request)


def redact(value: Any) -> Any:
    """`value` with the values of secret-looking keys replaced, at any depth."""
    if isinstance(value, dict):
        return {k: REDACTED if k.lower() in SECRET_KEYS else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value
