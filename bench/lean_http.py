"""A lean HTTP/1.1 client for load generation: thousands of REST requests a second from one
process that shares the machine with the stack it measures.

`aiohttp` costs the load generator about 150 µs of CPU per request (a task, a request and a
response object, header multidicts, a stream reader) and answers arrive at its callbacks only
after several loop steps; at 2,000 requests a second that is a third of one of this machine's
two cores, taken from the stack it measures, and its own delay counted in every figure. Here a
connection is one `asyncio.Protocol` with keep-alive: a request is written at once as bytes, the
response is parsed in `data_received` (status line, headers, a Content-Length body) and handed
with the time it arrived to a plain callback. A `LeanPool` keeps up to `limit` connections,
one request at a time on each (no pipelining, as a phone's connection would), and queues
requests beyond that in order.

Not a general client (no TLS, no chunked bodies, no redirects): what the edge answers with is
checked by the tests with real clients.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

# (status, body, time.perf_counter() when the response was complete); status 0: the connection failed
Answer = Callable[[int, bytes, float], None]


class LeanConnection(asyncio.Protocol):
    def __init__(self, pool: LeanPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.answer: Answer | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def send(self, request: bytes, answer: Answer) -> None:
        assert self.transport is not None and self.answer is None
        self.answer = answer
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        buffer = self.buffer
        buffer += data
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(buffer[:end]).split(b"\r\n")
        status = int(head[0].split(b" ", 2)[1])
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                raise ValueError("lean_http reads Content-Length bodies only")
        if len(buffer) < end + 4 + length:
            return
        body = bytes(buffer[end + 4:end + 4 + length])
        del buffer[:end + 4 + length]
        answer, self.answer = self.answer, None
        if answer is not None:
            self.pool._answered(answer, status, body, now)
        self.pool._idle(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool._lost(self)
        answer, self.answer = self.answer, None
        if answer is not None:
            self.pool._answered(answer, 0, repr(exc).encode(), time.perf_counter())


class LeanPool:
    """Up to `limit` keep-alive connections to one host; requests beyond them wait their turn."""

    def __init__(self, url: str, *, limit: int = 256) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.netloc = parts.netloc
        self.limit = limit
        self.idle: list[LeanConnection] = []
        self.opening = 0
        self.open = 0
        self.waiting: deque[tuple[bytes, Answer]] = deque()
        self.outstanding = 0  # requests sent or waiting, not yet answered
        self.all_answered = asyncio.Event()

    def post_json(self, path: str, payload: Any, answer: Answer, *, token: str) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        self.request(f"POST {path} HTTP/1.1\r\nHost: {self.netloc}\r\nAuthorization: Bearer {token}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body,
                     answer)

    def request(self, raw: bytes, answer: Answer) -> None:
        self.outstanding += 1
        self.all_answered.clear()
        if self.idle:
            self.idle.pop().send(raw, answer)
            return
        self.waiting.append((raw, answer))
        if self.open + self.opening < self.limit:
            self.opening += 1
            asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        try:
            _, connection = await asyncio.get_running_loop().create_connection(
                lambda: LeanConnection(self), self.host, self.port)
        except OSError as exc:
            self.opening -= 1
            if self.waiting:
                _, answer = self.waiting.popleft()
                self._answered(answer, 0, repr(exc).encode(), time.perf_counter())
            return
        self.opening -= 1
        self.open += 1
        self._idle(connection)

    def _answered(self, answer: Answer, status: int, body: bytes, now: float) -> None:
        self.outstanding -= 1
        if not self.outstanding:
            self.all_answered.set()
        answer(status, body, now)

    def _idle(self, connection: LeanConnection) -> None:
        if self.waiting:
            connection.send(*self.waiting.popleft())
        else:
            self.idle.append(connection)

    def _lost(self, connection: LeanConnection) -> None:
        self.open -= 1
        if connection in self.idle:
            self.idle.remove(connection)

    async def drain(self) -> None:
        """Until every request sent has its answer."""
        if self.outstanding:
            await self.all_answered.wait()

    def close(self) -> None:
        for connection in self.idle:
            if connection.transport is not None:
                connection.transport.close()
        self.idle.clear()
