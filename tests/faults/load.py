"""The load a fault lands in: apps sending chat messages, clients booking, clients searching and
cleaners' heartbeats, in loops, over HTTP; every answer is recorded.

An app retries what was not acknowledged (a 503, a dropped connection) with the same
client_msg_id, and a client retries a booking with the same slot, so when the load stops every
message and every slot it tried has a final answer, and PostgreSQL can be held to exactly that.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx

from tests.conftest import Account
from tests.faults.conftest import FaultStack, Market, booking_body
from tests.realtime.pusher_client import PusherSocket

REQUEST_TIMEOUT_S = 20.0  # an answer slower than this counts as a hang
RETRY_PAUSE_S = 0.25

# what each kind of request may answer while a dependency is away: success, or a clean 503
ALLOWED = {
    "chat": {200, 201, 503},
    "booking": {201, 409, 503},
    "search": {200, 503},
    "heartbeat": {200, 503},
}


@dataclass
class Answer:
    kind: str
    status: int  # 0: no HTTP answer (a dropped connection or a hang)
    at_s: float
    code: str | None = None
    retry_after: str | None = None
    content_type: str = ""
    error: str | None = None


@dataclass
class Load:
    stack: FaultStack
    market: Market
    answers: list[Answer] = field(default_factory=list)
    acked: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (conv, cmid) -> message
    booked: dict[tuple[str, datetime], str] = field(default_factory=dict)  # (cleaner, start) -> client id
    slots_tried: list[tuple[Account, Account, datetime]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    started: float = field(default_factory=time.monotonic)
    tag: str = field(default_factory=lambda: secrets.token_hex(3))  # this load's client_msg_ids

    # --- recording ---

    async def _call(self, http: httpx.AsyncClient, kind: str, method: str, url: str,
                    **kwargs: Any) -> httpx.Response | None:
        at = time.monotonic() - self.started
        try:
            response = await http.request(method, url, timeout=REQUEST_TIMEOUT_S, **kwargs)
        except httpx.HTTPError as exc:
            self.answers.append(Answer(kind, 0, at, error=f"{type(exc).__name__}: {exc}"))
            return None
        code = None
        if response.headers.get("content-type", "").startswith("application/problem+json"):
            code = response.json().get("code")
        self.answers.append(Answer(kind, response.status_code, at, code, response.headers.get("retry-after"),
                                   response.headers.get("content-type", "")))
        return response

    # --- the apps ---

    async def _chat(self, http: httpx.AsyncClient, sender: Account, conversation_id: str, prefix: str) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            await self.send_until_acked(http, sender, conversation_id, f"{prefix}-{n}", deadline_s=60)
            await asyncio.sleep(0.05)

    async def send_until_acked(self, http: httpx.AsyncClient, sender: Account, conversation_id: str,
                               client_msg_id: str, *, deadline_s: float) -> dict[str, Any]:
        """Send until acknowledged, retrying the same client_msg_id as the apps do."""
        deadline = time.monotonic() + deadline_s
        while True:
            response = await self._call(http, "chat", "POST", f"/api/v1/conversations/{conversation_id}/messages",
                                        headers=sender.auth, json={"client_msg_id": client_msg_id,
                                                                   "body": f"hello {client_msg_id}"})
            if response is not None and response.status_code in (200, 201):
                message: dict[str, Any] = response.json()["data"]
                self.acked[(conversation_id, client_msg_id)] = message
                return message
            assert time.monotonic() < deadline, f"{client_msg_id} not acknowledged within {deadline_s} s"
            await asyncio.sleep(RETRY_PAUSE_S)

    async def _book(self, http: httpx.AsyncClient, client: Account, cleaner: Account) -> None:
        """One client books the load cleaner's consecutive two-hour slots, each until it has an
        answer (the next load goes on where this one stopped)."""
        while not self.stop.is_set():
            start = self.market.load_next
            self.market.load_next += timedelta(hours=2)
            self.slots_tried.append((client, cleaner, start))
            deadline = time.monotonic() + 60
            while True:
                response = await self._call(http, "booking", "POST", "/api/v1/bookings", headers=client.auth,
                                            json=booking_body(cleaner, start, self.market))
                if response is not None and response.status_code in (201, 409):
                    # 409 after a retry: the first try committed but its answer was lost
                    self.booked[(cleaner.id, start)] = client.id
                    break
                assert time.monotonic() < deadline, f"booking at {start} not answered within 60 s"
                await asyncio.sleep(RETRY_PAUSE_S)
            await asyncio.sleep(0.05)

    async def _search(self, http: httpx.AsyncClient, client: Account, start: datetime) -> None:
        while not self.stop.is_set():
            await self._call(http, "search", "GET", "/api/v1/cleaners/search", headers=client.auth,
                             params={"lat": self.market.lat, "lng": self.market.lng, "service": "standard",
                                     "start": start.isoformat(), "hours": "2"})
            await asyncio.sleep(0.05)

    async def _heartbeat(self, http: httpx.AsyncClient, cleaner: Account) -> None:
        while not self.stop.is_set():
            await self._call(http, "heartbeat", "POST", "/api/v1/cleaner/presence", headers=cleaner.auth,
                             json={"lat": self.market.lat, "lng": self.market.lng})
            await asyncio.sleep(0.1)

    # --- driving ---

    async def _run(self, http: httpx.AsyncClient) -> None:
        market = self.market
        loops = []
        for n, (client, cleaner, conversation_id) in enumerate(market.conversations[:2]):
            loops.append(self._chat(http, client, conversation_id, f"{self.tag}-c{n}"))
            loops.append(self._chat(http, cleaner, conversation_id, f"{self.tag}-k{n}"))
        loops.append(self._book(http, market.clients[-1], market.load_cleaner))
        loops.append(self._search(http, market.clients[-2], market.load_next + timedelta(days=1)))
        loops.append(self._heartbeat(http, market.cleaners[0]))
        await asyncio.gather(*loops)

    async def __aenter__(self) -> Load:
        self.http = httpx.AsyncClient(base_url=self.stack.edge.url, limits=httpx.Limits(max_connections=20))
        self.runner = asyncio.get_running_loop().create_task(self._run(self.http))
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self.stop.set()
        try:
            await asyncio.wait_for(self.runner, 90)  # loops end once their in-flight item is answered
        finally:
            await self.http.aclose()

    async def warm_up(self, *, answers: int = 20, within_s: float = 60) -> None:
        """Wait until the load is flowing (every kind has answered successfully)."""
        deadline = time.monotonic() + within_s
        while True:
            ok = Counter(a.kind for a in self.answers if 200 <= a.status < 300)
            if len(ok) == len(ALLOWED) and min(ok.values()) >= 2 and len(self.answers) >= answers:
                return
            assert time.monotonic() < deadline, f"the load never flowed: {Counter((a.kind, a.status) for a in self.answers)}"
            if self.runner.done():
                self.runner.result()
            await asyncio.sleep(0.1)

    async def run_for(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if self.runner.done():
            self.runner.result()  # a loop that gave up raises here

    # --- what the tests assert ---

    def unclean(self) -> list[Answer]:
        """Every answer that is neither a success nor a clean refusal: a 500, a hang, a 503
        without Retry-After or problem details, a 409 other than slot_taken."""
        bad = []
        for a in self.answers:
            if a.status not in ALLOWED[a.kind]:
                bad.append(a)
            elif a.status == 503 and (not a.retry_after or not a.content_type.startswith("application/problem+json")):
                bad.append(a)
            elif a.status == 409 and a.code != "slot_taken":
                bad.append(a)
        return bad

    def summary(self) -> dict[tuple[str, int], int]:
        return dict(sorted(Counter((a.kind, a.status) for a in self.answers).items()))

    async def assert_chat_exactly_once(self) -> None:
        """PostgreSQL holds every acknowledged message once, at the seq it was acknowledged
        with, and nothing this load was not told about; seqs are gapless; each message has its
        push row in the outbox and the conversation's last_seq matches."""
        for _, _, conversation_id in self.market.conversations[:2]:
            rows = await self.stack.query(
                "SELECT seq, client_msg_id, body FROM chat_messages WHERE conversation_id = $1 ORDER BY seq",
                conversation_id)
            assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1)), "seqs are not gapless"
            ours = {r["client_msg_id"]: r for r in rows if r["client_msg_id"].startswith(self.tag)}
            acked = {cmid: m for (cid, cmid), m in self.acked.items() if cid == conversation_id}
            assert acked, "no message was acknowledged"
            assert ours.keys() == acked.keys(), (sorted(ours.keys() - acked.keys()), sorted(acked.keys() - ours.keys()))
            for cmid, message in acked.items():
                assert (ours[cmid]["seq"], ours[cmid]["body"]) == (message["seq"], message["body"])
            last = await self.stack.query("SELECT last_seq FROM chat_conversations WHERE id = $1", conversation_id)
            assert last[0]["last_seq"] == len(rows)
            pushes = await self.stack.query(
                "SELECT count(*) AS n FROM outbox WHERE type = 'notify.push_requested' "
                "AND payload->'data'->>'route' = $1", f"/conversations/{conversation_id}")
            assert pushes[0]["n"] == len(rows), "a message without its push event, or the reverse"

    async def assert_nothing_lost_or_doubled(self, races: list[tuple[Account, list[httpx.Response | None]]],
                                             start: datetime) -> None:
        """After a fault: each race booked its slot at most once; every acknowledged message and
        booking is in PostgreSQL exactly once with its events; the outbox drains; and a socket
        subscribing now hears a new message live."""
        for cleaner, responses in races:
            won = assert_race_clean(responses)
            assert won <= await bookings_overlapping(self.stack, cleaner, start) <= 1
        await self.assert_chat_exactly_once()
        await self.assert_bookings_exactly_once()
        await self.stack.until_outbox_drained()
        client, cleaner, conversation_id = self.market.conversations[2]
        await live_delivery_works(self.stack, client, cleaner, conversation_id)

    async def assert_bookings_exactly_once(self) -> None:
        """Every slot the load booked is held by exactly one booking, its client's, with its
        timeline row and its outbox event; no slot it tried is held twice or lost."""
        assert self.slots_tried, "the load booked nothing"
        cleaner = self.market.load_cleaner
        starts = [start for _, _, start in self.slots_tried]
        rows = await self.stack.query(
            "SELECT b.client_id::text AS client_id, b.starts_at, "
            "(SELECT count(*) FROM booking_transitions t WHERE t.booking_id = b.id) AS steps, "
            "(SELECT count(*) FROM outbox o WHERE o.type = 'booking.requested' "
            " AND o.payload->>'booking_id' = b.id::text) AS events "
            "FROM bookings b WHERE b.cleaner_id = $1 AND b.starts_at >= $2 AND b.starts_at <= $3",
            cleaner.id, min(starts), max(starts))
        assert sorted(r["starts_at"] for r in rows) == sorted(starts)
        for row in rows:
            assert row["client_id"] == self.booked[(cleaner.id, row["starts_at"])]
            assert (row["steps"], row["events"]) == (1, 1), dict(row)


