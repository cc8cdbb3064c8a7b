"""Booking changes reach the parties live: outbox → relay → JetStream → realtime worker → `rt.<channel>`
on core NATS, read here by a plain NATS subscriber as an edge worker would."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from datetime import datetime
from typing import Any
from uuid import uuid4

from nats.aio.client import Client
from nats.aio.msg import Msg

from core.events import EVENT_ID_HEADER, EVENT_TYPE_HEADER, consumer_name, job_subject, jobs_stream
from core.realtime import parse_apps
from jobs.realtime import realtime_worker
from jobs.relay import relay_until_empty
from jobs.worker import Worker
from storage import bookings
from storage.models import OutboxEvent, ProcessedEvent, User
from tests.jobs.conftest import eventually
from tests.realtime.conftest import auth_for
from tests.realtime.pusher_client import PusherSocket
from tests.storage.test_bookings import bookable_cleaner, make_user, request_for, tomorrow_at


async def run_realtime(nc: Client, settings) -> None:
    """Relay what is pending, then run the realtime worker until it is idle."""
    await relay_until_empty(nc, settings)
    await Worker(nc, settings, realtime_worker(settings)).run(asyncio.Event(), until_idle_s=0.5)


async def listen(nc: Client, *channels: str) -> dict[str, list[dict[str, Any]]]:
    """Every message published on `rt.<channel>` from now on, decoded, per channel."""
    heard: dict[str, list[dict[str, Any]]] = defaultdict(list)

    async def keep(msg: Msg) -> None:
        heard[msg.subject.removeprefix("rt.")].append(json.loads(msg.data))

    for channel in channels:
        await nc.subscribe(f"rt.{channel}", cb=keep)
    await nc.flush()
    return heard


async def booking_between(settings) -> tuple[User, User, bookings.Booking]:
    cleaner, client = await bookable_cleaner(settings), await make_user(settings, "client")
    booking = await bookings.create_booking(
        actor=client, settings=settings, request=request_for(cleaner, tomorrow_at(10))
    )
    return client, cleaner, booking


async def test_a_new_booking_and_its_acceptance_reach_both_parties_and_the_booking_channel(
    nc: Client, settings
):
    # given a client who just requested a cleaner, and subscribers on the channels of all three
    client, cleaner, booking = await booking_between(settings)
    on_booking, on_client, on_cleaner = (
        f"private-booking.{booking.id}",
        f"private-user.{client.id}",
        f"private-user.{cleaner.id}",
    )
    heard = await listen(nc, on_booking, on_client, on_cleaner)
    # when the relay and the realtime worker run
    await run_realtime(nc, settings)
    # then each channel got booking.created, once, from the platform's app, with the booking's facts
    await eventually(lambda: all(len(heard[c]) == 1 for c in (on_booking, on_client, on_cleaner)))
    event = await OutboxEvent.get(
        type="booking.requested", payload__contains={"booking_id": str(booking.id)}
    )
    message = heard[on_booking][0]
    assert message.keys() == {"app_id", "channel", "event", "data"}
    assert (message["app_id"], message["channel"], message["event"]) == (
        parse_apps(settings.realtime_apps)[0].id,
        on_booking,
        "booking.created",
    )
    data = json.loads(message["data"])  # Pusher event data travels as a JSON string
    assert data == {
        "booking_id": str(booking.id),
        "state": "requested",
        "change": "booking.requested",
        "by": "client",
        "client_id": str(client.id),
        "cleaner_id": str(cleaner.id),
        "starts_at": booking.starts_at.isoformat(),
        "at": data["at"],
        "event_id": str(event.event_id),
    }
    assert abs((event.created_at - datetime.fromisoformat(data["at"])).total_seconds()) < 1
    assert [json.loads(m["data"]) for m in heard[on_client] + heard[on_cleaner]] == [data, data]
    assert [m["channel"] for m in heard[on_client]] == [on_client]
    assert await ProcessedEvent.filter(consumer="realtime", event_id=event.event_id).exists()

    # when the cleaner accepts
    await bookings.accept_booking(booking.id, actor=cleaner, settings=settings)
    await run_realtime(nc, settings)
    # then everyone hears booking.updated, moved by the cleaner
    await eventually(lambda: all(len(heard[c]) == 2 for c in (on_booking, on_client, on_cleaner)))
    update = heard[on_client][1]
    assert update["event"] == "booking.updated"
    assert (
        json.loads(update["data"]).items()
        >= {"state": "accepted", "change": "booking.accepted", "by": "cleaner"}.items()
    )


async def test_a_redelivered_booking_event_is_not_published_twice(nc: Client, settings):
    # given a booking whose request was already broadcast
    client, _, booking = await booking_between(settings)
    on_client = f"private-user.{client.id}"
    heard = await listen(nc, on_client)
    await run_realtime(nc, settings)
    await eventually(lambda: len(heard[on_client]) == 1)
    event = await OutboxEvent.get(
        type="booking.requested", payload__contains={"booking_id": str(booking.id)}
    )
    # when the same event reaches JetStream again (a relay re-publishing after the duplicate window)
    await nc.jetstream().publish(
        job_subject("booking.requested", prefix=settings.jetstream_prefix),
        json.dumps(event.payload).encode(),
        headers={
            "Nats-Msg-Id": str(uuid4()),
            EVENT_ID_HEADER: str(event.event_id),
            EVENT_TYPE_HEADER: "booking.requested",
        },
    )
    await run_realtime(nc, settings)
    await nc.flush()
    await asyncio.sleep(0.5)
    # then nothing more was published, and the copy was acked
    assert len(heard[on_client]) == 1
    info = await nc.jetstream().consumer_info(
        jobs_stream(settings.jetstream_prefix),
        consumer_name(settings.jetstream_prefix, "realtime", "booking.requested"),
    )
    assert info.num_pending == 0 and info.num_ack_pending == 0


async def test_a_signed_in_client_sees_the_acceptance_on_their_pusher_socket(
    nc: Client, settings, edge, api, make_account
):
    # given a client signed in over the API, with a booking they just requested
    account = make_account(role="client")
    client, cleaner = await User.get(id=account.id), await bookable_cleaner(settings)
    booking = await bookings.create_booking(
        actor=client, settings=settings, request=request_for(cleaner, tomorrow_at(14))
    )
    # and an app socket on the edge, subscribed to their own channel and the booking's
    app_key = parse_apps(settings.realtime_apps)[0].key
    sock = await PusherSocket.connect(
        edge.url.replace("http://", "ws://") + f"/app/{app_key}?protocol=7"
    )
    try:
        for channel in (f"private-user.{client.id}", f"private-booking.{booking.id}"):
            await sock.subscribe(channel, auth_for(api, account, sock.socket_id, channel))
        await run_realtime(nc, settings)
        created = await sock.expect("booking.created", f"private-user.{client.id}")
        assert created["data"]["booking_id"] == str(booking.id)
        # when the cleaner accepts
        await bookings.accept_booking(booking.id, actor=cleaner, settings=settings)
        await run_realtime(nc, settings)
        # then the booking screen hears it, as pusher-js would deliver it
        updated = await sock.expect("booking.updated", f"private-booking.{booking.id}")
        assert (updated["data"]["state"], updated["data"]["by"]) == ("accepted", "cleaner")
    finally:
        await sock.close()
