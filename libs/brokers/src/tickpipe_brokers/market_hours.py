"""When an Indian market is open: for the no-data watchdog, per segment, and for the ingest schedule.

Outside trading hours a quiet feed is normal; reconnecting it every 30 s all night would only
annoy the broker. Each segment has its own window (F&O trades from 09:15 IST; the equity pre-open
sends packets from 09:00), so a connection's watchdog arms when any of its segments is open.
Holidays come from a bundled NSE calendar (calendars/nse.txt, with its provenance) or a file of
your own (INGEST_HOLIDAYS_FILE, one ISO date per line), so a holiday the exchange adds mid-year
(NSE added 2026-01-15 late) needs no release.

The schedule (`tickpipe ingest --schedule nse`) connects shortly before the session (08:55 IST) and
disconnects after the close, skipping weekends and holidays, so a real account can be left running.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Literal

from tickpipe_core import ConfigError, get_logger
from tickpipe_core.india import IST

log = get_logger("schedule")

MarketName = Literal["nse", "mcx", "always"]

# A market's whole day, IST: NSE/BSE from the equity pre-open (09:00) to the close (15:30); MCX to
# 23:55 at the latest (23:30 outside US daylight-saving months: the later close only delays a reconnect).
_SESSIONS: dict[str, tuple[time, time]] = {"nse": (time(9, 0), time(15, 30)), "mcx": (time(9, 0), time(23, 55))}

# Each segment's window, IST (Dhan's and Kite's segment names). Unknown segments use the market's.
_EQUITY, _DERIVATIVES = (time(9, 0), time(15, 30)), (time(9, 15), time(15, 30))
_CURRENCY, _COMMODITY = (time(9, 0), time(17, 0)), (time(9, 0), time(23, 55))
SEGMENT_HOURS: dict[str, tuple[time, time]] = {
    "NSE_EQ": _EQUITY, "BSE_EQ": _EQUITY, "NSE": _EQUITY, "BSE": _EQUITY,
    "NSE_FNO": _DERIVATIVES, "BSE_FNO": _DERIVATIVES, "NFO": _DERIVATIVES, "BFO": _DERIVATIVES,
    "IDX_I": _DERIVATIVES, "INDICES": _DERIVATIVES,
    "NSE_CURRENCY": _CURRENCY, "BSE_CURRENCY": _CURRENCY, "CDS": _CURRENCY, "BCD": _CURRENCY,
    "MCX_COMM": _COMMODITY, "MCX": _COMMODITY, "MCXSX": _CURRENCY, "NCO": _COMMODITY,
}  # fmt: skip

_BUNDLED_CALENDAR = "nse.txt"


@dataclass(frozen=True)
class MarketHours:
    """Weekday trading sessions in IST, minus holidays."""

    market: MarketName = "nse"
    holidays: frozenset[date] = field(default_factory=frozenset)

    def is_open(self, now: datetime | None = None, segments: Iterable[str] = ()) -> bool:
        """Open now: the market's session, or with `segments`, any of theirs."""
        if self.market == "always":
            return True
        local = (now or datetime.now(UTC)).astimezone(IST)
        if local.weekday() >= 5 or local.date() in self.holidays:
            return False
        windows = [SEGMENT_HOURS.get(s, _SESSIONS[self.market]) for s in segments] or [_SESSIONS[self.market]]
        return any(start <= local.time() < end for start, end in windows)

    def trading_day(self, day: date) -> bool:
        return day.weekday() < 5 and day not in self.holidays


def load_holidays(path: Path | None) -> frozenset[date]:
    """Dates from a file with one ISO date (YYYY-MM-DD) per line (blank lines and # comments ignored);
    without a file, the bundled NSE calendar."""
    try:
        if path is None:
            lines = (Path(__file__).parent / "calendars" / _BUNDLED_CALENDAR).read_text()
        else:
            lines = path.read_text()
    except OSError as e:
        raise ConfigError(f"INGEST_HOLIDAYS_FILE: cannot read {path}: {e.strerror}") from None
    out = set()
    for n, line in enumerate(lines.splitlines(), 1):
        text = line.split("#", 1)[0].strip().split(",", 1)[0]
        if not text:
            continue
        try:
            out.add(date.fromisoformat(text))
        except ValueError:
            raise ConfigError(f"INGEST_HOLIDAYS_FILE: line {n}: {text!r} is not a YYYY-MM-DD date") from None
    return frozenset(out)


@dataclass(frozen=True)
class Schedule:
    """When ingestion runs: from `lead` before a trading day's session to `tail` after its close."""

    hours: MarketHours
    lead: timedelta = timedelta(minutes=5)
    tail: timedelta = timedelta(minutes=5)
    session: tuple[time, time] | None = None
    """The day's session, IST (default: the market's)."""

    def window(self, now: datetime) -> tuple[datetime, datetime] | None:
        """The window `now` is in, or the next one; None when ingestion runs at all times."""
        if self.hours.market == "always":
            return None
        start_t, end_t = self.session or _SESSIONS[self.hours.market]
        day = now.astimezone(IST).date()
        for _ in range(400):
            if self.hours.trading_day(day):
                start = datetime.combine(day, start_t, IST) - self.lead
                end = datetime.combine(day, end_t, IST) + self.tail
                if now < end:
                    return start, end
            day += timedelta(days=1)
        raise ConfigError("the schedule finds no trading day in the next 400 days: check INGEST_HOLIDAYS_FILE")


async def run_on_schedule(
    run: Callable[[asyncio.Event], Awaitable[None]],
    schedule: Schedule,
    stop: asyncio.Event,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """Run `run(session_stop)` in each of the schedule's windows until `stop`; idle (connected to nothing) between."""
    while not stop.is_set():
        window = schedule.window(clock())
        if window is None:
            await run(stop)
            return
        start, end = window
        wait = (start - clock()).total_seconds()
        if wait > 0:
            log.info("schedule_waiting", opens_at=start.astimezone(IST).isoformat(), seconds=round(wait))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
            continue  # the window is re-read: a stop ends the loop, a clock jump is absorbed
        session_stop = asyncio.Event()
        log.info("schedule_session", until=end.astimezone(IST).isoformat())
        closer = asyncio.create_task(_set_at(session_stop, end, stop, clock))
        try:
            await run(session_stop)
        finally:
            closer.cancel()
        log.info("schedule_session_ended", market=schedule.hours.market)


async def _set_at(event: asyncio.Event, at: datetime, stop: asyncio.Event, clock: Callable[[], datetime]) -> None:
    """Set `event` at `at`, or as soon as `stop` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), max(0.0, (at - clock()).total_seconds()))
    event.set()
