"""A Kite Connect v3 ticker simulator: a real WebSocket server speaking Kite's binary protocol.

It refuses a handshake without api_key and access_token (HTTP 403, as Kite does), accepts
subscribe / mode / unsubscribe JSON, streams LTP, quote or full packets (several per frame, with
Kite's packet count and lengths) and sends a 1-byte heartbeat when idle. The simulated market is
the same as the Dhan simulator's, so one seed gives both brokers the same trades: a simulated
instrument (segment, security id) has Kite token `security_id << 8 | Kite segment code`.
"""

from __future__ import annotations

import json
import struct
import time
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from tickpipe_core import get_logger
from tickpipe_ingestion.kite import wire
from tickpipe_simulator.market import Quote, SimInstrument
from tickpipe_simulator.server import SentTick, Session, SimulatorServer

log = get_logger("simulator.kite")

# The simulated instruments carry Dhan's segment names; these are the same markets on Kite.
KITE_SEGMENT_OF = {
    "NSE_EQ": "NSE",
    "NSE_FNO": "NFO",
    "NSE_CURRENCY": "CDS",
    "BSE_EQ": "BSE",
    "BSE_FNO": "BFO",
    "BSE_CURRENCY": "BCD",
    "MCX_COMM": "MCX",
}
HEARTBEAT = b"\x00"


def kite_token(inst: SimInstrument) -> int:
    """The instrument's real Kite token where it has one, else one made from its Dhan id."""
    if inst.kite_token is not None:
        return inst.kite_token
    return inst.security_id << 8 | wire.SEGMENT_CODES[KITE_SEGMENT_OF[inst.segment]]


def _price(x: float, d: float) -> int:
    return round(x * d)


def encode_ltp(token: int, q: Quote) -> bytes:
    return wire.LTP_PACKET.pack(token, _price(q.ltp, wire.divisor(token)))


def _quote_fields(token: int, q: Quote) -> tuple[int, ...]:
    """The fields a quote packet and the start of a full packet share, in wire order."""
    d = wire.divisor(token)
    return (
        token,
        _price(q.ltp, d),
        q.ltq,
        _price(q.atp, d),
        q.volume,
        q.total_buy_qty,
        q.total_sell_qty,
        _price(q.open, d),
        _price(q.high, d),
        _price(q.low, d),
        _price(q.close, d),
    )


def encode_quote(token: int, q: Quote) -> bytes:
    return wire.QUOTE_PACKET.pack(*_quote_fields(token, q))


def encode_full(token: int, q: Quote, trade_time: int) -> bytes:
    d = wire.divisor(token)
    depth: list[int] = []
    for qty, price, orders in zip(q.bid_qty, q.bid_price, q.bid_orders, strict=True):
        depth += [qty, _price(price, d), orders]
    for qty, price, orders in zip(q.ask_qty, q.ask_price, q.ask_orders, strict=True):
        depth += [qty, _price(price, d), orders]
    return wire.FULL_PACKET.pack(
        *_quote_fields(token, q),
        trade_time,
        q.oi,
        q.oi_high,
        q.oi_low,
        trade_time,  # exchange timestamp
        *depth,
    )


def frame(packets: list[bytes]) -> bytes:
    """Kite's binary frame: packet count, then each packet with its length."""
    return struct.pack(">H", len(packets)) + b"".join(struct.pack(">H", len(p)) + p for p in packets)


class KiteSimulator(SimulatorServer):
    """Serve a simulated market over Kite's ticker protocol."""

    def __init__(self, instruments: list[SimInstrument], rate: float = 100.0, **kw: Any) -> None:
        super().__init__(instruments, rate, **kw)
        self._by_token = {kite_token(i): i for i in instruments}
        self.heartbeats = 0

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        query = parse_qs(urlsplit(request.path).query)
        if query.get("api_key") and query.get("access_token"):
            return None
        return connection.respond(HTTPStatus.FORBIDDEN, "invalid api_key or access_token\n")

    async def _on_request(self, session: Session, message: str | bytes) -> None:
        try:
            request = json.loads(message)
            action, value = request["a"], request["v"]
            if action == "mode":
                mode, tokens = value[0], [int(t) for t in value[1]]
                if mode not in wire.MODES:
                    raise ValueError(mode)
            else:
                mode, tokens = "quote", [int(t) for t in value]  # Kite subscribes in quote mode
        except (ValueError, KeyError, TypeError, IndexError):
            log.warning("simulator_bad_request", request=str(message)[:200])
            await session.ws.send(json.dumps({"type": "error", "data": "invalid message"}))
            return
        self.requests.append(request)
        for token in tokens:
            inst = self._by_token.get(token)
            if inst is None:
                continue
            if action == "unsubscribe":
                session.subscribed.pop(token, None)
            elif action == "subscribe" or token in session.subscribed:
                session.subscribed[token] = (inst, mode)

    def _trade(
        self, session: Session, inst: SimInstrument, mode: str, packets: list[bytes], ticks: list[SentTick]
    ) -> None:
        quote = self._step(inst)
        token = kite_token(inst)
        now = int(time.time())
        if mode == "ltp":
            packets.append(encode_ltp(token, quote))
        elif mode == "quote":
            packets.append(encode_quote(token, quote))
        else:
            packets.append(encode_full(token, quote, now))
        ticks.append(SentTick(quote, now, mode, session.number))

    def _frame(self, packets: list[bytes]) -> bytes:
        return frame(packets)

    async def _idle(self, session: Session) -> None:
        await session.ws.send(HEARTBEAT)
        self.heartbeats += 1
