"""The service catalogue: what clients can book, at what base price and minimum length.

Staff edit a service type's name, description, base price, minimum duration, display order,
whether completing it needs photo evidence, and whether it is offered; the generic view writes
each change with its audit row. Service types are neither created nor deleted here: bookings and
cleaners' offers point at them, and a retired service is switched off (`active`), which takes it
out of the catalogue and of booking.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette_admin import BooleanField, DateTimeField, IntegerField, StringField, TextAreaField

from admin.tortoise_view import TortoiseModelView
from storage.models import ServiceType


class ServiceTypeView(TortoiseModelView):
    audit_entity = "service_type"
    menu_label = "Service types"
    icon = "fa fa-broom"
    fields = [
        StringField("id", label="Id", read_only=True),
        StringField("name", required=True, maxlength=120),
        TextAreaField("description", exclude_from_list=True),
        IntegerField("base_price_minor", label="Base price (minor units)", required=True, min=0),
        StringField("currency", read_only=True),
        IntegerField("min_duration_minutes", label="Minimum duration (minutes)", required=True, min=1),
        IntegerField("sort_order", label="Display order", required=True),
        BooleanField("requires_photo_evidence", label="Photos required to complete"),
        BooleanField("active", label="Offered"),
        DateTimeField("updated_at", label="Changed", read_only=True),
    ]
    exclude_fields_from_edit = ["id", "currency", "updated_at"]
    searchable_fields = ["id", "name"]
    sortable_fields = ["id", "name", "base_price_minor", "min_duration_minutes", "sort_order", "active"]
    fields_default_sort = ["sort_order"]
    row_actions = ["view", "edit"]
    actions: list[str] = []

    def __init__(self) -> None:
        super().__init__(ServiceType)

    def can_create(self, request: Request) -> bool:
        return False

    def can_delete(self, request: Request) -> bool:
        return False
