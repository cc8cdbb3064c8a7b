"""The booking state machine, prices and the cancellation policy, as pure rules."""

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from core.bookings import (
    TRANSITIONS,
    Action,
    BookingState,
    Party,
    cancellation_outcome,
    check_place,
    check_reason,
    check_start,
    check_transition,
    city_of,
    parse_hours,
    party_of,
    quote_price,
)
from core.errors import Conflict, Forbidden, Invalid
from core.payments import fee_application_share, idempotency_key

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


# --- the state machine ---


@pytest.mark.parametrize("action, state, party, target", [
    (Action.ACCEPT, "requested", Party.CLEANER, "accepted"),
    (Action.DECLINE, "requested", Party.CLEANER, "declined"),
    (Action.EXPIRE, "requested", Party.SYSTEM, "expired"),
    (Action.ON_THE_WAY, "accepted", Party.CLEANER, "on_the_way"),
    (Action.START, "on_the_way", Party.CLEANER, "in_progress"),
    (Action.COMPLETE, "in_progress", Party.CLEANER, "completed"),
    (Action.CANCEL, "requested", Party.CLIENT, "cancelled"),
    (Action.CANCEL, "accepted", Party.CLEANER, "cancelled"),
    (Action.CANCEL, "on_the_way", Party.ADMIN, "cancelled"),
])
def test_the_happy_paths_move_the_booking_on(action, state, party, target):
    # on the day: the booking starts within the hour, well inside the cleaner's window
    on_the_day = {"now": NOW, "starts_at": NOW + timedelta(hours=1), "on_the_way_lead": timedelta(hours=3)}
    assert check_transition(action, state=state, party=party, **on_the_day).target == target


@pytest.mark.parametrize("action, party", [
    (Action.ACCEPT, Party.CLIENT), (Action.ACCEPT, Party.ADMIN), (Action.EXPIRE, Party.CLIENT),
    (Action.START, Party.CLIENT), (Action.COMPLETE, Party.CLIENT), (Action.CANCEL, Party.SYSTEM),
])
def test_each_transition_names_who_may_make_it(action, party):
    state = next(iter(TRANSITIONS[action].sources))
    with pytest.raises(Forbidden) as raised:
        check_transition(action, state=state, party=party)
    assert raised.value.code == "not_your_move"


def test_refusals_say_the_move_in_words():
    with pytest.raises(Forbidden, match="^the client may not mark a booking on the way$"):
        check_transition(Action.ON_THE_WAY, state="accepted", party=Party.CLIENT)
    with pytest.raises(Forbidden, match="^the client may not start a booking$"):
        check_transition(Action.START, state="on_the_way", party=Party.CLIENT)


@pytest.mark.parametrize("state", ["in_progress", "completed", "declined", "expired", "cancelled", "disputed"])
def test_nobody_cancels_once_the_work_has_started_or_the_booking_is_over(state):
    with pytest.raises(Conflict) as raised:
        check_transition(Action.CANCEL, state=state, party=Party.CLIENT)
    assert raised.value.code == "illegal_transition"


def test_steps_cannot_be_skipped_or_repeated():
    for action, state in [(Action.START, "accepted"), (Action.COMPLETE, "accepted"),
                          (Action.ACCEPT, "accepted"), (Action.ON_THE_WAY, "requested")]:
        with pytest.raises(Conflict):
            check_transition(action, state=state, party=Party.CLEANER)


def test_every_state_is_reachable_and_every_transition_stamps_its_own_time():
    targets = {t.target for t in TRANSITIONS.values()}
    assert targets | {BookingState.REQUESTED} == set(BookingState)
    stamps = [t.stamp for t in TRANSITIONS.values()]
    assert len(stamps) == len(set(stamps))


def test_a_dispute_is_open_only_for_the_window_after_completion():
    window = timedelta(hours=72)
    done = NOW - timedelta(hours=71)
    assert check_transition(Action.DISPUTE, state="completed", party=Party.CLIENT, now=NOW,
                            completed_at=done, dispute_window=window).target == "disputed"
    with pytest.raises(Conflict) as raised:
        check_transition(Action.DISPUTE, state="completed", party=Party.CLIENT, now=NOW,
                         completed_at=NOW - timedelta(hours=73), dispute_window=window)
    assert raised.value.code == "dispute_window_closed"


@pytest.mark.parametrize("action, state, verb", [
    (Action.ON_THE_WAY, "accepted", "set off for"), (Action.START, "on_the_way", "start")])
