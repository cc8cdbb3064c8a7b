"""Writing a server text frame straight to a socket's transport, when nothing is in its way.

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
"""

from __future__ import annotations

from typing import Any

from websockets.protocol import State


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
