"""The pure realtime and chat rules: channel access, app config, signatures, seqs, frames."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from core.channels import (
    BookingParties,
    ChannelKind,
    Viewer,
    authorize_channel,
    booking_id_of,
    channel_kind,
    is_cache_channel,
    is_encrypted_channel,
)
from core.chat import check_message, check_participant, next_seqs, read_cursor_after
from core.errors import Forbidden, Invalid, NotFound
from core.realtime import RealtimeApp, parse_apps, shard_of_conversation
from edge.realtime.errors import InvalidMessage, InvalidVersion, NoProtocolVersion
from edge.realtime.protocol import check_protocol, encode, parse_frame
from edge.realtime.signing import channel_auth, channel_auth_valid, request_signature

BOOKING = "01a212b5-4ac0-7d57-89b5-a52d80017785"
PARTIES = BookingParties(client_id="c1", cleaner_id="k1")


@pytest.mark.parametrize(("viewer", "channel", "allowed"), [
    (Viewer("c1", "client"), "private-user.c1", True),
    (Viewer("c1", "client"), "private-user.k1", False),
    (Viewer("c1", "client"), f"private-booking.{BOOKING}", True),
    (Viewer("k1", "cleaner"), f"presence-conversation.{BOOKING}", True),
    (Viewer("x9", "client"), f"presence-conversation.{BOOKING}", False),
    (Viewer("x9", "cleaner"), f"private-booking.{BOOKING}", False),
    (Viewer("a1", "admin"), f"presence-conversation.{BOOKING}", True),
    (Viewer("a1", "admin"), "private-user.c1", False),
    (Viewer("c1", "client"), "private-anything.c1", False),
    (Viewer("c1", "client"), "presence-user.c1", False),
    (Viewer("c1", "client"), "lobby", False),
])
def test_who_may_join_which_channel(viewer, channel, allowed):
    if allowed:
        authorize_channel(channel, viewer=viewer, booking=PARTIES)
    else:
        with pytest.raises(Forbidden):
            authorize_channel(channel, viewer=viewer, booking=PARTIES)


def test_a_missing_booking_refuses_its_channels():
    with pytest.raises(Forbidden):
        authorize_channel(f"private-booking.{BOOKING}", viewer=Viewer("a1", "admin"), booking=None)


def test_channel_names():
    assert channel_kind("lobby.main") is ChannelKind.PUBLIC
    assert channel_kind("private-user.1") is ChannelKind.PRIVATE
    assert channel_kind("presence-conversation.1") is ChannelKind.PRESENCE
    assert booking_id_of(f"presence-conversation.{BOOKING}") == BOOKING
    assert booking_id_of("private-user.1") is None
    assert [is_cache_channel(n) for n in ("cache-a", "private-cache-a", "presence-cache-a", "cachet", "private-a")] \
        == [True, True, True, False, False]
    assert channel_kind("presence-cache-room") is ChannelKind.PRESENCE and channel_kind("cache-a") is ChannelKind.PUBLIC
    assert channel_kind("private-encrypted-x") is ChannelKind.PRIVATE and is_encrypted_channel("private-encrypted-x")
    assert not is_encrypted_channel("private-x") and is_cache_channel("private-encrypted-cache-x")
    for bad in ("", "a b", "a..b", "a.", "x" * 165, "a*", "a>"):
        with pytest.raises(Invalid):
            channel_kind(bad)


def test_apps_setting_is_validated():
    apps = parse_apps('[{"id": "1", "key": "k", "secret": "s", "client_events_per_s": 3}]')
    assert apps == (RealtimeApp("1", "k", "s", client_events_per_s=3),)
    for bad in ("nope", "[]", '[{"id": "x", "key": "k", "secret": "s"}]', '[{"id": "1", "key": "k"}]',
                '[{"id": "1", "key": "k", "secret": "s", "surprise": 1}]',
                '[{"id": "1", "key": "k", "secret": "s"}, {"id": "1", "key": "j", "secret": "s"}]',
                '[{"id": "1", "key": "k", "secret": "s", "allowed_origins": "example.com"}]',
                '[{"id": "1", "key": "k", "secret": "s", "allowed_origins": []}]',
                '[{"id": "1", "key": "k", "secret": "s", "allowed_origins": [""]}]',
                '[{"id": "1", "key": "k", "secret": "s", "allowed_origins": ["a.com b.com"]}]',
                '[{"id": "1", "key": "k", "secret": "s", "allowed_origins": [7]}]',
                '[{"id": "1", "key": "k", "secret": "s", "allowed_origins": ["https://a.com/app"]}]'):
        with pytest.raises(ValueError):
            parse_apps(bad)


@pytest.mark.parametrize(("patterns", "origin", "allowed"), [
    # Laravel Reverb's own cases (tests/Unit/Protocols/Pusher/ServerTest.php)
    (["laravel.com"], "http://localhost", False),
    (["laravel.com"], "http://sub.laravel.com", False),
    (["*.laravel.com"], "http://laravel.com", False),
    (["localhost"], "http://localhost", True),
    (["localhost", "*.localhost"], "http://sub.localhost", True),
    # hosts match whatever the scheme and port; case does not matter
    (["app.example.com"], "https://App.Example.com:8443", True),
    (["app.example.com"], "https://app.example.com.evil.net", False),
    (["*.example.com"], "https://evil-example.com", False),
    # a whole origin matches only that scheme, host and port
    (["https://app.example.com"], "https://app.example.com", True),
    (["https://app.example.com"], "http://app.example.com", False),
    (["https://app.example.com"], "https://app.example.com:8443", False),
    (["http://localhost:5173/"], "http://localhost:5173", True),
    # "*" allows every page; no header is not a browser; "null" and junk are refused
    (["*"], "null", True),
    (["example.com"], None, True),
    (["example.com"], "null", False),
    (["example.com"], "", False),
    (["example.com"], "http://[::1", False),
])
def test_an_apps_allowed_origins_decide_which_pages_may_connect(patterns, origin, allowed):
    app = parse_apps(json.dumps([{"id": "1", "key": "k", "secret": "s", "allowed_origins": patterns}]))[0]
    assert app.origin_allowed(origin) is allowed
    assert RealtimeApp("1", "k", "s").origin_allowed(origin)  # the default allows every page


def test_signatures_match_pushers_definition():
    app = RealtimeApp("1", "key", "secret")
    expected = hmac.new(b"secret", b"1.2:presence-x:{}", hashlib.sha256).hexdigest()
    assert channel_auth(app, "1.2", "presence-x", "{}") == f"key:{expected}"
    assert channel_auth_valid(app, "1.2", "presence-x", f"key:{expected}", "{}")
    assert not channel_auth_valid(app, "1.3", "presence-x", f"key:{expected}", "{}")
    assert not channel_auth_valid(app, "1.2", "presence-x", None, "{}")
    signed = request_signature("secret", "post", "/apps/1/events", {"b": "2", "A": "1", "auth_signature": "x"})
    assert signed == hmac.new(b"secret", b"POST\n/apps/1/events\na=1&b=2", hashlib.sha256).hexdigest()


def test_routing_is_stable_and_spreads():
    ids = [f"{n:08d}-0000-0000-0000-000000000000" for n in range(400)]
    shards = [shard_of_conversation(i, 4) for i in ids]
    assert shards == [shard_of_conversation(i, 4) for i in ids]
    assert all(shards.count(s) > 60 for s in range(4))
    moved = sum(a != shard_of_conversation(i, 5) for a, i in zip(shards, ids, strict=True))
    assert moved < 400 * 0.35  # about a fifth move when a fifth shard joins


def test_message_rules():
    assert check_message("  hi\n there ", "m-1", max_chars=10) == "hi\n there"
    for body, cmid in (("", "m"), ("   ", "m"), ("x" * 11, "m"), ("ok", ""), ("ok", "a b"),
                       ("bell\x07", "m"), ("ok", "x" * 65)):
        with pytest.raises(Invalid):
            check_message(body, cmid, max_chars=10)
    assert next_seqs(7, 3) == [8, 9, 10]
    assert read_cursor_after(5, 3, last_seq=9) == 5
    assert read_cursor_after(5, 30, last_seq=9) == 9
    with pytest.raises(NotFound):
        check_participant(Viewer("a1", "admin"), PARTIES)
    with pytest.raises(NotFound):
        check_participant(Viewer("c1", "client"), None)


def test_frames():
    assert parse_frame('{"event": "pusher:ping", "data": {}}').event == "pusher:ping"
    for bad in ("", "nul", "[]", "{}", '{"event": ""}', '{"event": "x", "channel": 1}', b"\xff"):
        with pytest.raises(InvalidMessage):
            parse_frame(bad)
    assert json.loads(encode("e", {"a": 1}, channel="c")) == {"event": "e", "channel": "c", "data": '{"a":1}'}
    assert check_protocol("7") == 7
    with pytest.raises(NoProtocolVersion):
        check_protocol(None)
    with pytest.raises(InvalidVersion):
        check_protocol("8")
