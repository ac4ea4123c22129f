"""Serve a capture file (`tickpipe record`) back over WebSocket: a bad day, reproduced byte for byte.

The frames go out exactly as they were recorded, so the replay speaks whichever broker's protocol
was captured; it does not check credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tickpipe_core import get_logger
from tickpipe_ingestion.capture import CapturedFrame

log = get_logger("simulator.replay")


class Replay:
    """Serve captured frames back, paced by their receive times / `speed`, to any client.

    Each client connection, after its first subscribe message, gets the frames recorded on capture
    connection (n mod recorded connections), n counting client connections from 0. `speed` 0
    sends as fast as the socket takes them.
    """

    def __init__(self, frames: Sequence[CapturedFrame], speed: float = 1.0) -> None:
        self._by_connection: dict[int, list[CapturedFrame]] = {}
        for frame in frames:
            self._by_connection.setdefault(frame.connection, []).append(frame)
        self.speed = speed
        self.connections = 0
        self.frames_sent = 0
        self.finished = asyncio.Event()
        """Set when a connection has sent its whole share of the capture."""

    @contextlib.asynccontextmanager
    async def serving(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[Server]:
        async with serve(self._handle, host, port, max_size=2**20) as server:
            yield server

    async def _handle(self, ws: ServerConnection) -> None:
        keys = sorted(self._by_connection)
        frames = self._by_connection[keys[self.connections % len(keys)]] if keys else []
        self.connections += 1
        with contextlib.suppress(ConnectionClosed):
            await ws.recv()  # the first subscribe request starts the replay
            loop = asyncio.get_running_loop()
            start = loop.time()
            for frame in frames:
                if self.speed > 0:
                    delay = (frame.receive_time - frames[0].receive_time) / self.speed - (loop.time() - start)
                    if delay > 0:
                        await asyncio.sleep(delay)
                await ws.send(frame.data)
                self.frames_sent += 1
            log.info("replay_finished", frames=len(frames))
            self.finished.set()
            async for _ in ws:  # keep reading (later subscribe requests, the close) until the client leaves
                pass
