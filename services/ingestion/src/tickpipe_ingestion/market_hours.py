"""When an Indian market is open, so the no-data watchdog only fires when silence means trouble.

Outside trading hours a quiet feed is normal; reconnecting it every 30 s all night would only
annoy the broker. Holidays come from a file (one ISO date per line) so that a holiday the
exchange adds mid-year (NSE added 2026-01-15 late) needs no release.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Literal

from tickpipe_core import ConfigError
from tickpipe_core.india import IST

MarketName = Literal["nse", "mcx", "always"]

# Pre-open starts at 09:00 on NSE/BSE; packets flow from then. MCX runs 09:00-23:55 at the latest
# (23:30 outside US daylight-saving months: taking the later close only delays one reconnect).
_SESSIONS: dict[str, tuple[time, time]] = {"nse": (time(9, 0), time(15, 30)), "mcx": (time(9, 0), time(23, 55))}


@dataclass(frozen=True)
class MarketHours:
    """A weekday trading session in IST, minus holidays."""

    market: MarketName = "nse"
    holidays: frozenset[date] = field(default_factory=frozenset)

    def is_open(self, now: datetime | None = None) -> bool:
        if self.market == "always":
            return True
        local = (now or datetime.now(UTC)).astimezone(IST)
        if local.weekday() >= 5 or local.date() in self.holidays:
            return False
        start, end = _SESSIONS[self.market]
        return start <= local.time() < end


def load_holidays(path: Path | None) -> frozenset[date]:
    """Dates from a file with one ISO date (YYYY-MM-DD) per line; blank lines and # comments ignored."""
    if path is None:
        return frozenset()
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise ConfigError(f"INGEST_HOLIDAYS_FILE: cannot read {path}: {e.strerror}") from None
    out = set()
    for n, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip().split(",", 1)[0]
        if not text:
            continue
        try:
            out.add(date.fromisoformat(text))
        except ValueError:
            raise ConfigError(f"INGEST_HOLIDAYS_FILE: line {n}: {text!r} is not a YYYY-MM-DD date") from None
    return frozenset(out)
