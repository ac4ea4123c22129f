"""Dhan's settings: credentials, the feed and its instruments, the instrument master's URL."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from tickpipe_brokers.adapter import BrokerSettings, FeedUrl
from tickpipe_core import ConfigError
from tickpipe_core.settings import secret

DhanFeedMode = Literal["ticker", "quote", "full"]


class DhanSettings(BrokerSettings):
    """Dhan v2 live market feed."""

    model_config = SettingsConfigDict(env_prefix="DHAN_", env_file=".env", extra="ignore", frozen=True)

    client_id: str | None = Field(None, description="Dhan client id.")
    access_token: SecretStr | None = Field(None, description="Dhan access token (or use _FILE).")
    access_token_file: Path | None = Field(None, description="File holding the access token.")
    feed_url: FeedUrl = Field("wss://api-feed.dhan.co", description="Feed endpoint; point it at a simulator.")
    feed_mode: DhanFeedMode = Field("full", description="Subscription mode: ticker, quote or full.")
    instruments: str = Field(
        "",
        description="Instruments to subscribe, comma separated SEGMENT:SECURITY_ID (e.g. NSE_FNO:49229,IDX_I:13).",
    )
    master_url: str = Field(
        "https://images.dhan.co/api-data/api-scrip-master.csv",
        validation_alias=AliasChoices("DHAN_MASTER_URL", "INSTRUMENTS_DHAN_URL"),
        description="The instrument master, compact or detailed (INSTRUMENTS_DHAN_URL is read too).",
    )

    def credentials(self) -> tuple[str, SecretStr]:
        """The client id and token, or a ConfigError naming what is missing."""
        if not self.client_id:
            raise ConfigError("DHAN_CLIENT_ID: required to connect to the Dhan feed")
        return self.client_id, secret("DHAN_ACCESS_TOKEN", self.access_token, self.access_token_file)

    def instrument_list(self) -> list[tuple[str, int]]:
        """DHAN_INSTRUMENTS parsed into (segment name, security id) pairs."""
        out: list[tuple[str, int]] = []
        for item in filter(None, (s.strip() for s in self.instruments.split(","))):
            segment, _, sid = item.partition(":")
            if not sid.isdigit() or not segment:
                raise ConfigError(f"DHAN_INSTRUMENTS: {item!r} is not SEGMENT:SECURITY_ID")
            out.append((segment.upper(), int(sid)))
        return out
