"""Staff reading a disputed chat see which messages carried an image, and what the image is."""

from __future__ import annotations

from core.channels import Viewer
from core.settings import Settings
from storage import attachments, chat
from storage.files import file_store
from tests.admin.conftest import Dashboard
from tests.admin.test_conversations import chatted_booking
from tests.core.test_supply import image_bytes


async def test_a_message_with_an_image_shows_it_in_the_transcript(dashboard: Dashboard, settings: Settings):
    # given a disputed booking where the client then sent a photo of the oven
    booking, _ = await chatted_booking(settings, disputed=True)
    conversation_id = str(booking.id)
    client = Viewer(str(booking.client_id), "client")
    image = await attachments.add_attachment(conversation_id, viewer=client, data=image_bytes("PNG"),
                                             settings=settings, store=file_store(settings))
    snapshot = await chat.open_conversation(conversation_id, recent=1)
    assert snapshot is not None
    await chat.append_messages(conversation_id, [chat.Draft(3, client.user_id, "m-3", "", str(image.id))],
                               parties=snapshot.parties)

    # when staff open the transcript
    page = await dashboard.client.get("/admin/dispute-conversation/detail", params={"pk": conversation_id})

    # then the image is named beside its message, with its type and state
    assert page.status_code == 200, page.text
    assert f"Image {image.id} (image/png, processing" in page.text
