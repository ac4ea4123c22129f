"""A Dhan v2 exchange simulator: a real WebSocket server speaking the binary feed protocol.

It accepts the subscribe JSON, answers with a previous-close packet per new instrument and then
streams full packets for the subscribed instruments at `rate` ticks per second per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tickpipe_core import get_logger
from tickpipe_ingestion.dhan import wire
from tickpipe_ingestion.simulator.market import Quote, SimInstrument

log = get_logger("simulator.dhan")

_SUBSCRIBE = {15, 17, 21}
_UNSUBSCRIBE = {16, 18, 22}


@dataclass(frozen=True)
class SentTick:
    """A tick the simulator sent, as it meant it (the test oracle for the pipeline)."""

    quote: Quote
    ltt: int  # India wall-clock as epoch seconds, as Dhan sends it


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


def encode_prev_close(inst: SimInstrument) -> bytes:
    return wire.PREV_CLOSE_PACKET.pack(
        wire.PREV_CLOSE,
        wire.PREV_CLOSE_PACKET.size,
        wire.SEGMENT_CODES[inst.segment],
        inst.security_id,
        inst.prev_close,
        inst.oi,
    )


class DhanSimulator:
    """Serve a simulated market over Dhan's protocol."""

    def __init__(
        self,
        instruments: list[SimInstrument],
        rate: float = 100.0,
        *,
        max_ticks: int | None = None,
        record: bool = False,
    ) -> None:
        self.instruments = {(i.segment, i.security_id): i for i in instruments}
        self.rate = rate
        self.max_ticks = max_ticks
        self.record = record
        self.sent: list[SentTick] = []
        self.ticks_sent = 0
        self.connections = 0
        self.requests: list[dict[str, object]] = []

    @contextlib.asynccontextmanager
    async def serving(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[Server]:
        """Run the server for the duration of the block; `server.sockets[0]` has the real port."""
        async with serve(self._handle, host, port, max_size=2**20) as server:
            yield server

    @property
    def done(self) -> bool:
        return self.max_ticks is not None and self.ticks_sent >= self.max_ticks

    async def _handle(self, ws: ServerConnection) -> None:
        query = parse_qs(urlsplit(ws.request.path if ws.request else "").query)
        if not query.get("token") or not query.get("clientId"):
            await ws.send(wire.DISCONNECT_PACKET.pack(wire.DISCONNECT, wire.DISCONNECT_PACKET.size, 0, 0, 808))
            await ws.close()
            return
        self.connections += 1
        subscribed: dict[tuple[str, int], SimInstrument] = {}
        streamer = asyncio.create_task(self._stream(ws, subscribed))
        try:
            async for message in ws:
                await self._on_request(ws, message, subscribed)
        except ConnectionClosed:
            pass
        finally:
            streamer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await streamer

    async def _on_request(
        self, ws: ServerConnection, message: str | bytes, subscribed: dict[tuple[str, int], SimInstrument]
    ) -> None:
        try:
            request = json.loads(message)
            code = int(request["RequestCode"])
        except (ValueError, KeyError, TypeError):
            log.warning("simulator_bad_request", request=str(message)[:200])
            return
        self.requests.append(request)
        if code == wire.REQUEST_DISCONNECT:
            await ws.close()
            return
        for item in request.get("InstrumentList", []):
            key = (str(item.get("ExchangeSegment")), int(item.get("SecurityId", -1)))
            inst = self.instruments.get(key)
            if inst is None:
                continue
            if code in _SUBSCRIBE and key not in subscribed:
                subscribed[key] = inst
                await ws.send(encode_prev_close(inst))
            elif code in _UNSUBSCRIBE:
                subscribed.pop(key, None)

    async def _stream(self, ws: ServerConnection, subscribed: dict[tuple[str, int], SimInstrument]) -> None:
        loop = asyncio.get_running_loop()
        start, sent = loop.time(), 0
        rng_pick = 0
        while True:
            due = int((loop.time() - start) * self.rate) - sent
            if due <= 0 or not subscribed or self.done:
                if not subscribed:
                    start, sent = loop.time(), 0
                await asyncio.sleep(min(0.01, 1 / self.rate))
                continue
            instruments = list(subscribed.values())
            for _ in range(min(due, 5000)):
                if self.done:
                    break
                inst = instruments[rng_pick % len(instruments)]
                rng_pick += 1
                quote = inst.step()
                ltt = int(time.time()) + wire.IST_OFFSET_SECONDS
                await ws.send(encode_full(quote, ltt))
                self.ticks_sent += 1
                sent += 1
                if self.record:
                    self.sent.append(SentTick(quote, ltt))
