"""Payments over REST: saving a card, a cleaner's payout onboarding, and Stripe's webhooks.
Thin handlers: parse, authorise, call storage.payments."""

from __future__ import annotations

from sanic import Blueprint, Request
from sanic.response import HTTPResponse, json
from sanic_ext import openapi

from core.accounts import Role
from edge.accounts import settings_of
from edge.auth import authenticated, current_session
from storage import payments

bp = Blueprint("payments", url_prefix="/api/v1")


@bp.post("/payments/setup-intent")
@openapi.definition(summary="A Stripe SetupIntent: confirm it with the card form to save a card", tag="payments")
@authenticated(Role.CLIENT)
async def setup_intent(request: Request) -> HTTPResponse:
    intent = await payments.create_setup_intent(actor=current_session(request).user, settings=settings_of(request))
    return json({"setup_intent": intent}, status=201)


@bp.post("/cleaner/payouts/onboarding")
@openapi.definition(summary="A one-time Stripe link where a cleaner sets up payouts", tag="payments")
@authenticated(Role.CLEANER)
async def payout_onboarding(request: Request) -> HTTPResponse:
    link = await payments.start_onboarding(actor=current_session(request).user, settings=settings_of(request))
    return json({"onboarding": link})


@bp.post("/webhooks/stripe")
@openapi.definition(summary="Stripe's webhook endpoint (signed with the endpoint secret)", tag="payments")
async def stripe_webhook(request: Request) -> HTTPResponse:
    event_id, new = await payments.receive_webhook(
        payload=request.body, signature=request.headers.get("stripe-signature", ""), settings=settings_of(request))
    return json({"received": True, "id": event_id, "duplicate": not new})
