"""A Kite Connect v3 ticker simulator: a real WebSocket server speaking Kite's binary protocol.

It refuses a handshake without api_key and access_token (HTTP 403, as Kite does), accepts
subscribe / mode / unsubscribe JSON, streams LTP, quote or full packets (several per frame, with
Kite's packet count and lengths) and sends a 1-byte heartbeat when idle. The simulated market is
the same as the Dhan simulator's, so one seed gives both brokers the same trades: a simulated
instrument (segment, security id) has Kite token `security_id << 8 | Kite segment code`.
"""

from __future__ import annotations

import json
import random
import time
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from tickpipe_brokers.kite import wire
from tickpipe_brokers.kite.encode import encode_full, encode_ltp, encode_quote, frame, kite_token
from tickpipe_core import get_logger
from tickpipe_simulator.bundled import plausible_price
from tickpipe_simulator.market import SimInstrument
from tickpipe_simulator.server import SentTick, Session, SimulatorServer

log = get_logger("simulator.kite")

HEARTBEAT = b"\x00"


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


_UNDERLYING = {"NIFTY 50": "NIFTY", "NIFTY BANK": "BANKNIFTY"}  # index names in the dump -> the underlying


def simulated_instrument(row: dict[str, str], rng: random.Random) -> SimInstrument:
    """A row of Kite's instruments dump (the bundled slice) as a simulated instrument, priced near the market."""
    kind, symbol = row["instrument_type"], row["tradingsymbol"]
    underlying = _UNDERLYING.get(symbol, row["name"] if kind in ("FUT", "CE", "PE") else symbol)
    tick = float(row["tick_size"]) or 0.05
    price = plausible_price(underlying, kind, float(row["strike"]), tick)
    return SimInstrument(
        "NSE_FNO",
        int(row["exchange_token"]),
        prev_close=round(price, 2),
        tick_size=tick,
        lot=int(row["lot_size"]) or 1,
        rng=rng,
        kite_token=int(row["instrument_token"]),
    )
