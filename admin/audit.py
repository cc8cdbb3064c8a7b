"""The audit trail, read-only and newest first: who did what to which entity, before and after."""

from __future__ import annotations

from admin.tortoise_view import TortoiseModelView
from storage.models import AuditLog


class AuditLogView(TortoiseModelView):
    writable = False
    menu_label = "Audit log"
    display_name = "Audit entry"
    icon = "fa fa-clipboard-list"
    fields = ["id", "created_at", "actor", "action", "entity_type", "entity_id", "before", "after"]
    searchable_fields = ["action", "entity_type", "entity_id"]
    sortable_fields = ["id", "created_at", "action", "entity_type"]
    fields_default_sort = [("id", True)]

    def __init__(self) -> None:
        super().__init__(AuditLog)
