"""tickpipe gateway, the read side: REST (quotes, candles, lag, health), a live WebSocket fan-out, a page."""

from tickpipe_gateway.app import create_app

__all__ = ["create_app"]