def test_a_cleaner_sets_off_and_starts_no_earlier_than_the_lead_before_the_start(action, state, verb):
    # given a booking that starts on 5 December at 10:00 UTC, and a three-hour window before it
    starts_at, lead = datetime(2026, 12, 5, 10, 0, tzinfo=UTC), timedelta(hours=3)

    def move_at(now: datetime) -> BookingState:
        return check_transition(action, state=state, party=Party.CLEANER, now=now, starts_at=starts_at,
                                on_the_way_lead=lead).target

    # when the cleaner tries ten days ahead, and a second before the window opens
    for early in (NOW, starts_at - lead - timedelta(seconds=1)):
        with pytest.raises(Conflict) as raised:
            move_at(early)
        # then it is refused as too early, saying from when (UTC) it is allowed
        assert raised.value.code == "too_early"
        assert raised.value.detail == (f"too early: a cleaner may {verb} this booking from "
                                       "2026-12-05T07:00:00Z, 3 hours before its start")
    # and from the window's opening on (a late cleaner too) the move is made
    for allowed in (starts_at - lead, starts_at - timedelta(minutes=20), starts_at + timedelta(minutes=30)):
        assert move_at(allowed) == TRANSITIONS[action].target


def test_the_window_is_reported_in_utc_whatever_the_zone_of_the_start():
    # given a start written with a +02:00 offset (08:00 UTC) and a 90-minute window
    starts_at = datetime(2026, 12, 5, 10, 0, tzinfo=timezone(timedelta(hours=2)))
    with pytest.raises(Conflict) as raised:
        check_transition(Action.ON_THE_WAY, state="accepted", party=Party.CLEANER, now=NOW,
                         starts_at=starts_at, on_the_way_lead=timedelta(minutes=90))
    assert raised.value.detail.endswith("from 2026-12-05T06:30:00Z, 90 minutes before its start")


def test_only_the_cleaner_sets_off_or_starts_so_staff_cannot_force_either_early():
    # given a booking days ahead; staff are refused as not their move, whatever the time
    for action, state in [(Action.ON_THE_WAY, "accepted"), (Action.START, "on_the_way")]:
        with pytest.raises(Forbidden) as raised:
            check_transition(action, state=state, party=Party.ADMIN, now=NOW,
                             starts_at=NOW + timedelta(days=2), on_the_way_lead=timedelta(hours=3))
        assert raised.value.code == "not_your_move"


def test_setting_off_or_starting_without_the_start_time_is_a_programming_error():
    with pytest.raises(ValueError):
        check_transition(Action.ON_THE_WAY, state="accepted", party=Party.CLEANER, now=NOW)


def test_parties_are_the_client_the_cleaner_and_staff_strangers_are_nobody():
    ids = {"client_id": "c", "cleaner_id": "k"}
    assert party_of(user_id="c", role="client", **ids) == Party.CLIENT
    assert party_of(user_id="k", role="cleaner", **ids) == Party.CLEANER
    assert party_of(user_id="a", role="admin", **ids) == Party.ADMIN
    assert party_of(user_id="x", role="client", **ids) is None


# --- prices ---


def test_a_price_is_rate_times_hours_with_tax_on_top_and_the_take_from_the_subtotal():
    quote = quote_price(hourly_rate_minor=1850, hours=Decimal("2.5"), min_duration_minutes=120,
                        take_rate_bp=1500, tax_rate_bp=2000, currency="GBP")
    assert quote.subtotal_minor == 4625
    assert quote.tax_minor == 925
    assert quote.amount_minor == 5550
    assert quote.platform_fee_minor == 694  # 693.75 rounded half up
    assert quote.application_fee_minor == 694 + 925
    assert quote.cleaner_payout_minor == 4625 - 694


def test_a_booking_shorter_than_the_service_minimum_is_refused_naming_hours():
    with pytest.raises(Invalid) as raised:
        quote_price(hourly_rate_minor=2000, hours=Decimal("1.75"), min_duration_minutes=120,
                    take_rate_bp=0, tax_rate_bp=0, currency="GBP")
    assert raised.value.code == "below_minimum_duration"
    assert raised.value.errors[0].field == "hours"


@pytest.mark.parametrize("raw", [0, -1, "1.1", 13, "NaN", "Infinity", True, None, [], "two"])
def test_hours_are_quarter_hours_within_bounds(raw):
    with pytest.raises(Invalid):
        parse_hours(raw, max_hours=12)


