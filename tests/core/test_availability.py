"""The availability rule: wall-clock schedules across daylight saving, exceptions, busy time."""

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from core.availability import (
    DatedException,
    WeeklyInterval,
    check_exceptions,
    check_weekly_rules,
    is_free,
    scheduled_intervals,
)
from core.errors import Invalid

LONDON = "Europe/London"
SPRING_FORWARD = date(2026, 3, 29)  # last Sunday of March: 01:00 GMT becomes 02:00 BST
FALL_BACK = date(2026, 10, 25)  # last Sunday of October: 02:00 BST becomes 01:00 GMT
EVERY_DAY_8_TO_6 = [WeeklyInterval(weekday, 8 * 60, 18 * 60) for weekday in range(7)]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local(moment: datetime, zone: str = LONDON) -> str:
    return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")


def on_day(day: date, rules, exceptions=(), zone: str = LONDON):
    start = datetime.combine(day, datetime.min.time(), tzinfo=ZoneInfo(zone)) - timedelta(hours=6)
    return scheduled_intervals(rules, exceptions, time_zone=zone, start=start, end=start + timedelta(hours=36))


def the_day(day: date, spans):
    return [(s, e) for s, e in spans if s.astimezone(ZoneInfo(LONDON)).date() == day]


# --- daylight saving ---


def test_eight_to_six_stays_eight_to_six_local_on_the_spring_forward_sunday():
    # given a cleaner who works 08:00-18:00 every day in London
    # when we ask for the Saturday before the clocks go forward and the Sunday they do
    saturday = the_day(SPRING_FORWARD - timedelta(days=1), on_day(SPRING_FORWARD - timedelta(days=1), EVERY_DAY_8_TO_6))
    sunday = the_day(SPRING_FORWARD, on_day(SPRING_FORWARD, EVERY_DAY_8_TO_6))
    # then both days read 08:00-18:00 on the cleaner's clock, an hour apart in UTC
    assert saturday == [(utc(2026, 3, 28, 8), utc(2026, 3, 28, 18))]
    assert sunday == [(utc(2026, 3, 29, 7), utc(2026, 3, 29, 17))]
    assert [local(t) for t in sunday[0]] == ["2026-03-29 08:00 BST", "2026-03-29 18:00 BST"]


def test_eight_to_six_stays_eight_to_six_local_on_the_fall_back_sunday():
    saturday = the_day(FALL_BACK - timedelta(days=1), on_day(FALL_BACK - timedelta(days=1), EVERY_DAY_8_TO_6))
    sunday = the_day(FALL_BACK, on_day(FALL_BACK, EVERY_DAY_8_TO_6))
    assert saturday == [(utc(2026, 10, 24, 7), utc(2026, 10, 24, 17))]
    assert sunday == [(utc(2026, 10, 25, 8), utc(2026, 10, 25, 18))]
    assert [local(t) for t in sunday[0]] == ["2026-10-25 08:00 GMT", "2026-10-25 18:00 GMT"]


@pytest.mark.parametrize("zone", ["Europe/London", "America/New_York", "Australia/Sydney",
                                  "Australia/Lord_Howe", "Asia/Kolkata", "America/Havana"])
def test_a_whole_year_of_days_reads_eight_to_six_on_the_local_clock(zone):
    start = datetime(2026, 1, 1, tzinfo=ZoneInfo(zone))
    spans = scheduled_intervals(EVERY_DAY_8_TO_6, [], time_zone=zone, start=start,
                                end=datetime(2027, 1, 1, tzinfo=ZoneInfo(zone)))
    assert len(spans) == 365
    assert {(local(s, zone)[11:16], local(e, zone)[11:16]) for s, e in spans} == {("08:00", "18:00")}


def test_a_whole_working_day_is_23_hours_in_spring_and_25_in_autumn():
    all_day = [WeeklyInterval(6, 0, 1440)]
    assert the_day(SPRING_FORWARD, on_day(SPRING_FORWARD, all_day)) == [
        (utc(2026, 3, 29, 0), utc(2026, 3, 29, 23))]
    assert the_day(FALL_BACK, on_day(FALL_BACK, all_day)) == [(utc(2026, 10, 24, 23), utc(2026, 10, 26, 0))]


def test_a_time_in_the_spring_gap_becomes_the_moment_the_clocks_jump():
    # 01:30 does not exist in London on the spring-forward Sunday
    starts_in_gap = on_day(SPRING_FORWARD, [WeeklyInterval(6, 90, 180)])
    assert starts_in_gap == [(utc(2026, 3, 29, 1), utc(2026, 3, 29, 2))]  # 02:00-03:00 BST
    ends_in_gap = on_day(SPRING_FORWARD, [WeeklyInterval(6, 30, 90)])
    assert ends_in_gap == [(utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1))]  # 00:30 GMT to the jump
    assert on_day(SPRING_FORWARD, [WeeklyInterval(6, 70, 110)]) == []  # wholly inside the gap


