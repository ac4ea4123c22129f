"""What every broker decoder needs besides its layouts: rate-limited bad-packet reports, fast times."""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from datetime import UTC, datetime

from tickpipe_core import get_logger

log = get_logger("decode")

_NUMBERS = re.compile(r"\d+")
_LOG_FIRST_N = 20  # per kind, then every 1000th, so a flood of bad packets cannot flood the log


class BadPackets:
    """Counts bad packets by kind and logs them with their hex, rate-limited."""

    def __init__(self, source: str, counters: MutableMapping[str, int]) -> None:
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
    """A broker's time field -> aware UTC datetime, converting each second once (runs of ticks share
    it). `shift` is added first (Dhan sends IST wall-clock seconds dressed as epoch seconds); a field
    of 0 or less is no time at all (None)."""

    def __init__(self, shift: int = 0) -> None:
        self._shift = shift
        self._last: int | None = None  # only ever a time (> 0)
        self._ts: datetime | None = None

    def utc(self, seconds: int) -> datetime | None:
        if seconds != self._last:
            if seconds <= 0:
                return None
            self._last, self._ts = seconds, datetime.fromtimestamp(seconds + self._shift, UTC)
        return self._ts
