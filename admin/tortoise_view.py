"""The one Tortoise-backed model view that every admin page is declared on.

Reading (list with search, filters, sorting and pagination, detail, relations as links) is
starlette-admin's own Tortoise backend, `starlette_admin.contrib.tortoise.ModelView`: it runs
search as `icontains` over the view's `searchable_fields`, and filters, `order_by`, `offset`,
`limit` and `count` as SQL. This module builds on it instead of keeping a second copy, and adds
Spotless's rules for writes: every create, edit and delete runs in one transaction together
with its audit row (who, what, before, after); a domain `Invalid` becomes the form's field
errors; read-only views say `writable = False`. Lists also filter on choice columns and
relation keys (admin/filters.py), and a search for a row's exact key finds it. Any list
exports as CSV (`export_csv`): the same search, filters and sort as the page, every row not just
the page, streamed from a server-side cursor, audited, and safe to open in a spreadsheet. It
never holds a business rule: a view whose model has a domain action (creating a user,
suspending one) calls that action.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import AsyncIterator, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from typing import Any, ClassVar
from uuid import UUID

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette_admin import RequestAction
from starlette_admin.contrib.tortoise import ModelView
from starlette_admin.contrib.tortoise.helpers import build_order_clauses
from starlette_admin.export.helpers import escape_formula
from starlette_admin.filters import FilterRegistry
from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import Q
from tortoise.models import Model
from tortoise.queryset import ValuesQuery
from tortoise.transactions import in_transaction

from admin.auth import current_staff
from admin.errors import as_form_errors
from admin.filters import spotless_filters
from core.clock import utcnow
from core.errors import Invalid, NotFound
from storage import audit

EXPORT_FETCH_ROWS = 1000  # rows per round trip of the export's cursor
EXPORT_CHUNK_BYTES = 64 * 1024  # CSV bytes gathered before they are sent


class TortoiseModelView(ModelView):
    writable: ClassVar[bool] = True
    audit_entity: ClassVar[str] = ""  # `entity_type` of audit rows; default: the model in snake_case
    csv_export: ClassVar[bool] = True  # False: the list offers no CSV (export_csv answers 404)
    # Imports would create rows without the domain actions a view's `insert` may call.
    importers: Sequence[Any] = []
    # starlette-admin's own export builds the whole file in memory and caps the row count;
    # every list exports through `export_csv` instead.
    exporters: Sequence[Any] = []

    def __init__(self, model: type[Model]) -> None:
        super().__init__(model)
        self.entity = self.audit_entity or re.sub(r"(?<!^)(?=[A-Z])", "_", model.__name__).lower()
        # Timestamps the database bumps on every save say nothing about what staff changed.
        self._unaudited = {name for name, f in model._meta.fields_map.items()
                           if getattr(f, "auto_now", False)}

    def can_create(self, request: Request) -> bool:
        return self.writable

    def can_edit(self, request: Request) -> bool:
        return self.writable

    def can_delete(self, request: Request) -> bool:
        return self.writable

    # --- reading ---

    def get_filter_registry(self) -> FilterRegistry:
        return spotless_filters()

    def get_search_query(self, request: Request, term: str) -> Q:
        """The text search, plus the row whose key is `term` when the key is searchable."""
        query = super().get_search_query(request, term)
        if self.model._meta.pk_attr not in (self.searchable_fields or []):
            return query
        try:
            key = self.model._meta.pk.to_python_value(term.strip())
        except (TypeError, ValueError):
            return query
        by_key = Q(pk=key)
        return by_key | query if query.children or query.filters else by_key

    # --- CSV export of a filtered list ---

    def export_columns(self, request: Request) -> list[tuple[str, str]]:
        """(label, stored column) of each exported field: a relation as its key column."""
        meta = self.model._meta
        columns: list[tuple[str, str]] = []
        for field in self.get_fields_list(request, action=RequestAction.EXPORT):
            name = field.name
            if name in meta.fk_fields | meta.o2o_fields:
                name = meta.fields_map[name].source_field or name
            if name in meta.fields_db_projection:
                columns.append((field.label or field.name, name))
        return columns

    async def export_csv(self, request: Request) -> StreamingResponse:
        """Every row the list shows for the request's `q`, `filter` and `sort`, as CSV.

        The query is the list's own (search, filters, order, plus the key so the order is
        total), run once on a server-side cursor inside a read-only snapshot, so memory stays
        flat for any row count. The export is audited (who, which list, which query) before the
        first byte leaves.
        """
        if not self.csv_export:
            raise NotFound(f"the {self.display_name} list cannot be exported")
        request.state.action = RequestAction.EXPORT
        try:
            params = self._parse_list_params(request)
        except HTTPException as exc:
            raise Invalid(str(exc.detail), field="filter") from None
        query = await self._apply_search_and_filters(
            request, self.get_list_query(request), params.q, params.filters)
        order = build_order_clauses(self.model, params.sorts or [])
        pk = self.model._meta.pk_attr
        if pk not in {clause.lstrip("-") for clause in order}:
            order.append(pk)
        columns = self.export_columns(request)
        sql, args = _parameterized(query.order_by(*order).values(*[c for _, c in columns]))
        async with in_transaction() as tx:
            await self.record(request, "exported", "list", using=tx, after={
                "query": str(request.query_params)[:1000], "columns": [c for _, c in columns]})
        filename = f"{self.key}-{utcnow():%Y%m%d-%H%M%S}.csv"
        return StreamingResponse(
            _csv_stream([label for label, _ in columns], sql, args), media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{filename}"',
                     "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})

    # --- hooks a model's view overrides ---

    async def clean(self, request: Request, data: dict[str, Any]) -> dict[str, Any]:
        """Apply the domain's rules to submitted values (raise Invalid(field=...)); default: as is."""
        return data

    async def insert(self, request: Request, data: dict[str, Any], *, using: BaseDBAsyncClient) -> Any:
        """Create the row. The default saves the submitted fields; Tortoise runs it in `using`."""
        return await super().create(request, data)

    # --- writes: one transaction each, audited ---

    async def create(self, request: Request, data: dict[str, Any]) -> Any:
        try:
            async with in_transaction() as tx:
                obj = await self.insert(request, await self.clean(request, data), using=tx)
                await self.record(request, "created", obj.pk, after=self.snapshot(obj), using=tx)
        except Invalid as exc:
            raise self._as_form_error(request, exc) from exc
        return obj

    async def edit(self, request: Request, pk: Any, data: dict[str, Any]) -> Any:
        try:
            async with in_transaction() as tx:
                data = await self.clean(request, data)
                # Queries inside the block use `tx`: Tortoise binds the transaction to the task.
                current = await self.model.filter(pk=self._key(pk)).select_for_update().first()
                if current is None:
                    raise NotFound(f"this {self.display_name} no longer exists")
                before = self.snapshot(current)
                obj = await super().edit(request, pk, data)
                after = self.snapshot(obj)
                changed = [name for name in after if after[name] != before.get(name)]
                if changed:
                    await self.record(request, "updated", obj.pk, using=tx,
                                      before={n: before.get(n) for n in changed},
                                      after={n: after[n] for n in changed})
        except Invalid as exc:
            raise self._as_form_error(request, exc) from exc
        return obj

    async def delete(self, request: Request, pks: list[Any]) -> int | None:
        keys = [self._key(pk) for pk in pks]
        async with in_transaction() as tx:
            doomed = await self.get_detail_query(request).filter(pk__in=keys).select_for_update()
            deleted = await super().delete(request, pks)
            for obj in doomed:
                await self.record(request, "deleted", obj.pk, before=self.snapshot(obj), using=tx)
        return deleted

    async def record(self, request: Request, verb: str, entity_id: Any, *,
                     using: BaseDBAsyncClient, before: dict[str, Any] | None = None,
                     after: dict[str, Any] | None = None) -> None:
        """Write the audit row of a change made by the signed-in staff member."""
        await audit.record(actor_id=current_staff(request).id, action=f"{self.entity}.{verb}",
                           entity_type=self.entity, entity_id=entity_id,
                           before=before, after=after, using=using)

    def snapshot(self, obj: Model) -> dict[str, Any]:
        """The view's stored fields of `obj` as JSON values (a relation as its key column)."""
        meta = self.model._meta
        values: dict[str, Any] = {}
        for field in self.fields:
            name = field.name
            if name in meta.fk_fields | meta.o2o_fields:
                name = meta.fields_map[name].source_field or name
            if name in meta.fields_db_projection and name not in self._unaudited:
                values[name] = _jsonable(getattr(obj, name))
        return values

    def _key(self, pk: Any) -> Any:
        try:
            return self.model._meta.pk.to_python_value(pk)
        except (TypeError, ValueError):
            raise NotFound(f"no {self.display_name} with id {pk!r}") from None

    def _as_form_error(self, request: Request, exc: Invalid) -> Exception:
        """The form's field errors when every field the error names is on the form."""
        on_form = {field.name for field in self.get_fields_list(request)}
        form_error = as_form_errors(exc, on_form)
        if form_error is None:
            raise exc  # not about this form's fields: the admin's error handler explains it
        return form_error


