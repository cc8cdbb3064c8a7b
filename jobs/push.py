"""Push jobs: a `notify.push_requested` event becomes FCM messages to the users' devices.

Sent with firebase-admin's messaging API in batches of at most 500 tokens, with APNs sound and
badge, the Android channel, and a `data` map the apps route on (`route`, `category`,
`event_id`). Tokens FCM reports UNREGISTERED or INVALID_ARGUMENT are deleted. Without
`fcm_credentials_file` (dev), messages are logged instead of sent.

firebase-admin has no setting for the FCM endpoint, so `FcmSender` replaces the send URL of its
messaging service with `fcm_send_url`; that keeps tests on a local fake, never the internet.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from typing import Any

import firebase_admin
from firebase_admin import credentials, exceptions, messaging

from core.events import EventType, PushRequested
from core.ids import new_id
from core.settings import Settings
from jobs.worker import Job, Poison, WorkerKind
from storage import devices

log = logging.getLogger("spotless.jobs.push")

FCM_BATCH = 500
_TOKEN_GONE = (messaging.UnregisteredError, exceptions.InvalidArgumentError)


class PushUnavailable(Exception):
    """FCM failed every send of a batch with a retryable error."""


class FcmSender:
    """One firebase-admin app, pointed at `fcm_send_url`."""

    def __init__(self, settings: Settings) -> None:
        self.app = firebase_admin.initialize_app(
            credentials.Certificate(settings.fcm_credentials_file),
            options={"httpTimeout": settings.fcm_http_timeout_s}, name=f"spotless-push-{new_id()}")
        service = messaging._get_messaging_service(self.app)
        service._fcm_url = settings.fcm_send_url.format(project_id=self.app.project_id)

    async def send(self, message: messaging.MulticastMessage) -> messaging.BatchResponse:
        return await messaging.send_each_for_multicast_async(message, app=self.app)

    async def aclose(self) -> None:
        # delete_app closes the async HTTP client with asyncio.run(), which cannot run inside a
        # loop: close it here on its own loop first, then delete the app from a thread.
        await messaging._get_messaging_service(self.app)._async_client.aclose()
        await asyncio.to_thread(firebase_admin.delete_app, self.app)


def build_message(payload: PushRequested, targets: list[tuple[str, str]], *, event_id: str,
                  settings: Settings) -> messaging.MulticastMessage:
    """The multicast message for one push event and up to 500 (token, kind) targets."""
    data = {**{k: str(v) for k, v in payload.get("data", {}).items()},
            "category": payload["category"], "event_id": event_id}
    fids = [value for value, kind in targets if kind == "fid"]
    tokens = [value for value, kind in targets if kind != "fid"]
    with warnings.catch_warnings():
        # Registration tokens are deprecated in favour of installation IDs (fids), but apps built
        # on older FCM SDKs only have tokens; both are sent until those apps are gone.
        warnings.filterwarnings("ignore", "MulticastMessage.tokens is deprecated", DeprecationWarning)
        return messaging.MulticastMessage(
            tokens=tokens or None,
            fids=fids or None,
            notification=messaging.Notification(title=payload["title"], body=payload["body"]),
            data=data,
            android=messaging.AndroidConfig(
                priority="high",
                notification=messaging.AndroidNotification(channel_id=settings.push_android_channel,
                                                           sound="default")),
            apns=messaging.APNSConfig(
                headers={"apns-priority": "10"},
                payload=messaging.APNSPayload(aps=messaging.Aps(sound="default",
                                                                badge=payload.get("badge")))),
        )


async def send_push(job: Job, sender: FcmSender | None, settings: Settings) -> None:
    """The handler: send to every device of the users who allow the category."""
    payload: Any = job.payload
    try:
        targets = await devices.push_targets(payload["user_ids"], payload["category"])
        payload["title"], payload["body"]  # noqa: B018 (refuse a payload without them now)
    except (KeyError, ValueError, TypeError) as exc:
        raise Poison(f"bad push payload: {exc!r}") from exc
    if sender is None:
        log.info("push (not sent, no FCM credentials) to %d device(s): %s", len(targets), payload["title"])
        return
    for start in range(0, len(targets), FCM_BATCH):
        # firebase-admin sends a multicast's tokens first, then its fids: keep that order here
        batch = sorted(targets[start:start + FCM_BATCH], key=lambda target: target[1] == "fid")
        message = build_message(payload, batch, event_id=str(job.event_id), settings=settings)
        await _send_batch(sender, message, [value for value, _ in batch])


async def _send_batch(sender: FcmSender, message: messaging.MulticastMessage, tokens: list[str]) -> None:
    response = await sender.send(message)
    failures = [(token, r.exception) for token, r in zip(tokens, response.responses, strict=True)
                if not r.success]
    if failures and len(failures) == len(tokens) > 1 and all(
            isinstance(e, exceptions.InvalidArgumentError) for _, e in failures):
        raise Poison(f"FCM refused the message itself: {failures[0][1]}")
    gone = [token for token, e in failures if isinstance(e, _TOKEN_GONE)]
    if gone:
        await devices.forget_tokens(gone)
        log.info("forgot %d push token(s) FCM reported gone", len(gone))
    retryable = [e for _, e in failures if not isinstance(e, _TOKEN_GONE)]
    if retryable and len(retryable) == len(tokens):
        raise PushUnavailable(f"every send failed: {retryable[0]}")
    if retryable:  # retrying would repeat the sends that worked; say so and move on
        log.warning("%d of %d push sends failed: %s", len(retryable), len(tokens), retryable[0])


def push_worker(settings: Settings) -> WorkerKind:
    sender = FcmSender(settings) if settings.fcm_credentials_file else None

    async def handle(job: Job) -> None:
        await send_push(job, sender, settings)

    return WorkerKind("push", {EventType.PUSH_REQUESTED: handle},
                      on_close=sender.aclose if sender is not None else None)
