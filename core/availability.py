"""When a cleaner works: a weekly schedule in their own time zone, dated exceptions, busy time.

Pure rules, no I/O. Search, bookings and the cleaner's own endpoints all call these; nobody keeps a
second copy of the wall-clock arithmetic.

A schedule is wall-clock time: 08:00-18:00 means 08:00-18:00 on the cleaner's own clock every
day, including the two days a year the clocks change. Local times become UTC instants with
zoneinfo, boundary by boundary:

- a time that does not exist (spring forward, e.g. 01:30 on the last Sunday of March in London)
  becomes the instant the clocks jump, so an interval that starts in the gap starts when the
  clock next shows a real time, and one that lies wholly in the gap is empty;
- a time that exists twice (fall back, e.g. 01:30 on the last Sunday of October in London) is
  its earlier occurrence when it starts an interval and its later occurrence when it ends one,
  so an interval never loses the repeated hour: it covers every instant whose clock reading it
  names.

A day's time is (weekly intervals of that weekday, plus "extra" exceptions) minus "off"
exceptions; "off" with no minutes removes the whole day. Off wins over extra on the same day.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from core.errors import Invalid

MINUTES_PER_DAY = 1440
MAX_WEEKLY_INTERVALS = 50
MAX_EXCEPTIONS = 366
EXCEPTION_HORIZON_DAYS = 730
EXCEPTION_KINDS = ("off", "extra")

Span = tuple[int, int]  # [start_minute, end_minute) from local midnight
Interval = tuple[datetime, datetime]  # [start, end), aware UTC


@dataclass(frozen=True)
class WeeklyInterval:
    weekday: int  # 0 = Monday
    start_minute: int
    end_minute: int


@dataclass(frozen=True)
class DatedException:
    day: date
    kind: str  # "off" | "extra"
    start_minute: int | None
    end_minute: int | None


# --- validating what a cleaner sends ---


def _check_span(start: int | None, end: int | None, *, field: str) -> None:
    if start is None or end is None or isinstance(start, bool) or isinstance(end, bool):
        raise Invalid("start_minute and end_minute are both required", field=field)
    if not 0 <= start < MINUTES_PER_DAY:
        raise Invalid(f"must be between 0 and {MINUTES_PER_DAY - 1}", field=f"{field}.start_minute")
    if not 0 < end <= MINUTES_PER_DAY:
        raise Invalid(f"must be between 1 and {MINUTES_PER_DAY}", field=f"{field}.end_minute")
    if end <= start:
        raise Invalid("must be after start_minute", field=f"{field}.end_minute")


def check_weekly_rules(rules: Sequence[WeeklyInterval], *, field: str = "weekly") -> list[WeeklyInterval]:
    """Raise Invalid naming the interval that is out of range or overlaps another on its day."""
    if len(rules) > MAX_WEEKLY_INTERVALS:
        raise Invalid(f"at most {MAX_WEEKLY_INTERVALS} intervals", field=field)
    for index, rule in enumerate(rules):
        if isinstance(rule.weekday, bool) or not 0 <= rule.weekday <= 6:
            raise Invalid("must be between 0 (Monday) and 6 (Sunday)", field=f"{field}.{index}.weekday")
        _check_span(rule.start_minute, rule.end_minute, field=f"{field}.{index}")
    order = sorted(range(len(rules)), key=lambda i: (rules[i].weekday, rules[i].start_minute))
    for before, after in zip(order, order[1:], strict=False):
        a, b = rules[before], rules[after]
        if a.weekday == b.weekday and b.start_minute < a.end_minute:
            raise Invalid(f"overlaps interval {before} on the same day", field=f"{field}.{after}")
    return [rules[i] for i in order]


def check_exceptions(
    exceptions: Sequence[DatedException], *, today: date, field: str = "exceptions"
) -> list[DatedException]:
    """Validate dated exceptions and drop those before `today` (the cleaner's local date)."""
    if len(exceptions) > MAX_EXCEPTIONS:
        raise Invalid(f"at most {MAX_EXCEPTIONS} exceptions", field=field)
    last_day = today + timedelta(days=EXCEPTION_HORIZON_DAYS)
    for index, exc in enumerate(exceptions):
        where = f"{field}.{index}"
        if exc.kind not in EXCEPTION_KINDS:
            raise Invalid("must be 'off' or 'extra'", field=f"{where}.kind")
        if exc.day > last_day:
            raise Invalid(f"must be within {EXCEPTION_HORIZON_DAYS} days from today", field=f"{where}.date")
        whole_day = exc.start_minute is None and exc.end_minute is None
        if not (whole_day and exc.kind == "off"):
            _check_span(exc.start_minute, exc.end_minute, field=where)
    order = sorted(range(len(exceptions)), key=lambda i: (exceptions[i].day, exceptions[i].start_minute or 0))
    for before, after in zip(order, order[1:], strict=False):
        a, b = exceptions[before], exceptions[after]
        if a.day == b.day and (a.end_minute is None or b.start_minute is None or b.start_minute < a.end_minute):
            raise Invalid(f"overlaps exception {before} on the same day", field=f"{field}.{after}")
    return [exceptions[i] for i in order if exceptions[i].day >= today]


# --- minute arithmetic on one local day ---


def _union(spans: Iterable[Span]) -> list[Span]:
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _subtract(spans: list[Span], cut: Span) -> list[Span]:
    out: list[Span] = []
    for start, end in spans:
        if cut[1] <= start or end <= cut[0]:
            out.append((start, end))
            continue
        if start < cut[0]:
            out.append((start, cut[0]))
        if cut[1] < end:
            out.append((cut[1], end))
    return out


def day_spans(rules: Iterable[WeeklyInterval], exceptions: Iterable[DatedException], day: date) -> list[Span]:
    """The local minutes a cleaner works on `day`, after exceptions."""
    spans = [(r.start_minute, r.end_minute) for r in rules if r.weekday == day.weekday()]
    todays = [e for e in exceptions if e.day == day]
    spans += [(e.start_minute, e.end_minute) for e in todays
              if e.kind == "extra" and e.start_minute is not None and e.end_minute is not None]
    spans = _union(spans)
    for exc in todays:
        if exc.kind != "off":
            continue
        if exc.start_minute is None or exc.end_minute is None:
            return []
        spans = _subtract(spans, (exc.start_minute, exc.end_minute))
    return spans


# --- wall clock to UTC ---


def _transition(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The first whole second in (before, after] whose UTC offset differs from before's."""
    offset = before.astimezone(zone).utcoffset()
    while after - before > timedelta(seconds=1):
        mid = before + timedelta(seconds=(after - before) // timedelta(seconds=1) // 2)
        if mid.astimezone(zone).utcoffset() == offset:
            before = mid
        else:
            after = mid
    return after


def local_instant(day: date, minute: int, zone: ZoneInfo, *, starts: bool) -> datetime:
    """The UTC instant of `minute` past local midnight on `day` (see the module docstring)."""
    wall = datetime.combine(day, time()) + timedelta(minutes=minute)
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) != wall:
        # In a gap zoneinfo gives fold=1 the earlier instant; the jump lies between the two.
        return _transition(min(first, second), max(first, second), zone)
    return first if starts else second


def _merge(intervals: Iterable[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if end <= start:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _require_aware(*moments: datetime) -> None:
    if any(m.tzinfo is None or m.utcoffset() is None for m in moments):
        raise ValueError("datetimes must be timezone-aware")


def scheduled_intervals(
    rules: Iterable[WeeklyInterval],
    exceptions: Iterable[DatedException],
    *,
    time_zone: str,
    start: datetime,
    end: datetime,
) -> list[tuple[datetime, datetime]]:
    """UTC (aware) intervals when the cleaner is scheduled to work, clipped to [start, end)."""
    _require_aware(start, end)
    if end <= start:
        return []
    zone = ZoneInfo(time_zone)
    rules, exceptions = list(rules), list(exceptions)
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    # A day on either side: a local day can start up to 26 hours away from the same UTC date.
    day = start.astimezone(zone).date() - timedelta(days=1)
    last = end.astimezone(zone).date() + timedelta(days=1)
    found: list[Interval] = []
    while day <= last:
        for first_minute, end_minute in day_spans(rules, exceptions, day):
            found.append((local_instant(day, first_minute, zone, starts=True),
                          local_instant(day, end_minute, zone, starts=False)))
        day += timedelta(days=1)
    clipped = ((max(s, start), min(e, end)) for s, e in found)
    return _merge(clipped)


def is_free(
    rules: Iterable[WeeklyInterval],
    exceptions: Iterable[DatedException],
    busy: list[tuple[datetime, datetime]],
    *,
    time_zone: str,
    travel_buffer_minutes: int,
    start: datetime,
    end: datetime,
) -> bool:
    """The whole window [start, end) lies inside scheduled time, and no busy interval widened
    by the travel buffer on both sides overlaps it. An empty window is never free."""
    _require_aware(start, end)
    if end <= start:
        return False
    scheduled = scheduled_intervals(rules, exceptions, time_zone=time_zone, start=start, end=end)
    if scheduled != [(start.astimezone(UTC), end.astimezone(UTC))]:
        return False
    buffer = timedelta(minutes=max(0, travel_buffer_minutes))
    for busy_start, busy_end in busy:
        _require_aware(busy_start, busy_end)
        if busy_start - buffer < end and start < busy_end + buffer:
            return False
    return True