def test_midnight_in_a_gap_starts_the_day_when_the_clocks_jump():
    # Cuba springs forward at midnight: 00:00 does not exist on 8 March 2026
    spans = on_day(date(2026, 3, 8), [WeeklyInterval(6, 0, 120)], zone="America/Havana")
    assert [local(t, "America/Havana") for t in spans[0]] == ["2026-03-08 01:00 CDT", "2026-03-08 02:00 CDT"]


def test_an_ambiguous_time_keeps_the_repeated_hour_inside_the_interval():
    # 01:30 happens twice in London on the fall-back Sunday
    starts_ambiguous = on_day(FALL_BACK, [WeeklyInterval(6, 90, 180)])
    assert starts_ambiguous == [(utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 3))]  # first 01:30 BST
    ends_ambiguous = on_day(FALL_BACK, [WeeklyInterval(6, 0, 90)])
    assert ends_ambiguous == [(utc(2026, 10, 24, 23), utc(2026, 10, 25, 1, 30))]  # second 01:30 GMT


# --- overnight, exceptions, clipping ---


MONDAY = date(2026, 6, 1)


def test_a_window_across_midnight_is_free_only_when_both_evenings_are_scheduled():
    late, early = WeeklyInterval(0, 20 * 60, 1440), WeeklyInterval(1, 0, 4 * 60)
    window = dict(start=utc(2026, 6, 1, 21), end=utc(2026, 6, 2, 1))  # 22:00-02:00 BST
    assert on_day(MONDAY, [late, early]) == [(utc(2026, 6, 1, 19), utc(2026, 6, 2, 3))]
    assert is_free([late, early], [], [], time_zone=LONDON, travel_buffer_minutes=0, **window)
    assert not is_free([late], [], [], time_zone=LONDON, travel_buffer_minutes=0, **window)
    assert not is_free([], [], [], time_zone=LONDON, travel_buffer_minutes=0, **window)


def test_intervals_are_clipped_to_the_asked_window():
    spans = scheduled_intervals(EVERY_DAY_8_TO_6, [], time_zone=LONDON, start=utc(2026, 6, 1, 12),
                                end=utc(2026, 6, 2, 8))
    assert spans == [(utc(2026, 6, 1, 12), utc(2026, 6, 1, 17)), (utc(2026, 6, 2, 7), utc(2026, 6, 2, 8))]
    assert scheduled_intervals(EVERY_DAY_8_TO_6, [], time_zone=LONDON, start=utc(2026, 6, 1, 12),
                               end=utc(2026, 6, 1, 12)) == []


def test_a_whole_day_off_removes_the_day():
    off = [DatedException(MONDAY, "off", None, None)]
    assert the_day(MONDAY, on_day(MONDAY, EVERY_DAY_8_TO_6, off)) == []


def test_time_off_for_an_interval_splits_the_day():
    dentist = [DatedException(MONDAY, "off", 12 * 60, 13 * 60 + 30)]
    assert the_day(MONDAY, on_day(MONDAY, EVERY_DAY_8_TO_6, dentist)) == [
        (utc(2026, 6, 1, 7), utc(2026, 6, 1, 11)), (utc(2026, 6, 1, 12, 30), utc(2026, 6, 1, 17))]


def test_extra_hours_add_to_and_join_the_schedule():
    extra = [DatedException(MONDAY, "extra", 17 * 60, 20 * 60), DatedException(MONDAY, "extra", 6 * 60, 7 * 60)]
    assert the_day(MONDAY, on_day(MONDAY, EVERY_DAY_8_TO_6, extra)) == [
        (utc(2026, 6, 1, 5), utc(2026, 6, 1, 6)), (utc(2026, 6, 1, 7), utc(2026, 6, 1, 19))]
    # a day with no weekly hours at all
    assert on_day(MONDAY, [], [DatedException(MONDAY, "extra", 600, 660)]) == [
        (utc(2026, 6, 1, 9), utc(2026, 6, 1, 10))]


def test_time_off_wins_over_extra_hours_on_the_same_day():
    both = [DatedException(MONDAY, "extra", 18 * 60, 20 * 60), DatedException(MONDAY, "off", 19 * 60, 1440)]
    assert the_day(MONDAY, on_day(MONDAY, [], both)) == [(utc(2026, 6, 1, 17), utc(2026, 6, 1, 18))]


# --- busy time and travel buffers ---


BUSY = [(utc(2026, 6, 1, 10), utc(2026, 6, 1, 12))]  # 11:00-13:00 BST


