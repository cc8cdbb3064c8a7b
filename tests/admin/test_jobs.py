"""Staff dealing with dead-lettered jobs (retry, discard) and reading queue depths."""

from __future__ import annotations

import json
import secrets
from typing import Any
from uuid import uuid4

from nats.js import JetStreamContext

from core.events import EVENT_ID_HEADER, job_subject, jobs_stream
from core.settings import Settings
from jobs.streams import ensure_consumer
from storage import jobs
from storage.models import AuditLog, FailedJob
from tests.admin.conftest import Dashboard, Person


async def dead_job(*, event_type: str | None = None, consumer: str = "email") -> FailedJob:
    """A job dead-lettered the way a worker does it (storage.jobs.record_failed_job)."""
    event_type = event_type or f"test.retry_{secrets.token_hex(4)}"
    event_id = uuid4()
    await jobs.record_failed_job(consumer=consumer, event_id=event_id, event_type=event_type,
                                 payload={"user_id": "u-1", "note": "hello"},
                                 error="SMTPServerDisconnected: Connection unexpectedly closed",
                                 deliveries=5)
    return await FailedJob.get(consumer=consumer, event_id=event_id)


async def test_dead_jobs_are_listed_with_their_errors(dashboard: Dashboard, db: None):
    # given a dead-lettered job
    job = await dead_job()

    # when staff open the dead jobs page
    page = await dashboard.client.get("/admin/failed-job/list", params={"q": job.type})

    # then it is there with its worker, type and error
    assert page.status_code == 200, page.text
    assert job.type in page.text and "SMTPServerDisconnected" in page.text


async def test_retrying_a_dead_job_puts_it_back_on_its_subject_and_marks_it(
        dashboard: Dashboard, staff: Person, js: JetStreamContext, settings: Settings):
    # given a dead-lettered job
    job = await dead_job()

    # when staff retry it
    response = await dashboard.row_action("failed-job", "retry", str(job.id))

    # then the job is on its job subject again, with its own event id and payload
    assert response.status_code == 200, response.text
    prefix = settings.jetstream_prefix
    message = await js.get_last_msg(jobs_stream(prefix), job_subject(job.type, prefix=prefix))
    assert message.headers is not None and message.headers[EVENT_ID_HEADER] == str(job.event_id)
    assert message.headers["Nats-Msg-Id"] != str(job.event_id)  # past JetStream's duplicate window
    assert json.loads(message.data or b"") == job.payload
    # and the row is marked retried by this staff member, with an audit row
    saved = await FailedJob.get(id=job.id)
    assert saved.resolution == "retried" and str(saved.resolved_by_id) == staff.id  # type: ignore[attr-defined]
    assert await AuditLog.filter(action="failed_job.retried", entity_id=str(job.id),
                                 actor_id=staff.user.id).exists()


async def test_a_retried_job_cannot_be_retried_again_until_it_fails_again(
        dashboard: Dashboard, js: JetStreamContext):
    # given a job staff already retried
    job = await dead_job()
    assert (await dashboard.row_action("failed-job", "retry", str(job.id))).status_code == 200

    # when someone retries it again, from its row or in a batch (say from a stale page)
    from_row = await dashboard.row_action("failed-job", "retry", str(job.id))
    in_batch = await dashboard.batch_action("failed-job", "retry", [str(job.id)])

    # then the row no longer offers it, and the action itself refuses it as a conflict
    assert from_row.status_code == 400
    assert in_batch.status_code == 409
    assert in_batch.json()["code"] == "job_already_resolved"

    # when the worker dead-letters it once more, then it is open again and can be retried
    await jobs.record_failed_job(consumer=job.consumer, event_id=job.event_id, event_type=job.type,
                                 payload=job.payload, error="still failing", deliveries=5)
    assert (await FailedJob.get(id=job.id)).resolution is None
    assert (await dashboard.row_action("failed-job", "retry", str(job.id))).status_code == 200


async def test_discarding_jobs_in_bulk_records_the_reason(dashboard: Dashboard, staff: Person):
    # given two dead jobs
    doomed = [await dead_job(), await dead_job()]

    # when staff discard both with a reason
    response = await dashboard.batch_action("failed-job", "discard", [str(j.id) for j in doomed],
                                            form={"reason": "user deleted their account"})

    # then both are discarded and each audit row carries the reason
    assert response.status_code == 200, response.text
    for job in doomed:
        assert (await FailedJob.get(id=job.id)).resolution == "discarded"
        row = await AuditLog.get(action="failed_job.discarded", entity_id=str(job.id))
        assert str(row.actor_id) == staff.id and row.after["reason"] == "user deleted their account"


async def test_the_queues_page_shows_each_consumers_depth(dashboard: Dashboard, js: JetStreamContext,
                                                         settings: Settings):
    # given a durable consumer with three jobs waiting
    event_type = f"test.depth_{secrets.token_hex(4)}"
    durable = await ensure_consumer(js, settings, kind="audit", event_type=event_type)
    for i in range(3):
        await js.publish(job_subject(event_type, prefix=settings.jetstream_prefix), b"{}",
                         headers={"Nats-Msg-Id": f"{event_type}-{i}"})

    # when staff open the queues page
    page = await dashboard.client.get("/admin/queues")

    # then the consumer is listed with 3 pending
    assert page.status_code == 200, page.text
    row = page.text[page.text.index(durable):]
    cells = [c.split("<", 1)[0].strip() for c in row.split("<td>")[1:4]]
    assert cells[0] == "3", cells


async def test_without_nats_the_pages_say_so_instead_of_failing(
        services: dict[str, str], tmp_root: Any, make_person: Any):
    # given an admin whose NATS is unreachable (and which has no Ray either)
    from tests.admin.conftest import start_admin

    admin = start_admin({**services, "NATS_URL": "nats://127.0.0.1:9", "RAY_ADDRESS": ""}, tmp_root)
    try:
        import httpx

        async with httpx.AsyncClient(base_url=admin.url, timeout=30) as client:
            board = Dashboard(client)
            await board.sign_in(await make_person(role="admin"))
            job = await dead_job()

            # when staff open the queues page, the dashboard, and retry a dead job
            queues = await client.get("/admin/queues")
            home = await client.get("/admin/")
            retry = await board.row_action("failed-job", "retry", str(job.id))

        # then the pages render and say what is missing, and the retry is a 503 that changed nothing
        assert queues.status_code == 200 and "NATS unreachable" in queues.text
        assert home.status_code == 200 and "unknown" in home.text
        assert retry.status_code == 503 and retry.json()["code"] == "unavailable"
        assert (await FailedJob.get(id=job.id)).resolution is None
    finally:
        admin.stop()
