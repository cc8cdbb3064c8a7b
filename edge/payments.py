"""Payments over REST: saving a card, a cleaner's payout onboarding, staff refunds and Stripe's
webhooks. Thin handlers: parse, authorise, call storage.payments."""

from __future__ import annotations

from pydantic import Field
from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext import openapi

from core.accounts import Role
from core.bookings import Party
from edge.accounts import settings_of
from edge.auth import authenticated, current_session
from edge.bookings import booking_json
from edge.responses import (
    BookingAnswer,
    OnboardingAnswer,
    SetupIntentAnswer,
    WebhookReceived,
    json_response,
)
from edge.staff import parse_uuid
from edge.validation import Body, openapi_body, openapi_content, parse_body
from storage import payments

bp = Blueprint("payments", url_prefix="/api/v1")


@bp.post("/payments/setup-intent")
@openapi.definition(summary="A Stripe SetupIntent: confirm it with the card form to save a card", tag="payments")
@openapi.response(201, json_response(SetupIntentAnswer), "the SetupIntent to confirm")
@authenticated(Role.CLIENT)
async def setup_intent(request: Request) -> HTTPResponse:
    intent = await payments.create_setup_intent(actor=current_session(request).user, settings=settings_of(request))
    return json({"setup_intent": intent}, status=201)


@bp.post("/cleaner/payouts/onboarding")
@openapi.definition(summary="A one-time Stripe link where a cleaner sets up payouts", tag="payments")
@openapi.response(201, json_response(OnboardingAnswer), "a new onboarding link")
@authenticated(Role.CLEANER)
async def payout_onboarding(request: Request) -> HTTPResponse:
    link = await payments.start_onboarding(actor=current_session(request).user, settings=settings_of(request))
    return json({"onboarding": link}, status=201)


class RefundBody(Body):
    amount_minor: int | None = Field(default=None, ge=1, le=100_000_000,
                                     description="minor units; absent: all that is left to refund")
    reason: str = Field(max_length=500)


@bp.post("/admin/bookings/<booking_id:str>/refund")
@openapi.definition(summary="Staff refund part or all of what a booking captured; 409 when nothing was, "
                            "422 above what is left", body=openapi_body(RefundBody), tag="admin")
@openapi.response(200, json_response(BookingAnswer), "the booking, refunded")
@authenticated(Role.ADMIN)
async def refund(request: Request, booking_id: str) -> HTTPResponse:
    body = parse_body(request, RefundBody)
    booking = await payments.refund_booking(parse_uuid(booking_id), actor=current_session(request).user,
                                            amount_minor=body.amount_minor, reason=body.reason,
                                            settings=settings_of(request))
    return json({"booking": booking_json(booking, Party.ADMIN)})


@bp.post("/webhooks/stripe")
@openapi.definition(summary="Stripe's webhook endpoint (signed with the endpoint secret)", tag="payments",
                    body=openapi_content({"type": "object", "description": "a Stripe event, as Stripe sends it"}))
@openapi.parameter("Stripe-Signature", str, "header", required=True,
                   description="Stripe's signature of the raw body (t=…,v1=…)")
@openapi.response(200, json_response(WebhookReceived), "received (a duplicate is acknowledged too)")
async def stripe_webhook(request: Request) -> HTTPResponse:
    event_id, new = await payments.receive_webhook(
        payload=request.body, signature=request.headers.get("stripe-signature", ""), settings=settings_of(request))
    return json({"received": True, "id": event_id, "duplicate": not new})
