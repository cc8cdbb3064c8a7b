"""Revoked access closes sockets: a suspended account, a password reset or a signed-out token
ends the sockets that token authorised, on whichever edge worker they are, with 4009, and the
rest of the channel carries on. The path is the product's: the outbox row written with the
change, the relay, the realtime job, `sys.sockets.revoked` on NATS, every edge worker."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from nats.aio.client import Client

from core.events import SOCKETS_REVOKED_SUBJECT, socket_grant_subject
from core.settings import Settings
from edge.realtime.hub import Hub
from storage.bus import Bus
from tests.conftest import STRONG_PASSWORD
from tests.edge.test_access import make_admin
from tests.jobs.conftest import eventually
from tests.jobs.test_realtime_broadcasts import run_realtime
from tests.realtime.conftest import auth_for, on_conversation


async def closed_with(sock: Any, code: int) -> str:
    """Wait for `pusher:error` with `code`, then the close; the error's message."""
    error = await sock.expect_error(code, wait_s=10)
    assert (await sock.frame(wait_s=10))["event"] == "closed"
    return str(error["data"]["message"])


async def test_suspending_a_user_closes_every_socket_their_token_authorised_on_every_worker(
        booking, sockets, rt_api, nc: Client, settings: Settings):
    # given a client with two sockets: one on edge 1 on their own channel and the conversation
    # (signed by edge 0, so edge 1 hears of it over NATS), one on edge 0 on the booking channel only
    client, cleaner, conversation_id = await booking()
    on_two, presence = await on_conversation(sockets, rt_api, client, conversation_id, edge=1)
    await on_two.subscribe(f"private-user.{client.id}",
                           auth_for(rt_api, client, on_two.socket_id, f"private-user.{client.id}"))
    on_zero = await sockets(0)
    booking_channel = f"private-booking.{conversation_id}"
    await on_zero.subscribe(booking_channel, auth_for(rt_api, client, on_zero.socket_id, booking_channel))
    # and the cleaner on the same conversation and booking channel
    cleaners, _ = await on_conversation(sockets, rt_api, cleaner, conversation_id, edge=0)
    await cleaners.subscribe(booking_channel, auth_for(rt_api, cleaner, cleaners.socket_id, booking_channel))
    # when staff suspend the client and the realtime job runs
    admin_auth, _ = await make_admin(rt_api, settings)
    suspended = rt_api.post(f"/api/v1/admin/users/{client.id}/suspend", headers=admin_auth,
                            json={"reason": "fraud"})
    assert suspended.status_code == 200, suspended.text
    await run_realtime(nc, settings)
    # then both of the client's sockets are told why and closed with 4009
    for sock in (on_two, on_zero):
        assert "suspended" in await closed_with(sock, 4009)
    # and the cleaner sees the client leave the conversation, and stays connected
    removed = await cleaners.expect("pusher_internal:member_removed", presence, wait_s=10)
    assert removed["data"]["user_id"] == client.id
    published = rt_api.post(f"/api/v1/conversations/{conversation_id}/messages", headers=cleaner.auth,
                            json={"client_msg_id": "after-suspension", "body": "still there?"})
    assert published.status_code == 201, published.text
    assert (await cleaners.expect("chat.message", presence))["data"]["body"] == "still there?"


async def test_signing_out_one_device_closes_only_that_devices_socket(sockets, rt_api, party, nc, settings):
    # given one user signed in on two devices, each with a socket on the user's channel
    user = party("client")
    second = rt_api.post("/api/v1/auth/login", json={"email": user.email, "password": STRONG_PASSWORD,
                                                     "device_name": "tablet"})
    assert second.status_code == 200, second.text
    tablet_auth = {"Authorization": f"Bearer {second.json()['token']}"}
    channel = f"private-user.{user.id}"
    phone, tablet = await sockets(0), await sockets(1)
    await phone.subscribe(channel, auth_for(rt_api, user, phone.socket_id, channel))
    signed = rt_api.post("/api/v1/broadcasting/auth", headers=tablet_auth,
                         data={"socket_id": tablet.socket_id, "channel_name": channel})
    await tablet.subscribe(channel, signed.json())
    # when the phone signs out
    assert rt_api.post("/api/v1/auth/logout", headers=user.auth).status_code == 204
    await run_realtime(nc, settings)
    # then the phone's socket is closed and the tablet's still hears the channel
    assert "signed out" in await closed_with(phone, 4009)
    await tablet.nothing("pusher:error", within=0.5)
    await tablet.send("pusher:ping")
    await tablet.expect("pusher:pong")


