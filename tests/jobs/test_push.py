"""Device tokens, notification preferences, and push sends through firebase-admin to a local FCM."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client
from tortoise.transactions import in_transaction

from core.events import EventType
from jobs.push import FcmSender, push_worker
from jobs.relay import relay_until_empty
from jobs.worker import Worker
from storage import outbox
from storage.devices import register_device
from storage.models import Device, User
from tests.fakes.fcm import FcmFake


async def request_push(user_ids: list[str], *, category: str = "bookings", badge: int | None = 3) -> str:
    payload = {"user_ids": user_ids, "category": category, "title": "Booking confirmed",
               "body": "Ana will clean on Friday at 10:00", "data": {"route": "bookings/42"}}
    if badge is not None:
        payload["badge"] = badge
    async with in_transaction() as tx:
        return str(await outbox.enqueue(EventType.PUSH_REQUESTED, payload, using=tx))


async def run_push(nc: Client, settings) -> None:
    await relay_until_empty(nc, settings)
    spec = push_worker(settings)
    await Worker(nc, settings, spec).run(asyncio.Event(), until_idle_s=1.0)


def test_devices_are_registered_listed_and_removed_through_the_api(api, make_account):
    # given a signed-in client
    account = make_account()
    # when they register a device, then it is stored
    added = api.post("/api/v1/me/devices", json={"platform": "ios", "token": "tok-ios-1"}, headers=account.auth)
    assert added.status_code == 201 and added.json()["platform"] == "ios"
    # a bad platform is refused, naming the field
    bad = api.post("/api/v1/me/devices", json={"platform": "symbian", "token": "x"}, headers=account.auth)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "platform"
    # someone else cannot remove it
    other = make_account()
    assert api.delete("/api/v1/me/devices/tok-ios-1", headers=other.auth).status_code == 404
    # its owner can
    assert api.delete("/api/v1/me/devices/tok-ios-1", headers=account.auth).status_code == 204
    assert api.delete("/api/v1/me/devices/tok-ios-1", headers=account.auth).status_code == 404


def test_notification_preferences_default_on_and_can_be_switched_off(api, make_account):
    account = make_account()
    start = api.get("/api/v1/me/notification-preferences", headers=account.auth)
    assert start.json() == {"account": True, "bookings": True, "chat": True, "marketing": True}
    changed = api.put("/api/v1/me/notification-preferences", json={"marketing": False}, headers=account.auth)
    assert changed.status_code == 200 and changed.json()["marketing"] is False
    again = api.get("/api/v1/me/notification-preferences", headers=account.auth)
    assert again.json() == {"account": True, "bookings": True, "chat": True, "marketing": False}
    bad = api.put("/api/v1/me/notification-preferences", json={"weather": True}, headers=account.auth)
    assert bad.status_code == 422


async def test_a_push_reaches_each_device_with_the_fcm_payload_and_gone_tokens_are_pruned(
        nc: Client, push_settings, fcm_fake: FcmFake, api, make_account):
    # given a client with an iPhone, a token FCM no longer knows and one it calls invalid
    account = make_account()
    for platform, token in (("ios", "ios-ok"), ("android", "android-gone"), ("web", "web-invalid")):
        api.post("/api/v1/me/devices", json={"platform": platform, "token": token}, headers=account.auth)
    # and an Android phone on a current FCM SDK, registered by installation ID
    api.post("/api/v1/me/devices", json={"platform": "android", "token": "android-fid", "kind": "fid"},
             headers=account.auth)
    fcm_fake.unregistered.add("android-gone")
    fcm_fake.invalid.add("web-invalid")
    # when a push is requested for them
    event_id = await request_push([account.id])
    await run_push(nc, push_settings)
    # then FCM got exactly this message for each device, through firebase-admin
    assert fcm_fake.sent_to("ios-ok") == [{
        "token": "ios-ok",
        "notification": {"title": "Booking confirmed", "body": "Ana will clean on Friday at 10:00"},
        "data": {"route": "bookings/42", "category": "bookings", "event_id": event_id},
        "android": {"priority": "high",
                    "notification": {"channel_id": "spotless_default", "sound": "default"}},
        "apns": {"headers": {"apns-priority": "10"}, "payload": {"aps": {"sound": "default", "badge": 3}}},
    }]
    assert [m.get("fid") for m in fcm_fake.sent_to("android-fid")] == ["android-fid"]
    # and the tokens FCM reported unregistered or invalid are gone, the others kept
    left = await Device.filter(user_id=account.id).values_list("token", flat=True)
    assert sorted(left) == ["android-fid", "ios-ok"]


async def test_a_category_switched_off_sends_nothing(nc: Client, push_settings, fcm_fake: FcmFake,
                                                      api, make_account):
    account = make_account()
    api.post("/api/v1/me/devices", json={"platform": "ios", "token": "quiet-phone"}, headers=account.auth)
    api.put("/api/v1/me/notification-preferences", json={"chat": False}, headers=account.auth)
    await request_push([account.id], category="chat")
    await run_push(nc, push_settings)
    assert fcm_fake.sent_to("quiet-phone") == []


async def test_more_than_500_devices_go_out_in_batches(nc: Client, push_settings, fcm_fake: FcmFake,
                                                        make_account, monkeypatch):
    # given one account with 501 devices
    account = make_account()
    user = await User.get(id=account.id)
    tokens = [f"fleet-{n:03d}" for n in range(501)]
    for token in tokens:
        await register_device(actor=user, platform="android", token=token)
    batch_sizes: list[int] = []
    send = FcmSender.send

    async def counting(self, message):  # observes the batch sizes handed to firebase-admin
        batch_sizes.append(len(message.tokens or []) + len(message.fids or []))
        return await send(self, message)

    monkeypatch.setattr(FcmSender, "send", counting)
    # when a push goes to them
    await request_push([account.id], badge=None)
    await run_push(nc, push_settings)
    # then every device got it, in batches of at most 500
    assert batch_sizes == [500, 1]
    assert all(len(fcm_fake.sent_to(t)) == 1 for t in tokens)
    assert "badge" not in fcm_fake.sent_to("fleet-000")[0]["apns"]["payload"]["aps"]
