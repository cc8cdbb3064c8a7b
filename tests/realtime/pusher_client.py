"""A small Pusher protocol 7 test client over `websockets`, reading frames as an app would."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect


class PusherSocket:
    """Answers server pings in the background, as every Pusher client does, and queues the rest
    (pings included, so tests can see them)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.socket_id = ""
        self.activity_timeout = 0
        self.frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.reader = asyncio.get_running_loop().create_task(self._read_forever())

    async def _read_forever(self) -> None:
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                if isinstance(frame.get("data"), str):
                    try:
                        frame["data"] = json.loads(frame["data"])
                    except ValueError:
                        pass
                if frame["event"] == "pusher:ping":
                    await self.ws.send(json.dumps({"event": "pusher:pong", "data": {}}))
                await self.frames.put(frame)
        except Exception as exc:  # closed: surface it to whoever waits next
            await self.frames.put({"event": "closed", "error": repr(exc)})

    @classmethod
    async def connect(cls, url: str) -> PusherSocket:
        sock = cls(await connect(url, open_timeout=10))
        established = await sock.expect("pusher:connection_established")
        sock.socket_id = established["data"]["socket_id"]
        sock.activity_timeout = established["data"]["activity_timeout"]
        return sock

    async def send(self, event: str, data: Any = None, channel: str | None = None) -> None:
        frame: dict[str, Any] = {"event": event, "data": data if data is not None else {}}
        if channel is not None:
            frame["channel"] = channel
        await self.ws.send(json.dumps(frame))

    async def send_raw(self, raw: str) -> None:
        await self.ws.send(raw)

    async def frame(self, wait_s: float = 5) -> dict[str, Any]:
        """The next frame, with string data decoded as clients do."""
        return await asyncio.wait_for(self.frames.get(), wait_s)

    async def expect(self, event: str, channel: str | None = None, wait_s: float = 5) -> dict[str, Any]:
        """Skip other frames (pings, member events of other tests) until `event` arrives."""
        deadline = asyncio.get_running_loop().time() + wait_s
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"no {event} on {channel} within {wait_s}s")
            try:
                frame = await self.frame(remaining)
            except TimeoutError:
                raise AssertionError(f"no {event} on {channel} within {wait_s}s") from None
            if frame["event"] == event and (channel is None or frame.get("channel") == channel):
                return frame
            if frame["event"] == "pusher:error":
                raise AssertionError(f"expected {event}, got {frame}")

    async def expect_error(self, code: int, wait_s: float = 5) -> dict[str, Any]:
        frame = await self.expect("pusher:error", wait_s=wait_s)
        assert frame["data"]["code"] == code, frame
        return frame

    async def nothing(self, event: str, within: float = 0.7) -> None:
        """Assert that no `event` frame arrives within `within` seconds."""
        try:
            frame = await self.expect(event, wait_s=within)
        except AssertionError:
            return
        raise AssertionError(f"unexpected {frame}")

    async def subscribe(self, channel: str, auth: dict[str, Any] | None = None) -> dict[str, Any]:
        await self.send("pusher:subscribe", {"channel": channel, **(auth or {})})
        return await self.expect("pusher_internal:subscription_succeeded", channel)

    async def close(self) -> None:
        await self.ws.close()
        self.reader.cancel()
