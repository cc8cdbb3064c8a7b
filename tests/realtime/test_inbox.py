"""The edge reads client frames straight from the parser (edge/realtime/frames.py, `Inbox`):
what Sanic's path would otherwise do must still happen — fragmented messages put together,
pings answered with pongs, frames that arrive together taken in order, a close answered, and
text that is not UTF-8 refused with 1007 — over a raw TCP socket, so the frames are exactly the
ones written here."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from urllib.parse import urlsplit

from tests.realtime.conftest import socket_url


async def upgraded(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection to `url` through the WebSocket upgrade (101), nothing read after it."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


class RawSocket:
    """A hand-written RFC 6455 client: every frame it sends is built here, byte for byte."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> RawSocket:
        reader, writer = await upgraded(url)
        sock = cls(reader, writer)
        assert (await sock.event())["event"] == "pusher:connection_established"
        return sock

    @staticmethod
    def frame(payload: bytes, *, opcode: int = 0x1, fin: bool = True) -> bytes:
        mask = os.urandom(4)
        size = len(payload)
        length = bytes([0x80 | size]) if size < 126 else bytes([0x80 | 126]) + size.to_bytes(2, "big")
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return bytes([(0x80 if fin else 0) | opcode]) + length + mask + masked

    async def read_frame(self) -> tuple[int, bytes]:
        first, second = await asyncio.wait_for(self.reader.readexactly(2), 10)
        size = second & 0x7F
        if size == 126:
            size = int.from_bytes(await self.reader.readexactly(2), "big")
        elif size == 127:
            size = int.from_bytes(await self.reader.readexactly(8), "big")
        return first & 0x0F, await self.reader.readexactly(size)

    async def event(self) -> dict:
        opcode, payload = await self.read_frame()
        assert opcode == 0x1, (opcode, payload)
        return json.loads(payload)

    def close(self) -> None:
        self.writer.close()


PING = json.dumps({"event": "pusher:ping", "data": {}}).encode()


async def test_frames_that_arrive_together_are_each_answered_in_order(rt_edge):
    """Three hundred pings in one write (beyond the inbox's limit, so reading pauses and resumes
    on the way), then an unknown event: three hundred pongs, then that event's error."""
    sock = await RawSocket.open(socket_url(rt_edge))
    try:
        odd = json.dumps({"event": "no-such-event"}).encode()
        sock.writer.write(b"".join(RawSocket.frame(PING) for _ in range(300)) + RawSocket.frame(odd))
        for _ in range(300):
            assert (await sock.event())["event"] == "pusher:pong"
        error = await sock.event()
        assert error["event"] == "pusher:error" and "no-such-event" in error["data"]["message"]
    finally:
        sock.close()


async def test_a_fragmented_message_is_put_together_and_the_socket_keeps_working(rt_edge):
    sock = await RawSocket.open(socket_url(rt_edge))
    try:
        half = len(PING) // 2
        sock.writer.write(RawSocket.frame(PING[:half], fin=False)
                          + RawSocket.frame(PING[half:], opcode=0x0))
        assert (await sock.event())["event"] == "pusher:pong"
        sock.writer.write(RawSocket.frame(PING))  # whole frames after it still get answers
        assert (await sock.event())["event"] == "pusher:pong"
    finally:
        sock.close()


async def test_a_websocket_ping_gets_its_pong_between_messages(rt_edge):
    sock = await RawSocket.open(socket_url(rt_edge))
    try:
        sock.writer.write(RawSocket.frame(PING) + RawSocket.frame(b"are you there", opcode=0x9)
                          + RawSocket.frame(PING))
        seen = [await sock.read_frame() for _ in range(3)]
        assert (0xA, b"are you there") in seen  # the WebSocket pong, with the ping's payload
        assert sum(1 for opcode, payload in seen if opcode == 0x1 and b"pusher:pong" in payload) == 2
    finally:
        sock.close()


async def test_text_that_is_not_utf8_closes_the_socket_with_1007(rt_edge):
    sock = await RawSocket.open(socket_url(rt_edge))
    try:
        sock.writer.write(RawSocket.frame(b'{"event":"pusher:ping","data":"\xff\xfe"}'))
        opcode, payload = await sock.read_frame()
        assert opcode == 0x8 and int.from_bytes(payload[:2], "big") == 1007
    finally:
        sock.close()


async def test_a_close_is_answered_and_the_connection_ends(rt_edge):
    sock = await RawSocket.open(socket_url(rt_edge))
    try:
        sock.writer.write(RawSocket.frame((1000).to_bytes(2, "big"), opcode=0x8))
        opcode, payload = await sock.read_frame()
        assert opcode == 0x8 and int.from_bytes(payload[:2], "big") == 1000
        assert await asyncio.wait_for(sock.reader.read(), 10) == b""  # the server closed TCP
    finally:
        sock.close()


async def test_frames_sent_before_the_connection_is_established_are_answered_in_order(rt_edge):
    """A client that writes as soon as the upgrade is answered, before the edge's handler has
    said pusher:connection_established: those frames are answered, first."""
    reader, writer = await upgraded(socket_url(rt_edge))
    try:
        writer.write(b"".join(RawSocket.frame(json.dumps({"event": f"early-{n}"}).encode()) for n in range(3)))
        sock = RawSocket(reader, writer)
        events = [await sock.event() for _ in range(4)]
        assert events[0]["event"] == "pusher:connection_established"
        assert [e["event"] for e in events[1:]] == ["pusher:error"] * 3
        assert [f"early-{n}" in e["data"]["message"] for n, e in enumerate(events[1:])] == [True] * 3
        writer.write(RawSocket.frame(PING))
        assert (await sock.event())["event"] == "pusher:pong"
    finally:
        writer.close()