def _parameterized(query: ValuesQuery[Any]) -> tuple[str, list[Any]]:
    """The SQL Tortoise would run for `query`, with its arguments, to run on a cursor instead
    (Tortoise has no public streaming API)."""
    query._choose_db_if_not_chosen()
    query._make_query()
    sql, args = query.query.get_parameterized_sql()
    return sql, list(args)


async def _csv_stream(header: list[str], sql: str, args: list[Any]) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    async with connections.get("default").acquire_connection() as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            async for record in conn.cursor(sql, *args, prefetch=EXPORT_FETCH_ROWS):
                writer.writerow([csv_cell(value) for value in record.values()])
                if buffer.tell() >= EXPORT_CHUNK_BYTES:
                    yield buffer.getvalue().encode()
                    buffer.seek(0)
                    buffer.truncate()
    yield buffer.getvalue().encode()


def csv_cell(value: Any) -> Any:
    """A cell a spreadsheet shows as text: one that could start a formula (= + - @, or
    whitespace before one) is prefixed with a quote; numbers stay numbers."""
    if value is None:
        return ""
    if isinstance(value, str):
        return escape_formula(value)
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict | list):
        return escape_formula(json.dumps(value, separators=(",", ":"), default=str))
    return escape_formula(str(_jsonable(value)))


def _jsonable(value: Any) -> Any:
    if isinstance(value, UUID | Decimal):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value
