"""A local stand-in for the Stripe API, reached through the official `stripe` package.

Speaks Stripe's wire format for what Spotless uses: form-encoded requests with bracketed keys,
Bearer secret keys, Idempotency-Key replay, JSON objects with `id` / `object`, and error bodies
`{"error": {"type", "code", "message", ...}}` with Stripe's statuses. Endpoints: customers,
setup_intents, payment_intents (create with capture_method=manual, confirm, capture with
amount_to_capture, increment_authorization when the intent asked for it through
payment_method_options[card][request_incremental_authorization], cancel),
refunds, accounts and account_links. Stripe's test payment methods drive the outcomes:
`pm_card_chargeDeclined` is declined, `pm_card_authenticationRequired` needs 3-D Secure.
Also signs webhook events exactly as Stripe does (`Stripe-Signature: t=...,v1=...`), and fails
chosen calls on demand (`fail_next`) with Stripe's error bodies and `Stripe-Should-Retry`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from typing import Any
from urllib.parse import parse_qsl

from tests.fakes.server import LoopbackServer, QuietHandler

API_KEY = "sk_test_spotless_fake"


def parse_form(body: str) -> dict[str, Any]:
    """`a[b][c]=1&d[0]=x` into nested dicts (lists stay dicts keyed by index; we never need them)."""
    out: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        parts = key.replace("]", "").split("[")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


class StripeError(Exception):
    def __init__(self, status: int, type_: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"type": type_, "message": message, **extra}}


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


class StripeFake(LoopbackServer):
    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.idempotent: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}
        self.requests: list[tuple[str, str, dict[str, Any], str | None]] = []  # method, path, params, key
        self.lock = threading.Lock()
        self.failures: list[list[Any]] = []  # [path suffix, times left, StripeError], see fail_next
        fake = self

        class Handler(QuietHandler):
            def _answer(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                path, _, query = self.path.partition("?")
                params = parse_form(raw or query)
                status, body = fake.handle(method, path, params, self.headers.get("Authorization", ""),
                                           self.headers.get("Idempotency-Key"))
                headers = {"Request-Id": _id("req")}
                if status >= 500:  # as Stripe: a retry with this key would only replay the failure
                    headers["Stripe-Should-Retry"] = "false"
                self.reply_json(status, body, headers)

            def do_GET(self) -> None:  # noqa: N802
                self._answer("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._answer("POST")

        super().__init__(Handler)


    # --- the HTTP surface ---

    def handle(self, method: str, path: str, params: dict[str, Any], auth: str,
               idempotency_key: str | None) -> tuple[int, dict[str, Any]]:
        if auth != f"Bearer {API_KEY}":
            return 401, {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}}
        with self.lock:
            self.requests.append((method, path, params, idempotency_key))
            if method == "POST" and idempotency_key and (path, idempotency_key) in self.idempotent:
                return self.idempotent[(path, idempotency_key)]
            try:
                self._injected_failure(method, path)
                answer = 200, self.route(method, path.rstrip("/").split("/")[2:], params)
            except StripeError as exc:
                answer = exc.status, exc.body
            if method == "POST" and idempotency_key:
                self.idempotent[(path, idempotency_key)] = answer
            return answer

    def _injected_failure(self, method: str, path: str) -> None:
        for failure in self.failures:
            if method == "POST" and path.rstrip("/").endswith(failure[0]) and failure[1] > 0:
                failure[1] -= 1
                raise failure[2]

    def _get(self, object_id: str, kind: str) -> dict[str, Any]:
        found = self.objects.get(object_id)
        if found is None or found["object"] != kind:
            raise StripeError(404, "invalid_request_error", f"No such {kind}: '{object_id}'",
                              code="resource_missing", param="id")
        return found

    def _store(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.objects[obj["id"]] = obj
        return obj

    def route(self, method: str, parts: list[str], p: dict[str, Any]) -> dict[str, Any]:
        match (method, parts):
            case ("POST", ["customers"]):
                return self._store({"id": _id("cus"), "object": "customer", "email": p.get("email"),
                                    "metadata": p.get("metadata", {})})
            case ("POST", ["setup_intents"]):
                sid = _id("seti")
                return self._store({"id": sid, "object": "setup_intent", "customer": p.get("customer"),
                                    "client_secret": f"{sid}_secret_{secrets.token_hex(8)}",
                                    "status": "requires_payment_method", "usage": p.get("usage", "off_session"),
                                    "metadata": p.get("metadata", {})})
            case ("POST", ["payment_intents"]):
                return self._create_intent(p)
            case ("GET", ["payment_intents", pid]):
                return self._get(pid, "payment_intent")
            case ("POST", ["payment_intents", pid, "capture"]):
                return self._capture(self._get(pid, "payment_intent"), p)
            case ("POST", ["payment_intents", pid, "increment_authorization"]):
                return self._increment(self._get(pid, "payment_intent"), p)
            case ("POST", ["payment_intents", pid, "cancel"]):
                intent = self._get(pid, "payment_intent")
                if intent["status"] not in {"requires_capture", "requires_payment_method", "requires_action"}:
                    raise StripeError(400, "invalid_request_error", "This PaymentIntent could not be canceled "
                                      f"because it has a status of {intent['status']}.",
                                      code="payment_intent_unexpected_state")
                intent.update(status="canceled", amount_capturable=0,
                              cancellation_reason=p.get("cancellation_reason", "requested_by_customer"))
                return intent
            case ("POST", ["refunds"]):
                intent = self._get(p.get("payment_intent", ""), "payment_intent")
                amount = int(p.get("amount", intent["amount_received"] - intent["amount_refunded"]))
                if amount > intent["amount_received"] - intent["amount_refunded"]:
                    raise StripeError(400, "invalid_request_error", "Refund amount is greater than unrefunded "
                                      "amount on charge", code="amount_too_large", param="amount")
                if intent["status"] != "succeeded":
                    raise StripeError(400, "invalid_request_error", f"This PaymentIntent ({intent['id']}) does "
                                      "not have a successful charge to refund.", code="charge_not_refundable")
                intent["amount_refunded"] += amount
                return self._store({"id": _id("re"), "object": "refund", "amount": amount,
                                    "payment_intent": intent["id"], "status": "succeeded",
                                    "metadata": p.get("metadata", {})})
            case ("POST", ["accounts"]):
                return self._store({"id": _id("acct"), "object": "account", "type": p.get("type", "express"),
                                    "email": p.get("email"), "charges_enabled": False,
                                    "payouts_enabled": False, "details_submitted": False,
                                    "metadata": p.get("metadata", {})})
            case ("GET", ["accounts", aid]):
                return self._get(aid, "account")
            case ("POST", ["account_links"]):
                account = self._get(p.get("account", ""), "account")
                return {"object": "account_link", "created": int(time.time()),
                        "expires_at": int(time.time()) + 300,
                        "url": f"https://connect.stripe.com/setup/e/{account['id']}/{secrets.token_hex(8)}"}
        raise StripeError(404, "invalid_request_error", f"Unrecognized request URL ({method}: /v1/{'/'.join(parts)})")

    def _create_intent(self, p: dict[str, Any]) -> dict[str, Any]:
        amount = int(p["amount"])
        intent = {"id": _id("pi"), "object": "payment_intent", "amount": amount, "currency": p["currency"],
                  "customer": p.get("customer"), "payment_method": p.get("payment_method"),
                  "capture_method": p.get("capture_method", "automatic"), "status": "requires_payment_method",
                  "amount_capturable": 0, "amount_received": 0, "amount_refunded": 0,
                  "application_fee_amount": int(p["application_fee_amount"]) if "application_fee_amount" in p
                  else None, "transfer_data": p.get("transfer_data"), "metadata": p.get("metadata", {}),
                  "payment_method_options": p.get("payment_method_options", {})}
        intent["client_secret"] = f"{intent['id']}_secret_{secrets.token_hex(8)}"
        self._store(intent)
        if p.get("confirm") == "true":
            method = p.get("payment_method", "")
            if method == "pm_card_chargeDeclined":
                intent["status"] = "requires_payment_method"
                raise StripeError(402, "card_error", "Your card was declined.", code="card_declined",
                                  decline_code="generic_decline", payment_intent=intent)
            if method == "pm_card_authenticationRequired":
                intent["status"] = "requires_action"
                raise StripeError(402, "card_error", "Your card was declined. This transaction requires "
                                  "authentication.", code="authentication_required",
                                  decline_code="authentication_required", payment_intent=intent)
            if intent["capture_method"] == "manual":
                intent.update(status="requires_capture", amount_capturable=amount)
            else:
                intent.update(status="succeeded", amount_received=amount)
        return intent

    def _capture(self, intent: dict[str, Any], p: dict[str, Any]) -> dict[str, Any]:
        if intent["status"] != "requires_capture":
            raise StripeError(400, "invalid_request_error", "This PaymentIntent could not be captured because "
                              f"it has a status of {intent['status']}.", code="payment_intent_unexpected_state")
        amount = int(p.get("amount_to_capture", intent["amount_capturable"]))
        if amount > intent["amount_capturable"]:
            raise StripeError(400, "invalid_request_error", "amount_to_capture is greater than the amount "
                              "capturable", code="amount_too_large", param="amount_to_capture")
        if "application_fee_amount" in p:
            intent["application_fee_amount"] = int(p["application_fee_amount"])
        intent.update(status="succeeded", amount_received=amount, amount_capturable=0)
        return intent

    def _increment(self, intent: dict[str, Any], p: dict[str, Any]) -> dict[str, Any]:
        """Raise the hold to `amount` (the new total), as Stripe does for an eligible intent; a
        refusal by the card is a 402 card_declined (inject it with fail_next)."""
        if intent["status"] != "requires_capture":
            raise StripeError(400, "invalid_request_error", "This PaymentIntent's amount could not be updated "
                              f"because it has a status of {intent['status']}.",
                              code="payment_intent_unexpected_state")
        card = intent.get("payment_method_options", {}).get("card", {})
        if card.get("request_incremental_authorization") not in {"if_available", "required"}:
            raise StripeError(400, "invalid_request_error", "Incremental authorization is not available for this "
                              "PaymentIntent: request it with payment_method_options[card]"
                              "[request_incremental_authorization].", param="amount")
        if "amount" not in p:
            raise StripeError(400, "invalid_request_error", "Missing required param: amount.",
                              code="parameter_missing", param="amount")
        amount = int(p["amount"])
        if amount <= intent["amount"]:
            raise StripeError(400, "invalid_request_error", "The amount must be greater than the currently "
                              "authorized amount.", code="amount_too_small", param="amount")
        intent.update(amount=amount, amount_capturable=amount)
        if "application_fee_amount" in p:
            intent["application_fee_amount"] = int(p["application_fee_amount"])
        return intent

    # --- helpers for tests ---

    def enable_account(self, account_id: str) -> dict[str, Any]:
        """What finishing Express onboarding does to the account."""
        account = self.objects[account_id]
        account.update(charges_enabled=True, payouts_enabled=True, details_submitted=True)
        return account

    def fail_next(self, path_suffix: str, *, times: int = 1, status: int = 500, type_: str = "api_error",
                  message: str = "An unknown error occurred", **extra: Any) -> None:
        """The next `times` POSTs to a path ending in `path_suffix` (e.g. "/capture") fail as
        Stripe fails. Like Stripe, the failure is saved under the request's idempotency key."""
        with self.lock:
            self.failures.append([path_suffix, times, StripeError(status, type_, message, **extra)])

    def calls(self, path_prefix: str) -> list[tuple[str, str, dict[str, Any], str | None]]:
        return [r for r in self.requests if r[1].startswith(path_prefix)]


def event(type_: str, obj: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
    return {"id": event_id or _id("evt"), "object": "event", "api_version": "2024-06-20", "type": type_,
            "created": int(time.time()), "livemode": False, "data": {"object": obj}}


def signed(payload: dict[str, Any], secret: str, *, at: int | None = None) -> tuple[bytes, dict[str, str]]:
    """The body and headers Stripe sends a webhook endpoint with."""
    body = json.dumps(payload).encode()
    timestamp = at if at is not None else int(time.time())
    signature = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return body, {"Stripe-Signature": f"t={timestamp},v1={signature}", "Content-Type": "application/json"}
