"""Who hears a cleaner's presence, and who sees their location (core/cleaner_presence.py)."""

from __future__ import annotations

from core.cleaner_presence import Watcher, presence_broadcasts

AT = "2026-11-25T10:00:00+00:00"


def test_every_watching_client_hears_a_change_but_only_trackers_see_the_location():
    # given one client with an accepted booking, one with the cleaner on the way to them, and a
    # third with both kinds of booking
    watchers = [Watcher("a", "b1", "accepted"), Watcher("o", "b2", "on_the_way"),
                Watcher("x", "b3", "accepted"), Watcher("x", "b4", "in_progress")]
    # when the cleaner comes online
    told = dict(presence_broadcasts("k", online=True, changed=True, at=AT, location=(51.5, -0.1),
                                    watchers=watchers))
    # then each client hears it once, on their own channel, with a location only when tracking
    assert told == {
        "private-user.a": {"cleaner_id": "k", "online": True, "at": AT},
        "private-user.o": {"cleaner_id": "k", "online": True, "at": AT,
                           "location": {"lat": 51.5, "lng": -0.1}, "booking_ids": ["b2"]},
        "private-user.x": {"cleaner_id": "k", "online": True, "at": AT,
                           "location": {"lat": 51.5, "lng": -0.1}, "booking_ids": ["b4"]},
    }


def test_going_offline_carries_no_location():
    told = presence_broadcasts("k", online=False, changed=True, at=AT, location=(51.5, -0.1),
                               watchers=[Watcher("o", "b2", "on_the_way")])
    assert told == [("private-user.o", {"cleaner_id": "k", "online": False, "at": AT})]


def test_a_location_update_reaches_trackers_only_and_needs_a_location():
    watchers = [Watcher("a", "b1", "accepted"), Watcher("o", "b2", "in_progress")]
    moved = presence_broadcasts("k", online=True, changed=False, at=AT, location=(1.0, 2.0), watchers=watchers)
    assert [channel for channel, _ in moved] == ["private-user.o"]
    assert presence_broadcasts("k", online=True, changed=False, at=AT, location=None, watchers=watchers) == []


def test_nobody_to_tell():
    assert presence_broadcasts("k", online=True, changed=True, at=AT, location=None, watchers=[]) == []