def test_hours_accept_numbers_and_strings():
    assert parse_hours(2, max_hours=12) == Decimal(2)
    assert parse_hours(2.25, max_hours=12) == Decimal("2.25")
    assert parse_hours("3.5", max_hours=12) == Decimal("3.5")


# --- cancellation ---

DAY = timedelta(hours=24)


def outcome(party, *, hours_before, state="accepted"):
    return cancellation_outcome(party=party, state=state, starts_at=NOW + timedelta(hours=hours_before),
                                now=NOW, amount_minor=6000, free_before=DAY, late_fee_bp=5000)


def test_cancelling_early_is_free_for_everyone():
    for party in (Party.CLIENT, Party.CLEANER):
        early = outcome(party, hours_before=25)
        assert (early.fee_minor, early.late, early.counts_against_cleaner) == (0, False, False)


def test_a_late_client_pays_the_fee_and_a_late_cleaner_gets_a_strike():
    late_client = outcome(Party.CLIENT, hours_before=3)
    assert (late_client.fee_minor, late_client.late, late_client.counts_against_cleaner) == (3000, True, False)
    late_cleaner = outcome(Party.CLEANER, hours_before=3)
    assert (late_cleaner.fee_minor, late_cleaner.counts_against_cleaner) == (0, True)


def test_withdrawing_an_unanswered_request_or_a_staff_cancellation_is_always_free():
    assert outcome(Party.CLIENT, hours_before=1, state="requested").fee_minor == 0
    assert outcome(Party.ADMIN, hours_before=1).fee_minor == 0


def test_reasons_are_trimmed_bounded_and_sometimes_required():
    assert check_reason("  ill  ", required=True) == "ill"
    with pytest.raises(Invalid):
        check_reason("   ", required=True)
    with pytest.raises(Invalid):
        check_reason("x" * 501, required=False)


# --- money rules shared with payments ---


def test_idempotency_keys_come_from_our_ids_so_a_retry_is_the_same_call():
    assert idempotency_key("booking-capture", "0192") == idempotency_key("booking-capture", "0192")
    assert idempotency_key("booking-capture", "0192") != idempotency_key("booking-release", "0192")


def test_a_late_fee_keeps_the_platform_s_proportion():
    assert fee_application_share(fee_minor=2400, amount_minor=4800, application_fee_minor=1440) == 720
    assert fee_application_share(fee_minor=1, amount_minor=3, application_fee_minor=3) == 1
    assert fee_application_share(fee_minor=0, amount_minor=0, application_fee_minor=0) == 0


# --- the city of a booking ---


@pytest.mark.parametrize(("address", "city"), [
    ("Flat 2, 10 High Street, Leeds LS1 4AP", "Leeds"),
    ("1 Test Street, London", "London"),
    ("1 Test Street, London SW1A 1AA", "London"),
    ("221B Baker Street, London, NW1 6XE", "London"),
    ("Kastanienallee 12, 10435 Berlin", "Berlin"),
    ("12 Rue de Rivoli, 75001 Paris, France", "France"),  # a country last: apps should send city
    ("42", None),
    ("", None),
])
def test_the_city_is_read_off_a_free_text_address(address, city):
    assert city_of(address) == city


def test_a_city_sent_by_the_app_wins_and_is_checked():
    assert check_place(address="1 Rue X, 75001 Paris, France", lat=None, lng=None, city=" Paris ").city == "Paris"
    assert check_place(address="1 Test Street, Leeds", lat=None, lng=None).city == "Leeds"
    with pytest.raises(Invalid) as caught:
        check_place(address="1 Test Street, Leeds", lat=None, lng=None, city="x" * 101)
    assert [e.field for e in caught.value.errors] == ["city"]


def test_a_start_too_soon_says_the_minimum_lead_in_words():
    now = datetime(2026, 12, 4, 20, 0, tzinfo=UTC)
    limits = dict(now=now, min_lead=timedelta(hours=1), max_advance=timedelta(days=180))
    with pytest.raises(Invalid) as raised:
        check_start(now + timedelta(minutes=30), **limits)
    assert (raised.value.code, raised.value.errors[0].field) == ("too_late", "start")
    assert raised.value.errors[0].message == "must be at least 1 hour from now"
    assert check_start(now + timedelta(hours=1), **limits) == now + timedelta(hours=1)
