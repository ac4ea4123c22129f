"""The Dhan v2 feed: URLs, subscribe messages, sharding over connections, disconnect reasons."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import urlencode

from pydantic import SecretStr

from tickpipe_brokers.adapter import FeedParts
from tickpipe_brokers.dhan import wire
from tickpipe_brokers.dhan.parse import DhanDecoder
from tickpipe_brokers.dhan.settings import DhanFeedMode
from tickpipe_brokers.feed import Feed, FeedConnection, FrameHandler
from tickpipe_core import ConfigError, FeedAuthError, FeedError, get_logger, register_secret

log = get_logger("dhan.feed")

Instrument = tuple[str, int]  # (exchange segment name, security id)


def feed_url(base: str, client_id: str, token: SecretStr) -> str:
    """The connect URL; it carries the token, so it is only ever logged through redact_url."""
    query = urlencode({"version": "2", "token": token.get_secret_value(), "clientId": client_id, "authType": "2"})
    return f"{base}{'&' if '?' in base else '?'}{query}"


def subscribe_messages(
    mode: DhanFeedMode, instruments: Sequence[Instrument], *, unsubscribe: bool = False
) -> list[str]:
    """JSON requests for the instruments, at most 100 per message; segment and id are strings."""
    code = wire.REQUEST_CODES[mode][1 if unsubscribe else 0]
    out = []
    step = wire.MAX_INSTRUMENTS_PER_MESSAGE
    for i in range(0, len(instruments), step):
        chunk = instruments[i : i + step]
        out.append(
            json.dumps(
                {
                    "RequestCode": code,
                    "InstrumentCount": len(chunk),
                    "InstrumentList": [{"ExchangeSegment": seg, "SecurityId": str(sid)} for seg, sid in chunk],
                }
            )
        )
    return out


def shard(instruments: Sequence[Instrument]) -> list[list[Instrument]]:
    """Split instruments over connections, 5000 each, 5 connections at most."""
    unique = list(dict.fromkeys(instruments))
    limit = wire.MAX_INSTRUMENTS_PER_CONNECTION * wire.MAX_CONNECTIONS
    if len(unique) > limit:
        raise ConfigError(
            f"DHAN_INSTRUMENTS: {len(unique)} instruments requested; Dhan allows at most {limit} "
            f"({wire.MAX_CONNECTIONS} connections x {wire.MAX_INSTRUMENTS_PER_CONNECTION})"
        )
    for seg, _ in unique:
        if seg not in wire.SEGMENT_CODES:
            raise ConfigError(f"DHAN_INSTRUMENTS: unknown exchange segment {seg!r}")
    step = wire.MAX_INSTRUMENTS_PER_CONNECTION
    return [unique[i : i + step] for i in range(0, len(unique), step)]


class DhanFeed(Feed):
    """All connections of one Dhan feed, decoding into ticks handed to `sink`."""

    decoder: DhanDecoder

    def __init__(
        self,
        *,
        base_url: str,
        client_id: str,
        token: SecretStr,
        mode: DhanFeedMode,
        instruments: Sequence[Instrument],
        parts: FeedParts,
        rate_limit_backoff_s: float = 60.0,
        permanent_backoff_s: float = 300.0,
    ) -> None:
        """`rate_limit_backoff_s`: after 805 the broker wants fewer connections, not a quick retry.
        `permanent_backoff_s`: after a disconnect that says the subscription is wrong (804, 806, 811-814).
        """
        super().__init__(parts.recorder)
        register_secret(token.get_secret_value())
        self.decoder = DhanDecoder(parts.builder)
        self._sink = parts.sink
        self._rate_limit_backoff_s = rate_limit_backoff_s
        self._permanent_backoff_s = permanent_backoff_s
        self._rate_limited_until = 0.0
        url = feed_url(base_url, client_id, token)
        self.connections = [
            FeedConnection(
                name=f"dhan-{i}",
                url=url,
                subscribe_messages=lambda part=part: subscribe_messages(mode, part),  # type: ignore[misc]
                on_frame=self._make_handler(i, len(part)),
                watchdog=parts.watchdog.over(segment for segment, _ in part),
                min_backoff_after=self._min_backoff,
            )
            for i, part in enumerate(shard(instruments))
        ]

    def _min_backoff(self) -> float:
        return max(0.0, self._rate_limited_until - asyncio.get_running_loop().time())

    def _make_handler(self, index: int, subscribed: int) -> FrameHandler:
        async def on_frame(frame: bytes | str) -> None:
            now = self.received(index, frame)
            if isinstance(frame, str):
                self.note("text_frames", "dhan_text_frame", connection=index, text=frame[:500])
                return
            decoded = self.decoder.decode(frame, datetime.fromtimestamp(now, UTC))
            if decoded.ticks:
                self.connections[index].ticks += len(decoded.ticks)
                self._sink(decoded.ticks)
            if decoded.market_status:
                log.info("dhan_market_status", connection=index, status=decoded.market_status)
            if decoded.disconnect_code is not None:
                self._on_disconnect(index, subscribed, decoded.disconnect_code)

        return on_frame

    def _on_disconnect(self, index: int, subscribed: int, code: int) -> None:
        reason = wire.DISCONNECT_REASONS.get(code, "unknown reason")
        self.counters[f"disconnects.{code}"] += 1
        if code in wire.AUTH_DISCONNECT_CODES:
            raise FeedAuthError(f"Dhan disconnected with {code} ({reason}): fix the credentials and restart")
        detail = f"; this connection asked for {subscribed} instruments" if code == 804 else ""
        if code == 805:
            self._rate_limited_until = asyncio.get_running_loop().time() + self._rate_limit_backoff_s
        elif code in wire.PERMANENT_DISCONNECT_CODES:
            self._rate_limited_until = asyncio.get_running_loop().time() + self._permanent_backoff_s
            detail += f"; fix the subscription: retrying in {self._permanent_backoff_s:g} s"
        raise FeedError(f"Dhan disconnected with {code} ({reason}){detail}")
