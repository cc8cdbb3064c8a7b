"""Revoked access closes sockets: a suspended account, a password reset or a signed-out token
ends the sockets that token authorised, on whichever edge worker they are, with 4009, and the
rest of the channel carries on. The path is the product's: the outbox row written with the
change, the relay, the realtime job, `sys.sockets.revoked` on NATS, every edge worker."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from nats.aio.client import Client

from core.events import SOCKETS_REVOKED_SUBJECT, socket_grant_subject
from core.realtime import parse_apps
from core.settings import Settings
from edge.realtime.connection import Connection
from edge.realtime.hub import OFFERS_PER_SOCKET, Hub
from storage.bus import Bus
from storage.realtime_cache import ChannelCache
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


async def test_signing_out_after_signing_for_someone_elses_socket_leaves_that_socket_open(
        sockets, rt_api, rt_edges, booking, nc, settings):
    # given a client's socket on their own channel and on their booking's channel
    alice, mallory, booking_id = await booking()
    sock = await sockets(1)
    for channel in (f"private-user.{alice.id}", f"private-booking.{booking_id}"):
        await sock.subscribe(channel, auth_for(rt_api, alice, sock.socket_id, channel))
    # and the booking's other party, who has the endpoint sign that socket's id (Pusher's protocol
    # lets anyone signed in ask for any socket id) for a channel of their own and for the booking's
    # channel, whose signature for that socket is the very one the client subscribed with, on
    # either worker's endpoint
    for edge in rt_edges:
        async with httpx.AsyncClient(base_url=edge.url, timeout=30) as api:
            for channel in (f"private-user.{mallory.id}", f"private-booking.{booking_id}"):
                signed = await api.post("/api/v1/broadcasting/auth", headers=mallory.auth,
                                        data={"socket_id": sock.socket_id, "channel_name": channel})
                assert signed.status_code == 200, signed.text
    # when that other party signs out
    assert rt_api.post("/api/v1/auth/logout", headers=mallory.auth).status_code == 204
    await run_realtime(nc, settings)
    # then the socket stays open and on its channels
    await sock.nothing("pusher:error", within=1.0)
    await sock.send("pusher:ping")
    await sock.expect("pusher:pong")
    # while its own user's signing out still closes it
    assert rt_api.post("/api/v1/auth/logout", headers=alice.auth).status_code == 204
    await run_realtime(nc, settings)
    assert "signed out" in await closed_with(sock, 4009)


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
        self.awaiting_grant: dict[str, str] = {}
        self.revoked: list[str] = []

    def subscribe(self, hub: Hub, channel: str, auth: str) -> None:
        """What Connection.subscribe does once the signature checks out."""
        hub.subscribed(self, channel, auth)

    def deliver(self, text: str, frame: bytes | None = None) -> None:
        pass

    def revoke(self, reason: str) -> None:
        self.revoked.append(reason)

    def is_member(self, user_id: str) -> bool:
        return False


@pytest.fixture
async def hub(settings: Settings) -> Any:
    """A worker's registry on the real NATS server, listening. Its tests use negative token ids:
    the revocations they publish reach the suite's real edge workers too, which would close the
    sockets of any real token (ids from 1 up) that they named."""
    bus = Bus(settings.nats_url, name="spotless-test-hub")
    bus.start()
    registry = Hub(bus, ChannelCache(settings))
    registry.start()
    try:
        assert await bus.wait_connected(10)
        await _until_listening(registry)
        yield registry
    finally:
        await registry.stop()
        await bus.close()


@pytest.mark.parametrize("granted_after_s, closed", [(-1.0, True), (60.0, False)])
async def test_a_grant_heard_after_its_revocation_still_closes_its_socket_unless_it_is_newer(
        hub: Hub, granted_after_s: float, closed: bool):
    # given a worker holding one socket, subscribed with the signatures of tokens -41 and -42
    sock = Recorder(hub.new_socket_id())
    hub.register("100001", sock)
    sock.subscribe(hub, "private-user.a", "key:sig-41")
    sock.subscribe(hub, "private-user.b", "key:sig-42")
    # when a revocation of token -41 arrives first, and the grant it revoked only afterwards
    revoked_at = time.time()
    await revoke_over_nats(hub, [-41], revoked_at, reason="suspended")
    await grant_over_nats(hub, sock.socket_id, -41, revoked_at + granted_after_s, "private-user.a", "key:sig-41")
    await eventually(lambda: -41 in sock.grants)
    # then a grant made before the revocation closes the socket; one made after it (the
    # account reinstated meanwhile) does not
    assert sock.revoked == (["suspended"] if closed else [])
    # and another token's grant never does
    await grant_over_nats(hub, sock.socket_id, -42, revoked_at - 1, "private-user.b", "key:sig-42")
    await eventually(lambda: -42 in sock.grants)
    assert sock.revoked == (["suspended"] if closed else [])


async def test_a_signature_the_socket_never_used_binds_nothing(hub: Hub):
    # given a socket whose own user's token (7) got it a signature for their channel
    sock = Recorder(hub.new_socket_id())
    hub.register("100001", sock)
    await hub.grant(sock.socket_id, -7, "private-user.alice", "key:alice")
    # and a stranger who had the endpoint sign that socket id for their own channels (token -9),
    # locally and from another worker, more often than a worker keeps offers for
    await hub.grant(sock.socket_id, -9, "private-user.mallory", "key:mallory")
    for n in range(OFFERS_PER_SOCKET + 5):
        await grant_over_nats(hub, sock.socket_id, -9, time.time(), f"private-user.mallory{n}", f"key:{n}")
    # (every one of them heard: a grant sent after them, on the same subject, has bound)
    sock.subscribe(hub, "presence-heard", "key:heard")
    await grant_over_nats(hub, sock.socket_id, -8, time.time(), "presence-heard", "key:heard")
    await eventually(lambda: -8 in sock.grants)
    assert len(hub.offers[sock.socket_id]) == OFFERS_PER_SOCKET
    # when the socket subscribes with its own signature, and the stranger's token is revoked
    sock.subscribe(hub, "private-user.alice", "key:alice")
    await revoke_over_nats(hub, [-9], time.time())
    # then the socket stays open: its own offer was kept, and only the tokens it subscribed with
    # are bound to it
    assert sock.grants == {-7, -8}
    assert sock.revoked == []
    # and once its own token is revoked, it is closed
    await revoke_over_nats(hub, [-7], time.time())
    await eventually(lambda: sock.revoked == ["signed out"])
    # and a socket that goes away takes its offers with it
    hub.unregister("100001", sock)
    assert sock.socket_id not in hub.offers


async def test_a_subscription_left_before_its_grant_came_awaits_nothing_and_binds_nothing(hub: Hub, settings):
    # given a real connection (its socket unused: nothing here writes to it) that subscribed to
    # a private channel whose grant has not come yet
    connection = Connection(object(), parse_apps(settings.realtime_apps)[0], hub, presence=None,  # type: ignore[arg-type]
                            settings=settings)
    hub.register(connection.app_id, connection)
    hub.subscribed(connection, "private-user.never", "key:never")
    assert connection.awaiting_grant == {"private-user.never": "key:never"}
    # when it leaves the channel, and the grant comes after
    await connection.unsubscribe("private-user.never")
    await hub.grant(connection.socket_id, -11, "private-user.never", "key:never")
    # then it awaits nothing, and the late grant bound nothing to it
    assert connection.awaiting_grant == {}
    assert connection.grants == set()
    hub.unregister(connection.app_id, connection)


async def test_a_grant_heard_after_the_socket_subscribed_with_it_binds_and_only_the_first(hub: Hub):
    # given a socket that subscribed with a signature whose grant is still on its way from the
    # worker that signed it
    sock = Recorder(hub.new_socket_id())
    hub.register("100001", sock)
    sock.subscribe(hub, "private-booking.b", "key:sig")
    assert sock.grants == set()
    # when the grant arrives, and then another token's grant of the same signature (the
    # booking's other party asking for this socket's id)
    await grant_over_nats(hub, sock.socket_id, -11, time.time(), "private-booking.b", "key:sig")
    await eventually(lambda: sock.grants == {-11})
    await grant_over_nats(hub, sock.socket_id, -12, time.time(), "private-booking.b", "key:sig")
    await eventually(lambda: ("private-booking.b", "key:sig") in hub.offers.get(sock.socket_id, {}))
    # then the first is bound and the second is not: revoking the second leaves the socket open
    assert sock.grants == {-11}
    await revoke_over_nats(hub, [-12], time.time())
    assert sock.revoked == []
    await revoke_over_nats(hub, [-11], time.time())
    await eventually(lambda: sock.revoked == ["signed out"])


async def test_of_two_grants_heard_before_the_subscription_the_first_binds(hub: Hub):
    # given a socket whose own user's token (-21) and then a stranger's (-22) got the same signature
    sock = Recorder(hub.new_socket_id())
    hub.register("100001", sock)
    await hub.grant(sock.socket_id, -21, "private-booking.b", "key:sig")
    await hub.grant(sock.socket_id, -22, "private-booking.b", "key:sig")
    # when the socket subscribes with it
    sock.subscribe(hub, "private-booking.b", "key:sig")
    # then only the first token is bound
    assert sock.grants == {-21}


async def test_a_grant_from_an_earlier_release_binds_at_once(hub: Hub):
    # given a socket, and a grant in the format of an earlier release (no channel, no signature),
    # as a worker not yet upgraded sends it during a rolling upgrade
    sock = Recorder(hub.new_socket_id())
    hub.register("100001", sock)
    assert hub.bus.client is not None
    await hub.bus.client.publish(socket_grant_subject(hub.worker), json.dumps(
        {"socket_id": sock.socket_id, "token_id": -5, "at": time.time()}).encode())
    # then it binds as it did then
    await eventually(lambda: sock.grants == {-5})


async def grant_over_nats(hub: Hub, socket_id: str, token_id: int, at: float, channel: str, auth: str) -> None:
    """What the auth endpoint of another worker sends the socket's worker."""
    assert hub.bus.client is not None
    await hub.bus.client.publish(socket_grant_subject(hub.worker), json.dumps(
        {"socket_id": socket_id, "token_id": token_id, "at": at, "channel": channel, "auth": auth}).encode())
    await hub.bus.client.flush()


async def revoke_over_nats(hub: Hub, token_ids: list[int], at: float, reason: str = "signed out") -> None:
    """What the realtime job publishes when tokens are revoked."""
    assert hub.bus.client is not None
    before = len(hub.revocations)
    await hub.bus.client.publish(SOCKETS_REVOKED_SUBJECT, json.dumps(
        {"user_id": "u", "token_ids": token_ids, "reason": reason, "at": at}).encode())
    await hub.bus.client.flush()
    await eventually(lambda: len(hub.revocations) > before)


async def _until_listening(hub: Hub) -> None:
    assert hub._listening is not None
    await asyncio.wait_for(asyncio.shield(hub._listening), 10)
