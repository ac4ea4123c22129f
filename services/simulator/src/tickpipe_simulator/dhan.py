"""A Dhan v2 exchange simulator: a real WebSocket server speaking the binary feed protocol.

It accepts the subscribe JSON and answers each new instrument with a previous-close packet, then
streams packets in the subscribed mode: ticker packets, quote packets with an OI packet now and
then (and, with `full_every`, an occasional full packet, as Dhan sends to overlapping
subscriptions), or full packets, several per frame. Besides the shared faults (server.py), tests
can make it send a disconnect code.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection

from tickpipe_brokers.dhan import wire
from tickpipe_brokers.dhan.encode import ENCODERS, encode_disconnect, encode_full, encode_oi, encode_prev_close
from tickpipe_core import get_logger
from tickpipe_core.capture import CapturedFrame
from tickpipe_simulator.bundled import plausible_price
from tickpipe_simulator.market import SimInstrument
from tickpipe_simulator.server import SentTick, Session, SimulatorServer

log = get_logger("simulator.dhan")

_MODES: dict[int, str] = {code: mode for mode, (code, _) in wire.REQUEST_CODES.items()}
_UNSUBSCRIBE = {unsub for _, unsub in wire.REQUEST_CODES.values()}
OI_EVERY = 10  # in quote mode, an OI packet follows every 10th quote of an instrument


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
                        await session.ws.send(ENCODERS[last.packet](last.quote, last.ltt))
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
        packets.append(ENCODERS[packet](quote, ltt))
        if packet == "quote" and session.trades % OI_EVERY == 0:
            packets.append(encode_oi(quote))
        ticks.append(SentTick(quote, ltt, packet, session.number))


# The bundled master slice's (exchange, segment letter) -> the feed's exchange segment.
_FEED_SEGMENT = {("NSE", "I"): "IDX_I", ("NSE", "E"): "NSE_EQ", ("NSE", "D"): "NSE_FNO"}


def simulated_instrument(row: dict[str, str], rng: random.Random) -> SimInstrument:
    """A row of Dhan's compact master (the bundled slice) as a simulated instrument, priced near the market."""
    exchange, seg, symbol = row["SEM_EXM_EXCH_ID"], row["SEM_SEGMENT"], row["SEM_TRADING_SYMBOL"]
    kind = row["SEM_OPTION_TYPE"] if row["SEM_OPTION_TYPE"] in ("CE", "PE") else row["SEM_INSTRUMENT_NAME"]
    kind = "FUT" if kind.startswith("FUT") else kind
    tick = float(row["SEM_TICK_SIZE"]) / (1 if seg == "I" else 100)  # paise, but rupees on index rows
    price = plausible_price(symbol.split("-")[0], kind, float(row["SEM_STRIKE_PRICE"] or 0), tick)
    return SimInstrument(
        _FEED_SEGMENT[exchange, seg],
        int(row["SEM_SMST_SECURITY_ID"]),
        prev_close=round(price, 2),
        tick_size=tick,
        lot=int(float(row["SEM_LOT_UNITS"])),
        rng=rng,
    )


def numbered_capture(ticks: int, rate: float | None, instruments: Sequence[SimInstrument]) -> list[CapturedFrame]:
    """A capture of `ticks` numbered Dhan full packets (a trade's volume is its number, 1, 2, ...),
    four to a frame, `rate` a second (None: all at once, for a flat-out replay). It opens, as Dhan
    does on a subscription, with each instrument's previous close (so ticks carry their change)."""
    ltt = int(time.time()) + wire.IST_OFFSET_SECONDS
    opening = b"".join(encode_prev_close(instrument) for instrument in instruments)
    frames, packets = [CapturedFrame(0.0, 0, opening)], []
    for n in range(1, ticks + 1):
        quote = instruments[n % len(instruments)].step()
        quote.volume = n
        packets.append(encode_full(quote, ltt + n // 5000))
        if len(packets) == 4 or n == ticks:
            frames.append(CapturedFrame(n / rate if rate else 0.0, 0, b"".join(packets)))
            packets = []
    return frames
