"""Zerodha Kite v3 behind the broker interface: big-endian binary ticker, one token per listing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tickpipe_brokers.adapter import BrokerAdapter, FeedParts, InstrumentIds, Selected
from tickpipe_brokers.kite.master import master_format
from tickpipe_brokers.kite.settings import KiteSettings
from tickpipe_core import ConfigError

if TYPE_CHECKING:
    from tickpipe_brokers.kite.feed import KiteFeed
    from tickpipe_brokers.quote import Listing


class KiteAdapter(BrokerAdapter[KiteSettings]):
    name = "kite"
    settings_class = KiteSettings
    master_format = staticmethod(master_format)
    ids = InstrumentIds(
        key=("kite_instrument_token",),
        stage_key=("broker_id",),
        own={
            "kite_instrument_token": "broker_id",
            "kite_exchange_token": "kite_exchange_token",
            "kite_segment": "broker_segment",
            "kite_symbol": "trading_symbol",
        },
        listed="kite_listed",
    )

    def feed(self, settings: KiteSettings, selected: Sequence[Selected] | None, parts: FeedParts) -> KiteFeed:
        from tickpipe_brokers.kite.feed import KiteFeed

        api_key, token = settings.credentials()
        if selected is None:
            subscriptions = settings.instrument_list()
        else:
            subscriptions = [(s.kite_instrument_token, settings.feed_mode) for s in selected if s.kite_instrument_token]
            self.not_listed([s for s in selected if not s.kite_instrument_token])
        if not subscriptions:
            raise ConfigError("KITE_INSTRUMENTS: no instruments to subscribe (or none of the watchlist is on Kite)")
        return KiteFeed(
            base_url=settings.feed_url,
            api_key=api_key,
            token=token,
            subscriptions=subscriptions,
            parts=parts,
        )

    def simulator_settings(self, url: str, market: Sequence[Listing]) -> dict[str, str]:
        from tickpipe_brokers.kite.encode import kite_token

        return {
            "feed_url": url,
            "api_key": "simulator",
            "access_token": "simulator-token",
            "instruments": ",".join(str(kite_token(i)) for i in market),
        }
