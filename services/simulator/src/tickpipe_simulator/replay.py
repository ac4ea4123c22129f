"""Serve a capture file (`tickpipe record`) back over WebSocket: a bad day, reproduced byte for byte.

The frames go out exactly as they were recorded, so the replay speaks whichever broker's protocol
was captured; it does not check credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Sequence

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tickpipe_core import get_logger
from tickpipe_core.capture import CapturedFrame

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


class ThreadedReplay:
    """A `Replay` on a thread of its own, for a process busy with other things (tickpipe bench, tests).

    Every connection gets the whole capture from its start, as a broker sends every client the market.
    """

    def __init__(self, frames: Sequence[CapturedFrame], speed: float = 1.0) -> None:
        self.replay = Replay(frames, speed)
        self.port = 0
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._serve(),), daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the replay server did not start")

    async def _serve(self) -> None:
        async with self.replay.serving() as server:
            self.port = int(server.sockets[0].getsockname()[1])
            self._ready.set()
            await self._stop.wait()

    def cpu_seconds(self) -> float:
        """CPU time the server's thread has used so far (what serving the feed costs this machine)."""
        if self._thread.ident is None or not self._thread.is_alive():
            return 0.0
        return time.clock_gettime(time.pthread_getcpuclockid(self._thread.ident))

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def __enter__(self) -> ThreadedReplay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
