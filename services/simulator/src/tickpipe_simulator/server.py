"""What every broker simulator shares: a WebSocket server streaming a simulated market, and faults.

A broker module says how a client authenticates, what its requests mean and how a trade becomes
packets and frames; this module runs sessions, paces ticks at `rate` per second per connection,
packs one to `packets_per_frame` packets into a frame, records what it sent (the test oracle; with
`numbered`, each trade's volume is its number on the server, so exactly-once is checked from numbers),
and lets tests script faults on every live connection: `silence(seconds)`, `drop()`, `inject(bytes)`,
`send_text(...)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tickpipe_brokers.quote import Quote
from tickpipe_simulator.market import SimInstrument


@dataclass(frozen=True)
class SentTick:
    """A tick the simulator sent, as it meant it (the test oracle for the pipeline)."""

    quote: Quote
    ltt: int  # the trade-time field as the broker sends it (Dhan: India wall clock; Kite: UTC)
    packet: str
    connection: int = 0  # which client connection it went out on (1, 2, ... in order of connecting)


@dataclass(eq=False)  # hashed by identity: sessions live in a set
class Session:
    """One client connection: what it subscribed to, in which mode."""

    ws: ServerConnection
    number: int = 0
    subscribed: dict[Hashable, tuple[SimInstrument, str]] = field(default_factory=dict)
    trades: int = 0


class SimulatorServer:
    """The shared part of a broker simulator; subclasses implement the hooks at the bottom."""

    def __init__(
        self,
        instruments: list[SimInstrument],
        rate: float = 100.0,
        *,
        max_ticks: int | None = None,
        record: bool = False,
        packets_per_frame: int = 1,
        seed: int = 0,
        numbered: bool = False,
    ) -> None:
        self.instruments = instruments
        self.rate = rate
        self.max_ticks = max_ticks
        self.record = record
        self.packets_per_frame = packets_per_frame
        self._rng = random.Random(seed)
        self.numbered = numbered
        self._number = 0
        self.sent: list[SentTick] = []
        self.ticks_sent = 0
        self.connections = 0
        self.requests: list[dict[str, Any]] = []
        self._sessions: set[Session] = set()
        self._silent_until = 0.0
        self._muted: dict[int, float] = {}

    @contextlib.asynccontextmanager
    async def serving(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[Server]:
        """Run the server for the duration of the block; `server.sockets[0]` has the real port."""
        async with serve(self._handle, host, port, max_size=2**20, process_request=self._process_request) as server:
            yield server

    @property
    def done(self) -> bool:
        return self.max_ticks is not None and self.ticks_sent >= self.max_ticks

    @property
    def live(self) -> int:
        """Connections currently open."""
        return len(self._sessions)

    # -- scripted faults, applied to every live connection ----------------------------------------

    async def inject(self, frame: bytes) -> None:
        """Send raw bytes as one binary frame (malformed packets, for instance)."""
        await self._each(lambda s: s.ws.send(frame))

    async def send_text(self, text: str) -> None:
        await self._each(lambda s: s.ws.send(text))

    def silence(self, seconds: float) -> None:
        """Stop sending anything for `seconds`, keeping the connections open."""
        self._silent_until = time.monotonic() + seconds

    def mute(self, security_id: int, seconds: float) -> None:
        """Stop sending one instrument's trades for `seconds` while the others go on."""
        self._muted[security_id] = time.monotonic() + seconds

    async def drop(self) -> None:
        """Close every connection abruptly: TCP closes with no WebSocket close frame (code 1006).

        Frames already written are flushed first, as when a broker's process dies.
        """
        for s in list(self._sessions):
            s.ws.transport.close()
        await asyncio.sleep(0)

    async def _each(self, action: Callable[[Session], Awaitable[None]], *, close: bool = False) -> None:
        for s in list(self._sessions):
            with contextlib.suppress(ConnectionClosed):
                await action(s)
                if close:
                    await s.ws.close()

    # -- sessions ---------------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        if not await self._accept(ws):
            return
        self.connections += 1
        session = Session(ws, self.connections)
        self._sessions.add(session)
        streamer = asyncio.create_task(self._stream(session))
        try:
            async for message in ws:
                await self._on_request(session, message)
        except ConnectionClosed:
            pass
        finally:
            self._sessions.discard(session)
            streamer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await streamer

    async def _stream(self, session: Session) -> None:
        loop = asyncio.get_running_loop()
        start, sent, pick, idle_since = loop.time(), 0, 0, loop.time()
        while True:
            silent = time.monotonic() < self._silent_until
            due = int((loop.time() - start) * self.rate) - sent
            if due <= 0 or not session.subscribed or self.done or silent:
                if not session.subscribed or silent:
                    start, sent = loop.time(), 0
                if not silent and loop.time() - idle_since >= 1.0:
                    idle_since = loop.time()
                    await self._idle(session)
                await asyncio.sleep(min(0.01, 1 / self.rate))
                continue
            subscribed = list(session.subscribed.values())
            budget = min(due, 5000)
            while budget > 0 and not self.done:
                n = min(budget, self._rng.randint(1, self.packets_per_frame))
                if self.max_ticks is not None:
                    n = min(n, self.max_ticks - self.ticks_sent)
                packets: list[bytes] = []
                ticks: list[SentTick] = []
                for _ in range(n):
                    inst, mode = subscribed[pick % len(subscribed)]
                    pick += 1
                    if self._muted and self._muted.get(inst.security_id, 0.0) > time.monotonic():
                        inst, mode = subscribed[pick % len(subscribed)]  # its turn goes to the next one
                        pick += 1
                    session.trades += 1
                    self._trade(session, inst, mode, packets, ticks)
                if session.ws.transport.is_closing():
                    return  # dropped: bytes written now would vanish, and must not count as sent
                await session.ws.send(self._frame(packets))
                # Counted once written: a frame that never left (closed socket) is not "sent".
                self.ticks_sent += n
                self._sent(ticks)
                budget -= n
                sent += n
                idle_since = loop.time()
                if self.record:
                    self.sent += ticks

    def _step(self, inst: SimInstrument) -> Quote:
        """The instrument's next trade; numbered, its volume is the trade's number on this server (1, 2, ...)."""
        quote = inst.step()
        if self.numbered:
            self._number += 1
            quote.volume = self._number
        return quote

    # -- broker hooks -----------------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse the handshake (e.g. HTTP 403) or return None to accept it."""
        return None

    async def _accept(self, ws: ServerConnection) -> bool:
        """After the handshake: False to turn the client away (the hook sends what the broker sends)."""
        return True

    async def _on_request(self, session: Session, message: str | bytes) -> None:
        raise NotImplementedError

    def _trade(
        self, session: Session, inst: SimInstrument, mode: str, packets: list[bytes], ticks: list[SentTick]
    ) -> None:
        """Append the packets of one simulated trade in `mode` and what was meant by them."""
        raise NotImplementedError

    def _frame(self, packets: list[bytes]) -> bytes:
        return b"".join(packets)

    def _sent(self, ticks: list[SentTick]) -> None:
        """Called with the ticks of each frame once it is written."""

    async def _idle(self, session: Session) -> None:
        """Called about once a second while nothing is sent (Kite sends a heartbeat)."""
