"""Kite's settings: credentials, the ticker and its instruments, the instruments dump's URL."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from tickpipe_brokers.adapter import BrokerSettings, FeedUrl
from tickpipe_core import ConfigError
from tickpipe_core.settings import secret

KiteMode = Literal["ltp", "quote", "full"]


class KiteSettings(BrokerSettings):
    """Zerodha Kite Connect v3 ticker."""

    model_config = SettingsConfigDict(env_prefix="KITE_", env_file=".env", extra="ignore", frozen=True)

    api_key: str | None = Field(None, description="Kite Connect API key.")
    access_token: SecretStr | None = Field(None, description="Kite access token (or use _FILE).")
    access_token_file: Path | None = Field(None, description="File holding the access token.")
    feed_url: FeedUrl = Field("wss://ws.kite.trade", description="Ticker endpoint; point it at a simulator.")
    feed_mode: KiteMode = Field("full", description="Default mode: ltp, quote or full.")
    instruments: str = Field(
        "", description="Instrument tokens, comma separated, each optionally TOKEN:MODE (e.g. 408065,256265:ltp)."
    )
    master_url: str = Field(
        "https://api.kite.trade/instruments",
        validation_alias=AliasChoices("KITE_MASTER_URL", "INSTRUMENTS_KITE_URL"),
        description="The instruments dump (INSTRUMENTS_KITE_URL is read too).",
    )

    def credentials(self) -> tuple[str, SecretStr]:
        """The API key and access token, or a ConfigError naming what is missing."""
        if not self.api_key:
            raise ConfigError("KITE_API_KEY: required to connect to the Kite ticker")
        return self.api_key, secret("KITE_ACCESS_TOKEN", self.access_token, self.access_token_file)

    def instrument_list(self) -> list[tuple[int, KiteMode]]:
        """KITE_INSTRUMENTS parsed into (token, mode) pairs."""
        out: list[tuple[int, KiteMode]] = []
        for item in filter(None, (s.strip() for s in self.instruments.split(","))):
            token, _, mode = item.partition(":")
            mode = mode.lower() or self.feed_mode
            if not token.isdigit() or mode not in ("ltp", "quote", "full"):
                raise ConfigError(f"KITE_INSTRUMENTS: {item!r} is not TOKEN or TOKEN:ltp|quote|full")
            out.append((int(token), mode))  # type: ignore[arg-type]
        return out
