"""A Dhan v2 exchange simulator: a real WebSocket server speaking the binary feed protocol.

It accepts the subscribe JSON and answers each new instrument with a previous-close packet, then
streams packets in the subscribed mode: ticker packets, quote packets with an OI packet now and
then (and, with `full_every`, an occasional full packet, as Dhan sends to overlapping
subscriptions), or full packets. Frames hold one to `packets_per_frame` packets. Tests script
faults on every live connection: `disconnect(code)`, `silence(seconds)`, `drop()`, `inject(bytes)`.
`DhanReplay` serves a capture file back instead of a random market.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, cast
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tickpipe_core import get_logger
from tickpipe_ingestion.capture import CapturedFrame
from tickpipe_ingestion.dhan import wire
from tickpipe_ingestion.simulator.market import Quote, SimInstrument

log = get_logger("simulator.dhan")

Mode = Literal["ticker", "quote", "full"]
_MODES: dict[int, Mode] = {code: cast(Mode, mode) for mode, (code, _) in wire.REQUEST_CODES.items()}
_UNSUBSCRIBE = {unsub for _, unsub in wire.REQUEST_CODES.values()}
OI_EVERY = 10  # in quote mode, an OI packet follows every 10th quote of an instrument


@dataclass(frozen=True)
class SentTick:
    """A tick the simulator sent, as it meant it (the test oracle for the pipeline)."""

    quote: Quote
    ltt: int  # India wall-clock as epoch seconds, as Dhan sends it
    packet: Mode


def encode_full(q: Quote, ltt: int) -> bytes:
    depth: list[float | int] = []
    for i in range(wire.DEPTH_LEVELS):
        depth += [q.bid_qty[i], q.ask_qty[i], q.bid_orders[i], q.ask_orders[i], q.bid_price[i], q.ask_price[i]]
    return wire.FULL_PACKET.pack(
        wire.FULL,
        wire.FULL_PACKET.size,
        wire.SEGMENT_CODES[q.segment],
        q.security_id,
        q.ltp,
        q.ltq,
        ltt,
        q.atp,
        q.volume,
        q.total_sell_qty,
        q.total_buy_qty,
        q.oi,
        q.oi_high,
        q.oi_low,
        q.open,
        q.close,
        q.high,
        q.low,
        *depth,
    )


def encode_quote(q: Quote, ltt: int) -> bytes:
    return wire.QUOTE_PACKET.pack(
        wire.QUOTE,
        wire.QUOTE_PACKET.size,
        wire.SEGMENT_CODES[q.segment],
        q.security_id,
        q.ltp,
        q.ltq,
        ltt,
        q.atp,
        q.volume,
        q.total_sell_qty,
        q.total_buy_qty,
        q.open,
        q.close,
        q.high,
        q.low,
    )


def encode_ticker(q: Quote, ltt: int) -> bytes:
    return wire.TICKER_PACKET.pack(
        wire.TICKER, wire.TICKER_PACKET.size, wire.SEGMENT_CODES[q.segment], q.security_id, q.ltp, ltt
    )


def encode_oi(q: Quote) -> bytes:
    return wire.OI_PACKET.pack(wire.OI, wire.OI_PACKET.size, wire.SEGMENT_CODES[q.segment], q.security_id, q.oi)


def encode_prev_close(inst: SimInstrument) -> bytes:
    return wire.PREV_CLOSE_PACKET.pack(
        wire.PREV_CLOSE,
        wire.PREV_CLOSE_PACKET.size,
        wire.SEGMENT_CODES[inst.segment],
        inst.security_id,
        inst.prev_close,
        inst.oi,
    )


def encode_disconnect(code: int) -> bytes:
    return wire.DISCONNECT_PACKET.pack(wire.DISCONNECT, wire.DISCONNECT_PACKET.size, 0, 0, code)


_ENCODERS: dict[Mode, Callable[[Quote, int], bytes]] = {
    "ticker": encode_ticker,
    "quote": encode_quote,
    "full": encode_full,
}


def _authorized(ws: ServerConnection) -> bool:
    query = parse_qs(urlsplit(ws.request.path if ws.request else "").query)
    return bool(query.get("token") and query.get("clientId"))


async def _reject(ws: ServerConnection) -> None:
    await ws.send(encode_disconnect(808))  # authentication failed
    await ws.close()


@dataclass(eq=False)  # hashed by identity: sessions live in a set
class _Session:
    """One client connection: its subscriptions and their modes."""

    ws: ServerConnection
    subscribed: dict[tuple[str, int], tuple[SimInstrument, Mode]] = field(default_factory=dict)
    quotes_sent: int = 0


class DhanSimulator:
    """Serve a simulated market over Dhan's protocol."""

    def __init__(
        self,
        instruments: list[SimInstrument],
        rate: float = 100.0,
        *,
        max_ticks: int | None = None,
        record: bool = False,
        packets_per_frame: int = 1,
        full_every: int = 0,
        seed: int = 0,
    ) -> None:
        self.instruments = {(i.segment, i.security_id): i for i in instruments}
        self.rate = rate
        self.max_ticks = max_ticks
        self.record = record
        self.packets_per_frame = packets_per_frame
        self.full_every = full_every
        self._rng = random.Random(seed)
        self.sent: list[SentTick] = []
        self.ticks_sent = 0
        self.connections = 0
        self.requests: list[dict[str, object]] = []
        self._sessions: set[_Session] = set()
        self._silent_until = 0.0

    @contextlib.asynccontextmanager
    async def serving(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[Server]:
        """Run the server for the duration of the block; `server.sockets[0]` has the real port."""
        async with serve(self._handle, host, port, max_size=2**20) as server:
            yield server

    @property
    def done(self) -> bool:
        return self.max_ticks is not None and self.ticks_sent >= self.max_ticks

    @property
    def live(self) -> int:
        """Connections currently open."""
        return len(self._sessions)

    # -- scripted faults, applied to every live connection ----------------------------------------

    async def disconnect(self, code: int) -> None:
        """Send a disconnect packet with `code`, then close, as Dhan does."""
        await self._each(lambda s: s.ws.send(encode_disconnect(code)), close=True)

    async def inject(self, frame: bytes) -> None:
        """Send raw bytes as one binary frame (malformed packets, for instance)."""
        await self._each(lambda s: s.ws.send(frame))

    def silence(self, seconds: float) -> None:
        """Stop sending anything for `seconds`, keeping the connections open."""
        self._silent_until = time.monotonic() + seconds

    async def drop(self) -> None:
        """Close every connection abruptly: TCP closes with no WebSocket close frame (code 1006).

        Frames already written are flushed first, as when a broker's process dies.
        """
        for s in list(self._sessions):
            s.ws.transport.close()
        await asyncio.sleep(0)

    async def _each(self, action: Callable[[_Session], Awaitable[None]], *, close: bool = False) -> None:
        for s in list(self._sessions):
            with contextlib.suppress(ConnectionClosed):
                await action(s)
                if close:
                    await s.ws.close()

    # -- protocol ---------------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        if not _authorized(ws):
            await _reject(ws)
            return
        self.connections += 1
        session = _Session(ws)
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

    async def _on_request(self, session: _Session, message: str | bytes) -> None:
        try:
            request = json.loads(message)
            code = int(request["RequestCode"])
        except (ValueError, KeyError, TypeError):
            log.warning("simulator_bad_request", request=str(message)[:200])
            return
        self.requests.append(request)
        if code == wire.REQUEST_DISCONNECT:
            await session.ws.close()
            return
        mode = _MODES.get(code)
        for item in request.get("InstrumentList", []):
            key = (str(item.get("ExchangeSegment")), int(item.get("SecurityId", -1)))
            inst = self.instruments.get(key)
            if inst is None:
                continue
            if mode is not None:
                if key not in session.subscribed:
                    await session.ws.send(encode_prev_close(inst))
                session.subscribed[key] = (inst, mode)
            elif code in _UNSUBSCRIBE:
                session.subscribed.pop(key, None)

    async def _stream(self, session: _Session) -> None:
        loop = asyncio.get_running_loop()
        start, sent = loop.time(), 0
        pick = 0
        while True:
            due = int((loop.time() - start) * self.rate) - sent
            if due <= 0 or not session.subscribed or self.done or time.monotonic() < self._silent_until:
                if not session.subscribed or time.monotonic() < self._silent_until:
                    start, sent = loop.time(), 0
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
                    self._packets(session, inst, mode, packets, ticks)
                await session.ws.send(b"".join(packets))
                # Counted once written: a frame that never left (closed socket) is not "sent".
                self.ticks_sent += n
                budget -= n
                sent += n
                if self.record:
                    self.sent += ticks

    def _packets(
        self, session: _Session, inst: SimInstrument, mode: Mode, packets: list[bytes], ticks: list[SentTick]
    ) -> None:
        """Append the packets of one simulated trade in `mode` (one tick, maybe an OI packet too)."""
        quote = inst.step()
        ltt = int(time.time()) + wire.IST_OFFSET_SECONDS
        packet: Mode = mode
        if mode == "quote":
            session.quotes_sent += 1
            if self.full_every and session.quotes_sent % self.full_every == 0:
                packet = "full"
        packets.append(_ENCODERS[packet](quote, ltt))
        if packet == "quote" and session.quotes_sent % OI_EVERY == 0:
            packets.append(encode_oi(quote))
        ticks.append(SentTick(quote, ltt, packet))


class DhanReplay:
    """Serve captured frames back over Dhan's protocol, paced by their receive times / `speed`.

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
        if not _authorized(ws):
            await _reject(ws)
            return
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
