"""Staff reading the chat of a disputed booking; every other conversation stays private."""

from __future__ import annotations

from core.settings import Settings
from storage import bookings, chat
from storage.models import AuditLog, Booking
from tests.admin.conftest import Dashboard, Person
from tests.storage.test_bookings import (
    bookable_cleaner,
    complete_as_cleaner,
    make_user,
    request_for,
    starting_soon,
)


async def chatted_booking(settings: Settings, *, disputed: bool) -> tuple[Booking, list[str]]:
    """A completed booking whose parties exchanged two messages, disputed by the client if asked."""
    cleaner, client = await bookable_cleaner(settings), await make_user(settings, "client")
    booking = await bookings.create_booking(actor=client, settings=settings,
                                            request=request_for(cleaner, starting_soon()))
    booking = await complete_as_cleaner(booking.id, cleaner, settings)
    snapshot = await chat.open_conversation(str(booking.id), recent=1)
    assert snapshot is not None
    bodies = ["The oven was not cleaned <b>at all</b>", "It was not in the booking"]
    await chat.append_messages(str(booking.id), [
        chat.Draft(1, str(client.id), "m-1", bodies[0]),
        chat.Draft(2, str(cleaner.id), "m-2", bodies[1]),
    ], parties=snapshot.parties)
    if disputed:
        booking = await bookings.dispute_booking(booking.id, actor=client, settings=settings,
                                                 reason="oven not cleaned")
    return booking, bodies


async def test_the_transcript_of_a_disputed_booking_is_readable_and_its_reading_audited(
        dashboard: Dashboard, staff: Person, settings: Settings):
    # given a disputed booking whose parties chatted
    booking, bodies = await chatted_booking(settings, disputed=True)

    # when staff find it among the dispute chats and open it
    listed = await dashboard.client.get("/admin/dispute-conversation/list")
    page = await dashboard.client.get("/admin/dispute-conversation/detail", params={"pk": str(booking.id)})

    # then the messages are there in order, escaped, and the reading is in the audit trail
    assert listed.status_code == 200 and str(booking.id) in listed.text
    assert page.status_code == 200, page.text
    first, second = page.text.index("The oven was not cleaned"), page.text.index(bodies[1])
    assert first < second
    assert "<b>at all</b>" not in page.text
    assert await AuditLog.filter(action="conversation.read", entity_id=str(booking.id),
                                 actor_id=staff.user.id).exists()


async def test_a_conversation_without_a_dispute_is_not_shown(dashboard: Dashboard, settings: Settings):
    # given a completed booking with a chat but no dispute
    booking, _ = await chatted_booking(settings, disputed=False)

    # when staff ask for its transcript by id
    page = await dashboard.client.get("/admin/dispute-conversation/detail", params={"pk": str(booking.id)})

    # then it is not there
    assert page.status_code == 404
