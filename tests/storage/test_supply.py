"""Supply actions against the real database: concurrency, no-op writes, atomicity, the file store."""

import asyncio

import pytest

from core.availability import DatedException, WeeklyInterval
from core.clock import utcnow
from core.errors import Conflict, Forbidden, Invalid, NotFound
from core.supply import OfferedService
from storage import accounts, supply
from storage.files import LocalFileStore, file_store
from storage.models import AuditLog, CleanerProfile, OutboxEvent, VerificationDocument
from tests.conftest import STRONG_PASSWORD, unique_email
from tests.core.test_supply import pdf_bytes


async def new_user(settings, role="cleaner"):
    return await accounts.create_user(email=unique_email(role), password=STRONG_PASSWORD, name="Sam Supply",
                                      role=role, settings=settings)


async def test_concurrent_first_visits_make_one_profile(db, settings):
    cleaner = await new_user(settings)
    views = await asyncio.gather(*(supply.get_profile(actor=cleaner) for _ in range(8)))
    assert {v.profile.user_id for v in views} == {cleaner.id}
    assert await CleanerProfile.filter(user_id=cleaner.id).count() == 1


async def test_only_cleaners_have_profiles_and_only_staff_decide(db, settings):
    client = await new_user(settings, role="client")
    with pytest.raises(Forbidden):
        await supply.get_profile(actor=client)
    with pytest.raises(Forbidden):
        await supply.decide_verification(cleaner_id=client.id, decision="approve", reason="", actor=client)


async def test_an_unchanged_profile_or_schedule_writes_nothing(db, settings):
    # given a cleaner with a schedule and a priced service
    cleaner = await new_user(settings)
    rules = [WeeklyInterval(0, 480, 1020)]
    exceptions = [DatedException(utcnow().date().replace(year=utcnow().year + 1), "off", None, None)]
    await supply.replace_availability(actor=cleaner, rules=rules, exceptions=exceptions)
    await supply.update_profile(actor=cleaner, settings=settings, bio="Hello",
                                services=[OfferedService("standard", 2000)])
    events = await OutboxEvent.filter(payload__contains={"cleaner_id": str(cleaner.id)}).count()
    audits = await AuditLog.filter(entity_id=str(cleaner.id)).count()
    # when they save the same again
    await supply.replace_availability(actor=cleaner, rules=rules, exceptions=exceptions)
    await supply.update_profile(actor=cleaner, settings=settings, bio="Hello",
                                services=[OfferedService("standard", 2000)])
    # then no audit row and no event were written
    assert await OutboxEvent.filter(payload__contains={"cleaner_id": str(cleaner.id)}).count() == events
    assert await AuditLog.filter(entity_id=str(cleaner.id)).count() == audits
    assert events == 2 and audits == 2


async def test_a_profile_change_is_audited_with_before_and_after(db, settings):
    cleaner = await new_user(settings)
    await supply.update_profile(actor=cleaner, settings=settings, travel_buffer_minutes=10,
                                services=[OfferedService("oven", 2100)])
    row = await AuditLog.get(entity_id=str(cleaner.id), action="cleaner.profile_updated")
    assert row.before == {"travel_buffer_minutes": 30, "services": {}}
    assert row.after == {"travel_buffer_minutes": 10, "services": {"oven": 2100}}


async def test_an_invalid_schedule_leaves_the_old_one_whole(db, settings):
    cleaner = await new_user(settings)
    await supply.replace_availability(actor=cleaner, rules=[WeeklyInterval(3, 600, 700)], exceptions=[])
    with pytest.raises(Invalid):
        await supply.replace_availability(
            actor=cleaner, rules=[WeeklyInterval(1, 600, 700)],
            exceptions=[DatedException(utcnow().date(), "extra", None, None)])
    assert (await supply.get_availability(actor=cleaner)).rules == [WeeklyInterval(3, 600, 700)]


async def test_documents_waiting_for_review_are_bounded_and_refusals_store_no_file(db, settings):
    cleaner = await new_user(settings)
    store = file_store(settings)
    for _ in range(settings.verification_max_pending_documents):
        await supply.submit_verification_document(actor=cleaner, data=pdf_bytes(), settings=settings, store=store)
    files = sorted(settings.file_storage_path.rglob("*.pdf"))
    with pytest.raises(Conflict):
        await supply.submit_verification_document(actor=cleaner, data=pdf_bytes(), settings=settings, store=store)
    assert sorted(settings.file_storage_path.rglob("*.pdf")) == files
    assert await VerificationDocument.filter(cleaner_id=cleaner.id).count() == 5


async def test_a_decision_is_reviewed_by_the_staff_member_on_every_pending_document(db, settings):
    cleaner, staff = await new_user(settings), await new_user(settings, role="admin")
    store = file_store(settings)
    for _ in range(2):
        await supply.submit_verification_document(actor=cleaner, data=pdf_bytes(), settings=settings, store=store)
    profile = await supply.decide_verification(cleaner_id=cleaner.id, decision="reject", reason="expired",
                                               actor=staff)
    assert profile.verification_status == "rejected" and profile.verified_at is None
    documents = await VerificationDocument.filter(cleaner_id=cleaner.id)
    assert {(d.status, d.reason, d.reviewed_by_id) for d in documents} == {("rejected", "expired", staff.id)}


# --- the local file store ---


async def test_the_file_store_round_trips_and_refuses_keys_it_did_not_make(tmp_path):
    store = LocalFileStore(tmp_path)
    key = await store.put(b"hello", prefix="identity-documents", extension=".pdf")
    assert key.startswith("identity-documents/") and key.endswith(".pdf")
    assert await store.get(key) == b"hello"
    assert [p.name for p in (tmp_path / key).parent.iterdir()] == [key.rsplit("/", 1)[1]]  # no temp files
    await store.delete(key)
    await store.delete(key)  # already gone is fine
    with pytest.raises(NotFound):
        await store.get(key)
    for hostile in ["../../etc/passwd", "/etc/passwd", "identity-documents/2026/01/../../../x",
                    "identity-documents/2026/01/" + "a" * 32 + "/../x"]:
        with pytest.raises(NotFound):
            await store.get(hostile)
    await store.delete("../../etc/passwd")  # names nothing of ours: nothing happens
    with pytest.raises(ValueError):
        await store.put(b"x", prefix="../up")