@pytest.mark.parametrize("start, end, buffer, free", [
    (utc(2026, 6, 1, 12), utc(2026, 6, 1, 13), 30, False),  # straight after: no time to travel
    (utc(2026, 6, 1, 12, 30), utc(2026, 6, 1, 13, 30), 30, True),  # exactly the buffer later
    (utc(2026, 6, 1, 8), utc(2026, 6, 1, 9, 30), 30, True),  # ends exactly a buffer before
    (utc(2026, 6, 1, 8), utc(2026, 6, 1, 9, 31), 30, False),
    (utc(2026, 6, 1, 12), utc(2026, 6, 1, 13), 0, True),  # no buffer: back to back is fine
    (utc(2026, 6, 1, 11), utc(2026, 6, 1, 11, 30), 0, False),  # inside the booking
    (utc(2026, 6, 1, 16), utc(2026, 6, 1, 17, 1), 0, False),  # runs past 18:00 local
    (utc(2026, 6, 1, 6, 59), utc(2026, 6, 1, 8), 0, False),  # starts before 08:00 local
])
def test_busy_time_widened_by_the_travel_buffer_blocks_a_window(start, end, buffer, free):
    assert is_free(EVERY_DAY_8_TO_6, [], BUSY, time_zone=LONDON, travel_buffer_minutes=buffer,
                   start=start, end=end) is free


def test_an_empty_window_is_never_free_and_naive_datetimes_are_a_programming_error():
    moment = utc(2026, 6, 1, 9)
    assert not is_free(EVERY_DAY_8_TO_6, [], [], time_zone=LONDON, travel_buffer_minutes=0,
                       start=moment, end=moment)
    with pytest.raises(ValueError):
        is_free(EVERY_DAY_8_TO_6, [], [], time_zone=LONDON, travel_buffer_minutes=0,
                start=datetime(2026, 6, 1, 9), end=datetime(2026, 6, 1, 10))


# --- what a cleaner may send ---


def field_of(caught) -> str:
    return caught.value.errors[0].field


def test_weekly_intervals_may_not_overlap_on_a_day_but_may_touch():
    touching = [WeeklyInterval(0, 600, 720), WeeklyInterval(0, 480, 600), WeeklyInterval(1, 500, 700)]
    assert check_weekly_rules(touching)[0] == WeeklyInterval(0, 480, 600)
    with pytest.raises(Invalid) as caught:
        check_weekly_rules([WeeklyInterval(0, 480, 600), WeeklyInterval(0, 599, 700)])
    assert field_of(caught) == "weekly.1"


@pytest.mark.parametrize("rule, field", [
    (WeeklyInterval(7, 0, 60), "weekly.0.weekday"),
    (WeeklyInterval(0, -1, 60), "weekly.0.start_minute"),
    (WeeklyInterval(0, 0, 1441), "weekly.0.end_minute"),
    (WeeklyInterval(0, 600, 600), "weekly.0.end_minute"),
])
def test_weekly_intervals_out_of_range_name_the_field(rule, field):
    with pytest.raises(Invalid) as caught:
        check_weekly_rules([rule])
    assert field_of(caught) == field


def test_schedules_are_bounded():
    with pytest.raises(Invalid):
        check_weekly_rules([WeeklyInterval(d % 7, m, m + 1) for d in range(7) for m in range(8)])
    with pytest.raises(Invalid):
        check_exceptions([DatedException(MONDAY + timedelta(days=i), "off", None, None) for i in range(367)],
                         today=MONDAY)


def test_past_exceptions_are_dropped_and_the_rest_sorted():
    kept = check_exceptions([DatedException(MONDAY + timedelta(days=2), "off", None, None),
                             DatedException(MONDAY - timedelta(days=1), "off", None, None),
                             DatedException(MONDAY, "extra", 60, 120)], today=MONDAY)
    assert [e.day for e in kept] == [MONDAY, MONDAY + timedelta(days=2)]


@pytest.mark.parametrize("exceptions, field", [
    ([DatedException(MONDAY, "holiday", None, None)], "exceptions.0.kind"),
    ([DatedException(MONDAY, "extra", None, None)], "exceptions.0"),
    ([DatedException(MONDAY, "off", 60, None)], "exceptions.0"),
    ([DatedException(MONDAY, "off", None, None), DatedException(MONDAY, "extra", 60, 120)], "exceptions.1"),
    ([DatedException(MONDAY, "off", 60, 180), DatedException(MONDAY, "extra", 120, 240)], "exceptions.1"),
    ([DatedException(MONDAY + timedelta(days=800), "off", None, None)], "exceptions.0.date"),
])
def test_bad_exceptions_name_the_field(exceptions, field):
    with pytest.raises(Invalid) as caught:
        check_exceptions(exceptions, today=MONDAY)
    assert field_of(caught) == field
