"""Scheduled work: with several runners, exactly one acts on each due item."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from tortoise import connections
from tortoise.transactions import in_transaction

from core.clock import utcnow
from jobs.scheduler import PeriodicTask, register, run_due, tasks
from storage import jobs as job_store
from storage.models import OutboxEvent, ScheduledEvent, ScheduledTask


async def test_a_due_task_runs_once_however_many_runners_look(db, settings, kind):
    # given a periodic task that takes a moment, due now
    runs: list[int] = []

    async def tidy() -> None:
        runs.append(1)
        await asyncio.sleep(0.2)

    periodic = [PeriodicTask(f"tidy_{kind}", 3600, tidy)]
    await register(periodic)
    # when five runners (own tasks, so own connections) check at the same moment
    results = await asyncio.gather(*(run_due(periodic) for _ in range(5)))
    # then exactly one ran it, and it is not due again until its interval has passed
    assert len(runs) == 1 and sum(len(r) for r in results) == 1
    assert await run_due(periodic) == []
    row = await ScheduledTask.get(name=f"tidy_{kind}")
    assert row.next_run_at - row.last_run_at >= timedelta(seconds=3599)


async def test_a_failing_task_records_its_error_and_waits_for_its_next_turn(db, kind):
    async def broken() -> None:
        raise RuntimeError("disk full")

    periodic = [PeriodicTask(f"broken_{kind}", 60, broken)]
    await register(periodic)
    assert await run_due(periodic) == [f"broken_{kind}"]
    assert (await ScheduledTask.get(name=f"broken_{kind}")).last_error == "RuntimeError: disk full"


async def test_old_rate_limit_counters_are_pruned_by_the_scheduler(db, settings):
    # given a counter from a window long gone and one from now
    conn = connections.get("default")
    await conn.execute_query(
        "INSERT INTO rate_limit_hits (key, window_start, hits) VALUES ('old:key', $1, 3), ('new:key', $2, 1)",
        [utcnow() - timedelta(days=2), utcnow()])
    # when the scheduler's prune task comes due
    periodic = [t for t in tasks(settings) if t.name == "prune_rate_limits"]
    await register(periodic)
    await connections.get("default").execute_query(
        "UPDATE scheduled_tasks SET next_run_at = now() WHERE name = 'prune_rate_limits'")
    assert await run_due(periodic) == ["prune_rate_limits"]
    # then only the old counter is gone
    keys = await conn.execute_query_dict("SELECT key FROM rate_limit_hits WHERE key IN ('old:key', 'new:key')")
    assert [k["key"] for k in keys] == ["new:key"]


async def test_a_scheduled_event_enters_the_outbox_once_when_due(db, test_type):
    # given a reminder due a moment ago and one due tomorrow
    async with in_transaction() as tx:
        due = await job_store.schedule_event(test_type, {"booking": 1}, due_at=utcnow() - timedelta(seconds=1),
                                             using=tx)
        later = await job_store.schedule_event(test_type, {"booking": 2}, due_at=utcnow() + timedelta(days=1),
                                               using=tx)
    # when several runners release due events at once
    await asyncio.gather(*(job_store.release_due_events() for _ in range(4)))
    # then the due one is in the outbox exactly once and the other still waits
    assert await OutboxEvent.filter(event_id=due).count() == 1
    assert not await OutboxEvent.filter(event_id=later).exists()
    assert await ScheduledEvent.filter(event_id=later).exists()
    assert not await ScheduledEvent.filter(event_id=due).exists()


async def test_the_scheduler_expires_unanswered_booking_requests(db, settings):
    from storage import bookings
    from storage.models import Booking
    from tests.storage.test_bookings import bookable_cleaner, make_user, request_for, tomorrow_at

    # given a booking request nobody answered for longer than its time to live
    cleaner, client = await bookable_cleaner(settings), await make_user(settings, "client")
    booking = await bookings.create_booking(actor=client, settings=settings,
                                            request=request_for(cleaner, tomorrow_at(10, days=4)))
    await Booking.filter(id=booking.id).update(
        created_at=utcnow() - timedelta(seconds=settings.booking_request_ttl_s + 5))
    # when the scheduler's expiry task comes due
    periodic = [t for t in tasks(settings) if t.name == "expire_unanswered_bookings"]
    await register(periodic)
    await connections.get("default").execute_query(
        "UPDATE scheduled_tasks SET next_run_at = now() WHERE name = 'expire_unanswered_bookings'")
    assert await run_due(periodic) == ["expire_unanswered_bookings"]
    # then the request is expired and its last error is empty
    assert (await Booking.get(id=booking.id)).state == "expired"
    row = await ScheduledTask.get(name="expire_unanswered_bookings")
    assert row.last_error is None


async def test_a_task_runs_outside_the_transaction_that_holds_its_turn(db, kind):
    # given a task that looks at its own transaction after a pause (Stripe calls happen in tasks:
    # they must not run with the scheduler's row-lock transaction open around them)
    seen: list[float] = []

    async def look() -> None:
        await asyncio.sleep(0.3)
        rows = await connections.get("default").execute_query_dict(
            "SELECT extract(epoch FROM clock_timestamp() - now()) AS lag, "
            "EXISTS (SELECT 1 FROM pg_locks WHERE pid = pg_backend_pid() AND relation = "
            "'scheduled_tasks'::regclass AND mode = 'RowShareLock') AS holds_lock")
        seen.append(float(rows[0]["lag"]))
        assert not rows[0]["holds_lock"]

    periodic = [PeriodicTask(f"look_{kind}", 3600, look)]
    await register(periodic)
    # when it runs
    assert await run_due(periodic) == [f"look_{kind}"]
    # then its statement started its own transaction (now() is not the scheduler's older start)
    assert seen and seen[0] < 0.2
    assert (await ScheduledTask.get(name=f"look_{kind}")).last_error is None
