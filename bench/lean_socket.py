"""A lean client WebSocket for load generation: thousands of Pusher sockets in one process.

A benchmark's load generator shares the machine's two cores with the stack it measures, and
its own latency is part of every figure it prints. The `websockets` client runs a reader task
per socket and hands each frame through a queue to another task, a few tens of microseconds of
CPU per frame; at 5,000 sockets and 2,000 messages/s (four frames per message) that was a
sixth of a core, and a frame that arrived waited for its socket's task to be scheduled before
its arrival was timed. Here a socket is one `asyncio.Protocol`: frames are parsed in
`data_received` and handed, with the time they arrived, to a plain callback; sends are written
at once. What it speaks is RFC 6455 as far as a Pusher server uses it: the upgrade handshake,
unfragmented text frames both ways (the client's masked), ping, pong and close.

Not a general client (no extensions, no fragmented messages, no TLS): the protocol tests drive
the edge with `websockets` and with pusher-js, so conformance is checked there.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from websockets.speedups import apply_mask  # websockets' C masking, already a dependency

Handler = Callable[[str, float], None]  # (text of a frame, time.perf_counter() when it arrived)

OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA


def client_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """One final frame from a client: masked, as RFC 6455 requires."""
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        header = bytes((0x80 | opcode, 0x80 | size))
    elif size < 1 << 16:
        header = bytes((0x80 | opcode, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + size.to_bytes(8, "big")
    return header + mask + apply_mask(payload, mask)


class LeanSocket(asyncio.Protocol):
    """One client WebSocket. Until `on_text` is set, text frames queue for `recv()`."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.upgraded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.buffer = bytearray()
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.on_text: Handler | None = None
        self.close_code: int | None = None

    @classmethod
    async def connect(cls, url: str) -> LeanSocket:
        """Open `url` (ws://host:port/path?query) and complete the upgrade, within a minute."""
        async with asyncio.timeout(60):
            return await cls._connect(url)

    @classmethod
    async def _connect(cls, url: str) -> LeanSocket:
        parts = urlsplit(url)
        loop = asyncio.get_running_loop()
        _, socket = await loop.create_connection(cls, parts.hostname, parts.port or 80)
        key = base64.b64encode(os.urandom(16)).decode()
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        assert socket.transport is not None
        socket.transport.write(
            f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        await socket.upgraded
        return socket

    # --- asyncio.Protocol ---

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        buffer = self.buffer
        buffer += data
        if not self.upgraded.done():
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buffer[:end]).split(b"\r\n", 1)[0]
            del buffer[:end + 4]
            if b" 101 " not in status + b" ":
                self.upgraded.set_exception(ConnectionError(f"upgrade refused: {status.decode(errors='replace')}"))
                self._abort()
                return
            self.upgraded.set_result(None)
        while len(buffer) >= 2:
            first, second = buffer[0], buffer[1]
            size, start = second & 0x7F, 2
            if size == 126:
                if len(buffer) < 4:
                    return
                size, start = int.from_bytes(buffer[2:4], "big"), 4
            elif size == 127:
                if len(buffer) < 10:
                    return
                size, start = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < start + size:
                return
            payload = bytes(buffer[start:start + size])
            del buffer[:start + size]
            opcode = first & 0x0F
            if opcode == OP_TEXT:
                text = payload.decode()
                if self.on_text is not None:
                    self.on_text(text, now)
                else:
                    self.queue.put_nowait(text)
            elif opcode == OP_PING:
                self._write(client_frame(payload, OP_PONG))
            elif opcode == OP_CLOSE:
                self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self._write(client_frame(payload[:2], OP_CLOSE))
                self._abort()
                return

    def connection_lost(self, exc: Exception | None) -> None:
        if self.close_code is None:
            self.close_code = 1006
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError("closed before the upgrade"))
        if not self.closed.done():
            self.closed.set_result(None)
        self.queue.put_nowait("")  # wakes a recv() in progress

    # --- what a benchmark calls ---

    async def recv(self) -> str:
        """The next text frame (before `on_text` is set); ConnectionError once closed."""
        text = await self.queue.get()
        if not text and self.closed.done():
            raise ConnectionError(f"closed ({self.close_code})")
        return text

    def send(self, text: str) -> None:
        self._write(client_frame(text.encode()))

    async def close(self, code: int = 1000) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._write(client_frame(code.to_bytes(2, "big"), OP_CLOSE))
            try:
                await asyncio.wait_for(asyncio.shield(self.closed), 5)
            except TimeoutError:
                self._abort()

    def _write(self, frame: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame)

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.close()
