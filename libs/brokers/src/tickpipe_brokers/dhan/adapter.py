"""Dhan v2 behind the broker interface: little-endian binary feed, (segment, security id) listings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tickpipe_brokers.adapter import BrokerAdapter, FeedParts, InstrumentIds, Selected
from tickpipe_brokers.dhan.master import master_format
from tickpipe_brokers.dhan.settings import DhanSettings
from tickpipe_core import ConfigError

if TYPE_CHECKING:
    from tickpipe_brokers.dhan.feed import DhanFeed
    from tickpipe_brokers.quote import Listing


class DhanAdapter(BrokerAdapter[DhanSettings]):
    name = "dhan"
    settings_class = DhanSettings
    master_format = staticmethod(master_format)
    ids = InstrumentIds(
        key=("dhan_segment", "dhan_security_id"),
        stage_key=("broker_segment", "broker_id"),
        own={"dhan_segment": "broker_segment", "dhan_security_id": "broker_id", "dhan_symbol": "trading_symbol"},
        listed="dhan_listed",
    )

    def feed(self, settings: DhanSettings, selected: Sequence[Selected] | None, parts: FeedParts) -> DhanFeed:
        from tickpipe_brokers.dhan.feed import DhanFeed

        client_id, token = settings.credentials()
        if selected is None:
            instruments = settings.instrument_list()
        else:
            instruments = [
                (s.dhan_segment, s.dhan_security_id) for s in selected if s.dhan_segment and s.dhan_security_id
            ]
            self.not_listed([s for s in selected if not s.dhan_security_id])
        if not instruments:
            raise ConfigError("DHAN_INSTRUMENTS: no instruments to subscribe (or none of the watchlist is on Dhan)")
        return DhanFeed(
            base_url=settings.feed_url,
            client_id=client_id,
            token=token,
            mode=settings.feed_mode,
            instruments=instruments,
            parts=parts,
        )

    def simulator_settings(self, url: str, market: Sequence[Listing]) -> dict[str, str]:
        return {
            "feed_url": url,
            "client_id": "simulator",
            "access_token": "simulator-token",
            "instruments": ",".join(f"{i.segment}:{i.security_id}" for i in market),
        }
