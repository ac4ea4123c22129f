"""The Kite Connect v3 ticker: URL, subscribe and mode messages, sharding, text frames."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from itertools import groupby
from urllib.parse import urlencode

from pydantic import SecretStr

from tickpipe_brokers.adapter import FeedParts
from tickpipe_brokers.feed import Feed, FeedConnection, FrameHandler
from tickpipe_brokers.kite import wire
from tickpipe_brokers.kite.parse import KiteDecoder
from tickpipe_brokers.kite.settings import KiteMode
from tickpipe_core import ConfigError, get_logger, register_secret

log = get_logger("kite.feed")

Subscription = tuple[int, KiteMode]  # (instrument token, mode)
OrderSink = Callable[[bytes], None]


def feed_url(base: str, api_key: str, token: SecretStr) -> str:
    """The connect URL; it carries the token, so it is only ever logged through redact_url."""
    query = urlencode({"api_key": api_key, "access_token": token.get_secret_value()})
    return f"{base}{'&' if '?' in base else '?'}{query}"


def subscribe_messages(subscriptions: Sequence[Subscription]) -> list[str]:
    """Subscribe to every token, then set each mode for its tokens (Kite subscribes in quote mode)."""
    out = [json.dumps({"a": "subscribe", "v": [token for token, _ in subscriptions]})]
    by_mode = sorted(subscriptions, key=lambda s: wire.MODES.index(s[1]))
    for mode, group in groupby(by_mode, key=lambda s: s[1]):
        out.append(json.dumps({"a": "mode", "v": [mode, [token for token, _ in group]]}))
    return out


def shard(subscriptions: Sequence[Subscription]) -> list[list[Subscription]]:
    """Split over connections, 3000 tokens each, 3 connections at most; a token's last mode wins."""
    unique = list(dict(subscriptions).items())
    limit = wire.MAX_INSTRUMENTS_PER_CONNECTION * wire.MAX_CONNECTIONS
    if len(unique) > limit:
        raise ConfigError(
            f"KITE_INSTRUMENTS: {len(unique)} instruments requested; Kite allows at most {limit} "
            f"({wire.MAX_CONNECTIONS} connections x {wire.MAX_INSTRUMENTS_PER_CONNECTION})"
        )
    step = wire.MAX_INSTRUMENTS_PER_CONNECTION
    return [unique[i : i + step] for i in range(0, len(unique), step)]


_TEXT_KINDS = frozenset({"error", "order", "message"})


class KiteFeed(Feed):
    """All connections of one Kite ticker, decoding into ticks handed to `sink`.

    Text frames: `error` is logged and counted, `order` (a postback of the account's orders) goes
    to `orders` as raw JSON, `message` is logged.
    """

    decoder: KiteDecoder

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        token: SecretStr,
        subscriptions: Sequence[Subscription],
        parts: FeedParts,
    ) -> None:
        super().__init__(parts.recorder)
        register_secret(token.get_secret_value())
        self.decoder = KiteDecoder(parts.builder)
        self._sink = parts.sink
        self._orders = parts.orders
        url = feed_url(base_url, api_key, token)
        self.connections = [
            FeedConnection(
                name=f"kite-{i}",
                url=url,
                subscribe_messages=lambda part=part: subscribe_messages(part),  # type: ignore[misc]
                on_frame=self._make_handler(i),
                watchdog=parts.watchdog.over(wire.segment_name(token) for token, _ in part),
            )
            for i, part in enumerate(shard(subscriptions))
        ]

    def _make_handler(self, index: int) -> FrameHandler:
        async def on_frame(frame: bytes | str) -> None:
            now = self.received(index, frame)
            if isinstance(frame, str):
                self._on_text(index, frame)
                return
            ticks = self.decoder.decode(frame, datetime.fromtimestamp(now, UTC))
            if ticks:
                self.connections[index].ticks += len(ticks)
                self._sink(ticks)

        return on_frame

    def _on_text(self, index: int, text: str) -> None:
        try:
            message = json.loads(text)
            kind = message["type"]
        except (ValueError, KeyError, TypeError, RecursionError):
            self.note("text.unparsed", "kite_text_unparsed", "warning", connection=index, text=text[:500])
            return
        counted = f"text.{kind if kind in _TEXT_KINDS else 'other'}"  # bounded: never a key per bad frame
        if kind == "order":
            self.counters[counted] += 1
            if self._orders is not None:
                self._orders(text.encode())
        elif kind == "error":
            self.note(counted, "kite_error", "error", connection=index, data=str(message.get("data"))[:500])
        else:
            self.note(
                counted, "kite_message", connection=index, type=str(kind)[:40], data=str(message.get("data"))[:500]
            )
