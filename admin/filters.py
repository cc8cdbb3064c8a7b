"""List filters every admin page offers beyond starlette-admin's Tortoise set.

starlette-admin's enum filters assume a Tortoise enum column, while Spotless keeps states and
roles in plain text columns (their values are StrEnums in core/), and its to-one relations offer
only "is null". These add "equals" / "is one of" over such choice columns and "is this
account" over a relation's key column (`?filter=cleaner__eq=<user id>`). A value that is not a
valid key matches nothing rather than failing.
"""

from __future__ import annotations

from typing import Any

from starlette_admin.contrib.tortoise.filters import (
    EnumEqualFilter,
    EnumInFilter,
    IsNotNullFilter,
    IsNullFilter,
    RelationIsNotNullFilter,
    RelationIsNullFilter,
    TortoiseFilterRegistry,
)
from starlette_admin.contrib.tortoise.helpers import relation_source_field
from starlette_admin.fields import EnumField, HasOne
from starlette_admin.filters import FilterApplyContext
from starlette_admin.filters.generic import EqualFilter
from tortoise.expressions import Q


def _choice(ctx: FilterApplyContext, raw: Any) -> Any:
    """The value as the column stores it: the enum member for an enum column, else as is."""
    column = ctx.view.model._meta.fields_map[ctx.field_name]  # type: ignore[union-attr]
    enum_type = getattr(column, "enum_type", None)
    return raw if enum_type is None else enum_type(raw)


class ChoiceEqualFilter(EnumEqualFilter):
    def apply(self, ctx: FilterApplyContext) -> Q:
        return Q(**{ctx.field_name: _choice(ctx, ctx.value)})


class ChoiceInFilter(EnumInFilter):
    def apply(self, ctx: FilterApplyContext) -> Q:
        lookup: dict[str, Any] = {f"{ctx.field_name}__in": [_choice(ctx, v) for v in ctx.value]}
        return Q(**lookup)


class RelationKeyEqualFilter(EqualFilter):
    """The related row is the one with this key (the foreign key column equals it)."""

    def apply(self, ctx: FilterApplyContext) -> Q:
        model = ctx.view.model  # type: ignore[union-attr]
        related = model._meta.fields_map[ctx.field_name].related_model
        try:
            key = related._meta.pk.to_python_value(str(ctx.value).strip())
        except (TypeError, ValueError):
            return Q(pk__in=[])
        return Q(**{relation_source_field(model, ctx.field_name): key})


def spotless_filters() -> TortoiseFilterRegistry:
    return TortoiseFilterRegistry({
        EnumField: [ChoiceEqualFilter, ChoiceInFilter, IsNullFilter, IsNotNullFilter],
        HasOne: [RelationKeyEqualFilter, RelationIsNullFilter, RelationIsNotNullFilter],
    })
