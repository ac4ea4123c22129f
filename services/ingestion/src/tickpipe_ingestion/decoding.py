"""What every broker decoder needs besides its layouts: rate-limited bad-packet reports, fast times."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime

from tickpipe_core import get_logger

log = get_logger("decode")

_NUMBERS = re.compile(r"\d+")
_LOG_FIRST_N = 20  # per kind, then every 1000th, so a flood of bad packets cannot flood the log


class BadPackets:
    """Counts bad packets by kind and logs them with their hex, rate-limited."""

    def __init__(self, source: str, counters: Counter[str]) -> None:
        self.source = source
        self.counters = counters

    def report(self, reason: str, data: bytes, offset: int) -> None:
        # The kind is the reason without its numbers, so a stream of odd lengths or codes makes one
        # counter and one log quota, not one per value.
        kind = _NUMBERS.sub("N", reason.split(":")[0].split(" needs ")[0])
        self.counters["bad_packets"] += 1
        self.counters[f"bad_packets.{kind}"] += 1
        n = self.counters[f"bad_packets.{kind}"]
        if n <= _LOG_FIRST_N or n % 1000 == 0:
            log.warning(f"{self.source}_bad_packet", reason=reason, offset=offset, hex=data[:256].hex(), seen=n)


class EpochSeconds:
    """Epoch seconds -> aware UTC datetime, converting each second once (runs of ticks share it)."""

    def __init__(self) -> None:
        self._last, self._ts = -1, datetime.fromtimestamp(0, UTC)

    def utc(self, seconds: int) -> datetime:
        if seconds != self._last:
            self._last, self._ts = seconds, datetime.fromtimestamp(seconds, UTC)
        return self._ts
