"""Chat image attachments: upload, processing by the real images worker, sending with a message
through the ConversationShard, delivery over the socket, and the download of the EXIF-free file."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from datetime import timedelta
from functools import partial
from uuid import UUID

import httpx
import pytest
import pytest_asyncio
import ray
from nats.aio.client import Client
from PIL import Image
from tortoise import connections

from core.channels import BookingParties, Viewer
from core.chat import ChatError, check_attachment, check_may_see_attachments, check_message
from core.clock import utcnow
from core.errors import Conflict, Invalid, NotFound
from core.ids import new_id
from core.realtime import shard_of_conversation
from jobs.images import process_evidence
from jobs.runner import connect_nats
from storage import attachments
from storage.models import AuditLog, ChatAttachment, OutboxEvent
from tests.core.test_supply import pdf_bytes, png_bomb
from tests.edge.test_evidence import run_images
from tests.edge.test_supply import make_staff
from tests.jobs.test_images import photo
from tests.realtime.conftest import REALTIME_ENV, auth_for, unique


@pytest_asyncio.fixture
async def nats_client(jetstream, db, settings) -> AsyncIterator[Client]:  # noqa: F811
    client = await connect_nats(settings, name="spotless-test-chat-attachments")
    yield client
    await client.close()


async def attach(api: httpx.AsyncClient, account, conversation_id: str, data: bytes, *,
                 name: str = "IMG_0001.jpg", declared: str = "image/jpeg", field: str = "file"):
    return await api.post(f"/api/v1/conversations/{conversation_id}/attachments", headers=account.auth,
                          files={field: (name, data, declared)})


async def send(api: httpx.AsyncClient, account, conversation_id: str, *, body: str = "",
               attachment_id: str | None = None, client_msg_id: str | None = None):
    payload = {"client_msg_id": client_msg_id or unique("m-"), "body": body}
    if attachment_id is not None:
        payload["attachment_id"] = attachment_id
    return await api.post(f"/api/v1/conversations/{conversation_id}/messages", headers=account.auth,
                          json=payload)


def file_url(conversation_id: str, attachment_id: str) -> str:
    return f"/api/v1/conversations/{conversation_id}/attachments/{attachment_id}/file"


def assert_problem(response: httpx.Response, status: int, *, code: str | None = None,
                   field: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    if code is not None:
        assert problem["code"] == code, problem
    if field is not None:
        assert field in {e.get("field") for e in problem.get("errors", [])} or problem.get("field") == field, problem
    return problem


async def another_booking(client, cleaner) -> str:
    """A second booking (so a second conversation) between the same two people."""
    booking_id, starts = str(new_id()), utcnow() + timedelta(days=3)
    await connections.get("default").execute_query(
        "INSERT INTO bookings (id, client_id, cleaner_id, service_id, state, starts_at, ends_at) "
        "VALUES ($1, $2, $3, 'standard', 'accepted', $4, $5)",
        [booking_id, client.id, cleaner.id, starts, starts + timedelta(hours=2)])
    return booking_id


async def uploaded(api, account, conversation_id: str, data: bytes | None = None) -> str:
    response = await attach(api, account, conversation_id, data or photo())
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def test_an_image_is_uploaded_processed_sent_received_and_downloaded_without_exif(
        booking, sockets, rt_api, rt_async, nats_client, settings):
    api = rt_async[0]
    # given a conversation, and the cleaner listening on its channel
    client, cleaner, conversation_id = await booking()
    channel = f"presence-conversation.{conversation_id}"
    listener = await sockets(1)
    await listener.subscribe(channel, auth_for(rt_api, cleaner, listener.socket_id, channel))
    # when the client uploads a phone photo (sideways, with capture time and GPS in its EXIF)
    response = await attach(api, client, conversation_id, photo())
    # then it is taken, waiting for the images job, with its original on disk and an event queued
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "processing"
    attachment_id = response.json()["id"]
    row = await ChatAttachment.get(id=attachment_id)
    original = row.storage_key
    assert (settings.file_storage_path / original).exists()
    assert await OutboxEvent.filter(type="media.image_uploaded", payload__contains={
        "image_id": attachment_id, "kind": "chat_attachment"}).count() == 1
    assert await AuditLog.filter(entity_id=conversation_id, action="chat.attachment_added").count() == 1
    # and no file is served before it is processed
    assert_problem(await api.get(file_url(conversation_id, attachment_id), headers=cleaner.auth), 409,
                   code="attachment_processing")
    # when the client sends it, without a text, while it is still processing
    sent = await send(api, client, conversation_id, attachment_id=attachment_id, client_msg_id="photo-1")
    # then the message carries the attachment, still processing, and the cleaner receives it so
    assert sent.status_code == 201, sent.text
    message = sent.json()["data"]
    assert message["body"] == "" and message["attachment"]["id"] == attachment_id
    assert (message["attachment"]["status"], message["attachment"]["url"]) == ("processing", None)
    pushed = (await listener.expect("chat.message", channel))["data"]
    assert pushed["seq"] == message["seq"] and pushed["attachment"]["id"] == attachment_id
    # when the images job has run
    await run_images(nats_client, settings)
    # then the cleaner's message list shows it ready, upright, with three thumbnails
    listed = await api.get(f"/api/v1/conversations/{conversation_id}/messages", headers=cleaner.auth)
    [seen] = listed.json()["data"]
    block = seen["attachment"]
    assert (block["status"], block["width"], block["height"]) == ("ready", 400, 600)
    assert sorted(block["thumbnails"], key=int) == ["160", "480", "1280"]
    # and what the EXIF said is kept as evidence in the row
    row = await ChatAttachment.get(id=attachment_id)
    assert row.captured_at is not None and row.captured_at.isoformat() == "2026-05-01T08:30:00+00:00"
    assert (row.gps_lat, row.gps_lng) == (52.37, -4.89)
    # and the cleaner downloads a JPEG without EXIF, privately cached, never sniffed
    full = await api.get(block["url"], headers=cleaner.auth)
    assert full.status_code == 200 and full.headers["content-type"] == "image/jpeg"
    assert full.headers["x-content-type-options"] == "nosniff"
    assert full.headers["cache-control"].startswith("private")
    image = Image.open(io.BytesIO(full.content))
    assert image.size == (400, 600) and not image.getexif()
    thumb = await api.get(block["thumbnails"]["160"], headers=client.auth)
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(thumb.content)).size == (107, 160)
    assert_problem(await api.get(block["url"], params={"size": "999"}, headers=client.auth), 422, field="size")
    # and the original with its GPS is gone from the disk
    assert not (settings.file_storage_path / original).exists()
    # and a retried send still answers the first message
    again = await send(api, client, conversation_id, attachment_id=attachment_id, client_msg_id="photo-1")
    assert again.status_code == 200 and again.json()["data"]["seq"] == message["seq"]
    # and a second delivery of the image event changes nothing
    assert not await process_evidence(UUID(attachment_id), original, settings, rows=attachments,
                                      prefix=attachments.ATTACHMENT_PREFIX)
    assert (await ChatAttachment.get(id=attachment_id)).storage_key == row.storage_key


async def test_strangers_get_404_and_admins_may_look_but_not_post(booking, party, rt_api, rt_async,
                                                                   nats_client, settings):
    api = rt_async[0]
    client, _, conversation_id = await booking()
    attachment_id = await uploaded(api, client, conversation_id)
    await run_images(nats_client, settings)
    outsider = party("cleaner")
    staff = await make_staff(rt_api, settings)
    # a stranger can neither upload, nor send, nor download (404, as if nothing were there)
    assert_problem(await attach(api, outsider, conversation_id, photo()), 404)
    assert_problem(await send(api, outsider, conversation_id, attachment_id=attachment_id), 404)
    assert_problem(await api.get(file_url(conversation_id, attachment_id), headers=outsider.auth), 404)
    # an admin may download the file, but posts nothing
    assert (await api.get(file_url(conversation_id, attachment_id), headers=staff)).status_code == 200
    assert_problem(await api.post(f"/api/v1/conversations/{conversation_id}/attachments", headers=staff,
                                  files={"file": ("x.jpg", photo(), "image/jpeg")}), 404)
    # and nonsense ids are 404s, not errors
    assert_problem(await api.get(file_url(conversation_id, "not-a-uuid"), headers=client.auth), 404)
    assert_problem(await api.get(file_url("not-a-uuid", attachment_id), headers=client.auth), 404)


async def test_what_is_not_an_acceptable_image_is_refused_with_a_problem(booking, rt_async):
    api = rt_async[0]
    client, _, conversation_id = await booking()
    # a PDF named .jpg is judged by its bytes: 415
    assert_problem(await attach(api, client, conversation_id, pdf_bytes()), 415)
    # a decompression bomb: 422
    assert_problem(await attach(api, client, conversation_id, png_bomb(20_000, 20_000), name="x.png",
                                declared="image/png"), 422)
    # the wrong field, or no multipart at all
    assert_problem(await attach(api, client, conversation_id, photo(), field="photo"), 422, field="file")
    response = await api.post(f"/api/v1/conversations/{conversation_id}/attachments", headers=client.auth,
                              content=photo())
    assert response.status_code == 415, response.text
    # and nothing was stored
    assert await ChatAttachment.filter(conversation_id=conversation_id).count() == 0


async def test_an_attachment_goes_with_one_message_of_its_uploader_in_its_conversation(booking, rt_async):
    api = rt_async[0]
    client, cleaner, conversation_id = await booking()
    other_conversation = await another_booking(client, cleaner)
    attachment_id = await uploaded(api, client, conversation_id)
    # when the other party tries to send the client's image: as if it did not exist
    assert_problem(await send(api, cleaner, conversation_id, attachment_id=attachment_id), 422,
                   code="attachment_not_found", field="attachment_id")
    # and an attachment id that does not exist, or is not a uuid
    assert_problem(await send(api, client, conversation_id, attachment_id="00000000-0000-0000-0000-000000000001"),
                   422, code="attachment_not_found")
    assert_problem(await send(api, client, conversation_id, attachment_id="nope"), 422, field="attachment_id")
    # when the client sends it once, then with another message
    first = await send(api, client, conversation_id, body="the stain", attachment_id=attachment_id)
    assert first.status_code == 201, first.text
    assert_problem(await send(api, client, conversation_id, body="again", attachment_id=attachment_id), 409,
                   code="attachment_used")
    # and the client's image of another conversation with the same cleaner cannot be sent here
    assert_problem(await send(api, client, other_conversation, body="hm", attachment_id=attachment_id), 422,
                   code="attachment_not_found")
    # and a message without a text still needs an attachment
    assert_problem(await send(api, client, conversation_id, body="  "), 422, code="empty_message")
    # the failed sends left no messages behind
    listed = await api.get(f"/api/v1/conversations/{conversation_id}/messages", headers=client.auth)
    assert [m["body"] for m in listed.json()["data"]] == ["the stain"]


async def test_concurrent_sends_of_one_image_give_it_to_exactly_one_message(booking, rt_async):
    # given an uploaded image
    client, _, conversation_id = await booking()
    attachment_id = await uploaded(rt_async[0], client, conversation_id)
    # when six different messages race to carry it, through both edge workers (so some share a
    # shard batch and some do not)
    responses = await asyncio.gather(*(
        send(rt_async[n % 2], client, conversation_id, body=f"take {n}", attachment_id=attachment_id)
        for n in range(6)))
    # then one message has it and every other send is a 409 that wrote nothing
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 409, 409, 409, 409, 409], [r.text for r in responses]
    listed = await rt_async[0].get(f"/api/v1/conversations/{conversation_id}/messages", headers=client.auth)
    [message] = listed.json()["data"]
    assert message["attachment"]["id"] == attachment_id and message["seq"] == 1


async def test_one_shard_batch_gives_an_image_to_its_first_message_and_writes_the_rest(
        booking, rt_async, settings):
    # given an uploaded image and the conversation's shard
    client, cleaner, conversation_id = await booking()
    attachment_id = await uploaded(rt_async[0], client, conversation_id)
    count = int(REALTIME_ENV["SPOTLESS_CONVERSATION_SHARDS"])
    actor = ray.get_actor(f"conversations-{shard_of_conversation(conversation_id, count)}-of-{count}",
                          namespace=settings.ray_namespace)
    # when one batch (one Ray call) carries two messages naming the image, the cleaner naming it,
    # and a plain message
    results = await actor.send.remote([
        (conversation_id, client.id, "b-1", "", attachment_id),
        (conversation_id, client.id, "b-2", "mine too", attachment_id),
        (conversation_id, cleaner.id, "b-3", "", attachment_id),
        (conversation_id, cleaner.id, "b-4", "plain", None),
    ])
    # then the first has it, the second is a conflict, the cleaner's is refused, the plain one is written
    assert results[0]["created"] and results[0]["message"]["attachment"]["id"] == attachment_id
    assert (results[1]["error"], results[1]["code"]) == ("conflict", "attachment_used")
    assert (results[2]["error"], results[2]["code"]) == ("invalid", "attachment_not_found")
    assert results[3]["created"] and results[3]["message"]["seq"] == 2


# --- the rules alone (core/chat.py) ---

def test_an_attachment_rule_refuses_others_images_reuse_and_refused_images():
    mine = {"conversation_id": "c1", "uploaded_by_id": "u1", "status": "processing"}
    check = partial(check_attachment, conversation_id="c1", sender_id="u1", client_msg_id="m-1")
    check(mine, used_by=None)  # one's own image, unused, still processing: fine
    check(mine, used_by=("u1", "m-1"))  # a retry of the message that carries it: fine
    for found in (None, {**mine, "uploaded_by_id": "u2"}, {**mine, "conversation_id": "c2"}):
        with pytest.raises(Invalid) as refused:
            check(found, used_by=None)
        assert refused.value.code == ChatError.ATTACHMENT_NOT_FOUND
    with pytest.raises(Conflict):
        check(mine, used_by=("u1", "m-0"))
    with pytest.raises(Invalid) as refused:
        check({**mine, "status": "refused"}, used_by=None)
    assert refused.value.code == ChatError.ATTACHMENT_REFUSED


def test_an_empty_body_is_a_message_only_beside_an_attachment():
    assert check_message("  ", "m-1", max_chars=10, has_attachment=True) == ""
    with pytest.raises(Invalid):
        check_message("  ", "m-1", max_chars=10)


def test_admins_see_attachments_strangers_do_not():
    parties = BookingParties("client", "cleaner")
    assert check_may_see_attachments(Viewer("staff", "admin"), parties) == parties
    assert check_may_see_attachments(Viewer("cleaner", "cleaner"), parties) == parties
    with pytest.raises(NotFound):
        check_may_see_attachments(Viewer("someone", "client"), parties)
    with pytest.raises(NotFound):
        check_may_see_attachments(Viewer("staff", "admin"), None)