async def test_a_password_reset_closes_the_sockets_of_every_session(sockets, rt_api, party, nc, settings):
    # given a user with a socket on their channel
    user = party("cleaner")
    channel = f"private-user.{user.id}"
    sock = await sockets(1)
    await sock.subscribe(channel, auth_for(rt_api, user, sock.socket_id, channel))
    # when they reset their password through the e-mailed link
    assert rt_api.post("/api/v1/auth/password/forgot", json={"email": user.email}).status_code == 202
    reset = await _reset_with(rt_api, user.email)
    assert reset.status_code == 200, reset.text
    await run_realtime(nc, settings)
    # then the socket is closed, saying why
    assert "password was reset" in await closed_with(sock, 4009)


async def _reset_with(rt_api: Any, email: str) -> Any:
    """Reset the password with the token the mail carried (read from the outbox event)."""
    from storage.models import OutboxEvent

    event = await OutboxEvent.filter(type="account.password_reset_requested",
                                     payload__contains={"email": email}).order_by("-id").first()
    assert event is not None
    return rt_api.post("/api/v1/auth/password/reset", json={
        "token": event.payload["token"], "password": STRONG_PASSWORD + " again"})


class Recorder:
    """The registry's view of one socket, standing in for a WebSocket connection."""

    def __init__(self, socket_id: str) -> None:
        self.socket_id, self.app_id = socket_id, "100001"
        self.grants: set[int] = set()
        self.revoked: list[str] = []

    def deliver(self, text: str, frame: bytes | None = None) -> None:
        pass

    def revoke(self, reason: str) -> None:
        self.revoked.append(reason)


@pytest.mark.parametrize("granted_after_s, closed", [(-1.0, True), (60.0, False)])
async def test_a_grant_heard_after_its_revocation_still_closes_its_socket_unless_it_is_newer(
        settings: Settings, granted_after_s: float, closed: bool):
    # given a worker's registry on the real NATS server, holding one socket
    bus = Bus(settings.nats_url, name="spotless-test-hub")
    bus.start()
    hub = Hub(bus)
    hub.start()
    try:
        assert await bus.wait_connected(10)
        sock = Recorder(hub.new_socket_id())
        hub.register("100001", sock)
        await _until_listening(hub)
        # when a revocation of token 41 arrives first, and the grant it revoked only afterwards
        revoked_at = time.time()
        assert bus.client is not None
        await bus.client.publish(SOCKETS_REVOKED_SUBJECT, json.dumps(
            {"user_id": "u", "token_ids": [41], "reason": "suspended", "at": revoked_at}).encode())
        await bus.client.flush()
        await eventually(lambda: len(hub.revocations) == 1)
        await grant_over_nats(bus, hub, sock.socket_id, 41, revoked_at + granted_after_s)
        await eventually(lambda: 41 in sock.grants)
        # then a grant made before the revocation closes the socket; one made after it (the
        # account reinstated meanwhile) does not
        assert sock.revoked == (["suspended"] if closed else [])
        # and another token's grant never does
        await grant_over_nats(bus, hub, sock.socket_id, 42, revoked_at - 1)
        await eventually(lambda: 42 in sock.grants)
        assert sock.revoked == (["suspended"] if closed else [])
    finally:
        await hub.stop()
        await bus.close()


async def grant_over_nats(bus: Bus, hub: Hub, socket_id: str, token_id: int, at: float) -> None:
    """What the auth endpoint of another worker sends the socket's worker."""
    assert bus.client is not None
    await bus.client.publish(socket_grant_subject(hub.worker), json.dumps(
        {"socket_id": socket_id, "token_id": token_id, "at": at}).encode())
    await bus.client.flush()


async def _until_listening(hub: Hub) -> None:
    assert hub._listening is not None
    await asyncio.wait_for(asyncio.shield(hub._listening), 10)
