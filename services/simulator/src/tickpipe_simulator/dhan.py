"""A Dhan v2 exchange simulator: a real WebSocket server speaking the binary feed protocol.

It accepts the subscribe JSON and answers each new instrument with a previous-close packet, then
streams packets in the subscribed mode: ticker packets, quote packets with an OI packet now and
then (and, with `full_every`, an occasional full packet, as Dhan sends to overlapping
subscriptions), or full packets, several per frame. Besides the shared faults (server.py), tests
can make it send a disconnect code.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection

from tickpipe_core import get_logger
from tickpipe_ingestion.dhan import wire
from tickpipe_simulator.market import Quote, SimInstrument
from tickpipe_simulator.server import SentTick, Session, SimulatorServer

log = get_logger("simulator.dhan")

_MODES: dict[int, str] = {code: mode for mode, (code, _) in wire.REQUEST_CODES.items()}
_UNSUBSCRIBE = {unsub for _, unsub in wire.REQUEST_CODES.values()}
OI_EVERY = 10  # in quote mode, an OI packet follows every 10th quote of an instrument


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


_ENCODERS: dict[str, Callable[[Quote, int], bytes]] = {
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


class DhanSimulator(SimulatorServer):
    """Serve a simulated market over Dhan's protocol.

    With `full_every`, every Nth packet of a quote subscription is a full packet. With `snapshot`, a
    subscription starts with the last packet sent for the instrument, byte for byte, as a broker's
    snapshot after a reconnect does (a packet the client may already have).
    """

    def __init__(
        self,
        instruments: list[SimInstrument],
        rate: float = 100.0,
        *,
        full_every: int = 0,
        snapshot: bool = False,
        **kw: Any,
    ):
        super().__init__(instruments, rate, **kw)
        self.full_every = full_every
        self.snapshot = snapshot
        self.snapshots_sent = 0
        self._last_sent: dict[tuple[str, int], SentTick] = {}
        self._by_key = {(i.segment, i.security_id): i for i in instruments}

    async def disconnect(self, code: int) -> None:
        """Send a disconnect packet with `code`, then close, as Dhan does."""
        await self._each(lambda s: s.ws.send(encode_disconnect(code)), close=True)

    async def _accept(self, ws: ServerConnection) -> bool:
        if _authorized(ws):
            return True
        await _reject(ws)
        return False

    async def _on_request(self, session: Session, message: str | bytes) -> None:
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
            inst = self._by_key.get(key)
            if inst is None:
                continue
            if mode is not None:
                if key not in session.subscribed:
                    await session.ws.send(encode_prev_close(inst))
                    last = self._last_sent.get(key) if self.snapshot else None
                    if last is not None:  # the same bytes again: encoding is deterministic
                        await session.ws.send(_ENCODERS[last.packet](last.quote, last.ltt))
                        self.snapshots_sent += 1
                session.subscribed[key] = (inst, mode)
            elif code in _UNSUBSCRIBE:
                session.subscribed.pop(key, None)

    def _sent(self, ticks: list[SentTick]) -> None:
        for t in ticks:
            self._last_sent[(t.quote.segment, t.quote.security_id)] = t

    def _trade(
        self, session: Session, inst: SimInstrument, mode: str, packets: list[bytes], ticks: list[SentTick]
    ) -> None:
        quote = self._step(inst)
        ltt = int(time.time()) + wire.IST_OFFSET_SECONDS
        packet = mode
        if mode == "quote" and self.full_every and session.trades % self.full_every == 0:
            packet = "full"
        packets.append(_ENCODERS[packet](quote, ltt))
        if packet == "quote" and session.trades % OI_EVERY == 0:
            packets.append(encode_oi(quote))
        ticks.append(SentTick(quote, ltt, packet, session.number))
