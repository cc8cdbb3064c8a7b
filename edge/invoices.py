"""GET /api/v1/bookings/{id}/invoice: a completed booking's invoice PDF, for its client and staff.

Thin: who may read it and whether it exists yet are storage.invoices' (and core.invoices') call.
The booking's cleaner and everyone else get 404, as for a booking they cannot see; before the
invoice exists the answer is 409 `booking_not_completed` or `invoice_pending`.
"""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, raw
from sanic_ext import openapi

from edge.auth import authenticated, current_session
from edge.staff import parse_uuid
from edge.supply import store_of
from storage import invoices

bp = Blueprint("invoices", url_prefix="/api/v1/bookings")


@bp.get("/<booking_id:str>/invoice")
@openapi.definition(summary="The booking's invoice as a PDF (its client and staff; 409 until it is issued)",
                    tag="bookings")
@openapi.response(200, {"application/pdf": {"type": "string", "format": "binary"}}, "the invoice PDF")
@authenticated()
async def download(request: Request, booking_id: str) -> HTTPResponse:
    invoice, data = await invoices.read_invoice_pdf(parse_uuid(booking_id), actor=current_session(request).user,
                                                    store=store_of(request))
    return raw(data, content_type="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="spotless-invoice-{invoice.number}.pdf"',
        "X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"})
