"""Cache channels (Pusher's `cache-`, `private-cache-`, `presence-cache-`, as Reverb has them):
a new subscriber gets the channel's last event first, from whichever worker published it, or
`pusher:cache_miss`."""

from __future__ import annotations

from tests.realtime.conftest import unique
from tests.realtime.test_channel_queries import join
from tests.realtime.test_events_api import sdk, trigger


async def test_a_new_subscriber_gets_the_last_event_published_on_any_worker(sockets, rt_edges):
    channel = unique("cache-scores.")
    # given a cache channel nobody has published on: a subscriber hears it missed
    first = await sockets(0)
    await first.subscribe(channel)
    assert await first.frame() == {"event": "pusher:cache_miss", "channel": channel}
    # when the server publishes two events through worker 0, before anyone on worker 1 listens
    await trigger(sdk(rt_edges[0]).trigger, [channel], "score", {"home": 1, "away": 0})
    await trigger(sdk(rt_edges[0]).trigger, [channel], "score", {"home": 2, "away": 0})
    assert [(await first.expect("score", channel))["data"] for _ in range(2)] == [
        {"home": 1, "away": 0}, {"home": 2, "away": 0}]
    # then a socket subscribing on worker 1 gets the last one, right after subscription_succeeded
    late = await sockets(1)
    await late.subscribe(channel)
    assert await late.frame() == {"event": "score", "channel": channel, "data": {"home": 2, "away": 0}}
    # and later events reach it live, once each
    await trigger(sdk(rt_edges[1]).trigger, [channel], "score", {"home": 2, "away": 1})
    assert (await late.expect("score", channel))["data"] == {"home": 2, "away": 1}
    await late.nothing("score")
    # and the same name on another app is another channel, with nothing cached
    other_app = await sockets(0, "other-key")
    await other_app.subscribe(channel)
    assert (await other_app.frame())["event"] == "pusher:cache_miss"


async def test_client_events_are_cached_and_member_events_are_not(sockets):
    # given a private cache channel with a member who whispers
    private = unique("private-cache-board.")
    author = await sockets(0)
    await join(author, private)
    assert (await author.frame())["event"] == "pusher:cache_miss"
    await author.send("client-moved", {"card": 7}, channel=private)
    # then a later subscriber gets the whisper first
    reader = await sockets(1)
    await join(reader, private)
    assert await reader.frame() == {"event": "client-moved", "channel": private, "data": {"card": 7}}

    # given a presence cache channel where one member joined after another (member_added)
    room = unique("presence-cache-room.")
    ada = await sockets(0)
    await join(ada, room, "ada")
    assert (await ada.frame())["event"] == "pusher:cache_miss"
    await join(await sockets(1), room, "bob")
    await ada.expect("pusher_internal:member_added", room)
    # then a third member hears a miss: the protocol's member events are not the channel's events
    cy = await sockets(1)
    await join(cy, room, "cy")
    assert (await cy.frame())["event"] == "pusher:cache_miss"
    # and a member's whisper is cached with who sent it, as presence channels carry it
    await ada.send("client-typing", {"on": True}, channel=room)
    dee = await sockets(0)
    await join(dee, room, "dee")
    assert await dee.frame() == {"event": "client-typing", "channel": room, "data": {"on": True},
                                 "user_id": "ada"}