async def race(stack: FaultStack, market: Market, cleaner: Account, start: datetime,
               n: int = 10) -> list[httpx.Response | None]:
    """n clients press "book" at once for overlapping windows of one cleaner."""
    async with httpx.AsyncClient(base_url=stack.edge.url, timeout=REQUEST_TIMEOUT_S,
                                 limits=httpx.Limits(max_connections=n)) as http:
        async def one(i: int) -> httpx.Response | None:
            body = booking_body(cleaner, start + timedelta(minutes=15 * (i % 4)), market)
            try:
                return await http.post("/api/v1/bookings", headers=market.clients[i % len(market.clients)].auth,
                                       json=body)
            except httpx.HTTPError:
                return None
        return list(await asyncio.gather(*(one(i) for i in range(n))))


async def bookings_overlapping(stack: FaultStack, cleaner: Account, start: datetime) -> int:
    rows = await stack.query(
        "SELECT count(*) AS n FROM bookings WHERE cleaner_id = $1 AND starts_at < $3 AND ends_at > $2",
        cleaner.id, start, start + timedelta(hours=3))
    return int(rows[0]["n"])


def assert_race_clean(responses: list[httpx.Response | None]) -> int:
    """Every racer got an answer: one booking, slot_taken, or a clean 503; returns the 201s."""
    for response in responses:
        assert response is not None, "a racer got no answer"
        assert response.status_code in (201, 409, 503), response.text
        if response.status_code == 409:
            assert response.json()["code"] == "slot_taken", response.text
        if response.status_code == 503:
            assert response.headers.get("retry-after"), response.headers
    won = sum(1 for r in responses if r is not None and r.status_code == 201)
    assert won <= 1, [r.text for r in responses if r is not None and r.status_code == 201]
    return won


async def live_delivery_works(stack: FaultStack, client, cleaner, conversation_id: str) -> None:
    channel = f"presence-conversation.{conversation_id}"
    sock = await PusherSocket.connect(stack.edge.url.replace("http://", "ws://") + "/app/spotless-key?protocol=7")
    try:
        async with httpx.AsyncClient(base_url=stack.edge.url, timeout=20) as http:
            auth = await http.post("/api/v1/broadcasting/auth", headers=cleaner.auth,
                                   data={"socket_id": sock.socket_id, "channel_name": channel})
            assert auth.status_code == 200, auth.text
            await sock.subscribe(channel, auth.json())
            sent = await http.post(f"/api/v1/conversations/{conversation_id}/messages", headers=client.auth,
                                   json={"client_msg_id": f"after-{secrets.token_hex(4)}", "body": "are you there?"})
            assert sent.status_code == 201, sent.text
        frame = await sock.expect("chat.message", channel, wait_s=15)
        assert frame["data"]["body"] == "are you there?" and frame["data"]["seq"] == sent.json()["data"]["seq"]
    finally:
        await sock.close()
