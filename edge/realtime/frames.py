"""A socket's frames past Sanic's per-frame machinery: written straight to the transport when
nothing is in the way (`write_now`), and read straight from the protocol parser (`Inbox`).

Writing.

Sanic's `ws.send` takes the connection's mutex, runs the `websockets` protocol to build the frame
and awaits the transport's write permission: with a writer task and a queue per socket, one
outgoing frame cost a task wake-up and three awaits, most of the edge's CPU per chat message at
thousands of sockets. A server frame is never masked and we never compress, so its bytes are a
two-to-ten byte header and the UTF-8 text: built once per event and written to every socket
that receives it.

`write_now` writes only when that cannot overtake or corrupt anything: the socket is open, no
`ws.send` holds the mutex (a frame half way through Sanic's path would otherwise be overtaken),
the transport is not paused for backpressure and is not closing. Otherwise it returns False and
the caller queues the text for the ordinary path, which keeps order behind it.

Reading. For every chunk the socket reads, Sanic starts a task that takes a lock and hands each
frame to an assembler, which waits until `ws.recv()` has taken it; `recv()` itself starts a task
and a future per message and waits on both. An `Inbox` takes the chunk where Sanic would: it
feeds the `websockets` parser as Sanic does, keeps each complete data frame as a message for the
connection's reader, and gives Sanic everything else to handle as before (the pong a ping asks
for, a close and its reply). A fragmented message, which no Pusher client sends, turns the
socket over to Sanic's path for good, after the messages already kept. Messages waiting beyond
`INBOX_LIMIT` pause reading from the socket until the reader catches up. The edge's server
protocol (`InboxProtocol`) installs the inbox as the upgrade completes, before any frame of the
client can have been read; should a frame reach Sanic's own path first all the same, its
assembler hands it to the inbox, ahead of everything the inbox took itself.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from sanic.server.protocols.websocket_protocol import WebSocketProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State

INBOX_LIMIT = 256  # client messages kept unread before the socket stops being read


def text_frame(text: str) -> bytes:
    """An unmasked, final, uncompressed text frame (RFC 6455 §5.2)."""
    payload = text.encode()
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big") + payload
    return b"\x81\x7f" + n.to_bytes(8, "big") + payload


def write_now(ws: Any, frame: bytes) -> bool:
    """Write `frame` to the socket at once if nothing is in its way; False when the caller must
    queue it (see the module's docs). Sanic's internals are looked up defensively: if a release
    renames them, every frame takes the ordinary path."""
    protocol = getattr(ws, "ws_proto", None)
    io = getattr(ws, "io_proto", None)
    mutex = getattr(ws, "conn_mutex", None)
    transport = getattr(io, "transport", None)
    can_write = getattr(io, "_can_write", None)
    if (protocol is None or transport is None or mutex is None or can_write is None
            or protocol.state is not State.OPEN or mutex.locked() or not can_write.is_set()
            or transport.is_closing()):
        return False
    transport.write(frame)
    return True


def _whole(frame: Frame) -> bool:
    """A data frame that is a whole message (not a fragment)."""
    return frame.opcode in (Opcode.TEXT, Opcode.BINARY) and frame.fin


class Inbox:
    """The messages a client sent, as the connection's reader takes them (module docs)."""

    @classmethod
    def of(cls, ws: Any) -> Inbox:
        """The socket's inbox: the one installed at the upgrade, or a new one."""
        inbox = getattr(ws, "spotless_inbox", None)
        if not isinstance(inbox, Inbox):
            inbox = cls(ws)
            ws.spotless_inbox = inbox
        return inbox

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.messages: deque[str | bytes] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.ended = False
        self.paused = False
        # Sanic's own path from the start if its internals are not where this expects them.
        self.ordinary = not all(hasattr(ws, name) for name in (
            "ws_proto", "io_proto", "data_received", "connection_lost", "async_data_received", "assembler"))
        self.early = 0  # messages Sanic took before the inbox was installed, at the front
        if not self.ordinary:
            self._lost, self._put = ws.connection_lost, ws.assembler.put
            ws.data_received = self._data_received  # the socket's protocol calls ws.data_received
            ws.connection_lost = self._connection_lost
            ws.assembler = _EarlyFrames(ws.assembler, self._put_early)  # its class has __slots__

    async def next(self) -> str | bytes | None:
        """The next message; None once the socket is closed."""
        while not self.messages:
            if self.ordinary:
                return await self.ws.recv()  # type: ignore[no-any-return]
            if self.ended:
                return None
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        message = self.messages.popleft()
        if self.paused and len(self.messages) <= INBOX_LIMIT // 2:
            self.paused = False
            self._transport_call("resume_reading")
        return message

    def _data_received(self, data: bytes) -> None:
        ws = self.ws
        parser = ws.ws_proto
        parser.receive_data(data)
        to_send, events = parser.data_to_send(), parser.events_received()
        rest: list[Any] = []  # what Sanic handles: control frames, and everything once ordinary
        for event in events:
            if self.ordinary or not isinstance(event, Frame):
                rest.append(event)
            elif _whole(event):
                message = self._message(event)
                if message is None:
                    return
                self.messages.append(message)
            elif event.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
                # A fragmented message: Sanic's assembler puts it together, from here on; the
                # reader takes what is kept here first, then goes to Sanic's recv().
                self.ordinary = True
                rest.append(event)
            else:
                rest.append(event)  # ping (its pong is in to_send already), pong, close
        if self.messages or self.ordinary:
            self._wake()
            if len(self.messages) > INBOX_LIMIT and not self.paused:
                self.paused = True
                self._transport_call("pause_reading")
        if to_send or rest:
            asyncio.get_running_loop().create_task(ws.async_data_received(to_send, rest))

    async def _put_early(self, frame: Frame) -> None:
        """A frame Sanic parsed before the inbox was installed: it goes ahead of the inbox's own."""
        if not self.ordinary and _whole(frame):
            message = self._message(frame)
            if message is None:
                return
            self.messages.insert(self.early, message)
            self.early += 1
            self._wake()
            return
        self.ordinary = True  # a fragment, or Sanic's path already: the assembler keeps it
        self._wake()
        await self._put(frame)

    def _message(self, frame: Frame) -> str | bytes | None:
        """A whole data frame as the reader takes it; None (and the socket failed with 1007)
        for text that is not UTF-8."""
        if frame.opcode is Opcode.BINARY:
            return bytes(frame.data)
        try:
            return bytes(frame.data).decode()
        except UnicodeDecodeError:
            self.ws.fail_connection(1007, "invalid UTF-8")
            return None

    def _connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        self._wake()
        self._lost(exc)

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _transport_call(self, name: str) -> None:
        transport = getattr(self.ws.io_proto, "transport", None)
        if transport is not None and not transport.is_closing():
            getattr(transport, name)()


class _EarlyFrames:
    """Sanic's frame assembler, with `put` (only ever frames from before the inbox) rerouted."""

    def __init__(self, assembler: Any, put: Any) -> None:
        self._assembler = assembler
        self.put = put

    def __getattr__(self, name: str) -> Any:
        return getattr(self._assembler, name)


class InboxProtocol(WebSocketProtocol):
    """Sanic's WebSocket server protocol, with each socket's inbox installed as the upgrade
    completes (`app.prepare(protocol=InboxProtocol)`)."""

    async def websocket_handshake(self, request: Any, subprotocols: Any = None) -> Any:
        ws = await super().websocket_handshake(request, subprotocols)
        Inbox.of(ws)
        return ws
