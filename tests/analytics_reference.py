"""Straightforward Python computations of what the analytics schema returns, for the tests to compare.

Written from docs/analytics.md's definitions, one tick at a time, without SQL's tricks: a tick's volume
increment is how far it lifts the day's highest cumulative volume; a candle's volume is the sum of
its ticks' increments; its VWAP is the rise of the exchange's cumulative turnover (ATP x cumulative
volume) over the rise of the cumulative volume since the last tick before the candle that day.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

IST = timedelta(hours=5, minutes=30)


@dataclass(frozen=True)
class RefTick:
    time: datetime
    receive_time: datetime
    ltp: float
    volume: int | None
    atp: float | None
    oi: int | None = None


def trading_day(t: datetime) -> date:
    return (t.astimezone(UTC) + IST).date()


def bucket(t: datetime, width: timedelta) -> datetime:
    """Buckets aligned to India midnight."""
    ist = t.astimezone(UTC) + IST
    w = int(width.total_seconds())
    secs = math.floor(ist.timestamp() / w) * w
    return datetime.fromtimestamp(secs, UTC) - IST


def increments(ticks: list[RefTick]) -> list[int | None]:
    """Each tick's volume increment, ticks in (time, receive_time) order."""
    high: dict[date, int] = {}
    out: list[int | None] = []
    for t in ticks:
        if t.volume is None:
            out.append(None)
            continue
        day = trading_day(t.time)
        before = high.get(day, 0)
        out.append(max(0, t.volume - before))
        high[day] = max(before, t.volume)
    return out


def candles(ticks: list[RefTick], width: timedelta) -> list[dict[str, object]]:
    ticks = sorted(ticks, key=lambda t: (t.time, t.receive_time))
    incs = increments(ticks)
    groups: dict[datetime, list[tuple[RefTick, int | None]]] = defaultdict(list)
    for t, inc in zip(ticks, incs, strict=True):
        groups[bucket(t.time, width)].append((t, inc))
    out = []
    last_turnover: dict[date, tuple[float, int]] = {}  # per day: (turnover, volume) at the last tick seen
    for start in sorted(groups):
        members = groups[start]
        day = trading_day(start)
        prev_t, prev_v = last_turnover.get(day, (0.0, 0))
        vwap = None
        traded = [(t.atp * t.volume, t.volume) for t, _ in members if t.atp is not None and t.volume is not None]
        if traded:
            end_t, end_v = traded[-1]
            if end_v - prev_v != 0:
                vwap = (end_t - prev_t) / (end_v - prev_v)
            last_turnover[day] = (end_t, end_v)
        vols = [inc for _, inc in members if inc is not None]
        ois = [t.oi for t, _ in members if t.oi is not None]
        out.append(
            {
                "time": start,
                "open": members[0][0].ltp,
                "high": max(t.ltp for t, _ in members),
                "low": min(t.ltp for t, _ in members),
                "close": members[-1][0].ltp,
                "volume": sum(vols) if vols else None,
                "vwap": vwap,
                "ticks": len(members),
                "oi_open": ois[0] if ois else None,
                "oi_close": ois[-1] if ois else None,
            }
        )
    return out


def csv_lines(rows: list[dict[str, object]]) -> list[str]:
    """The CSV `tickpipe query candles --format csv` prints, header first."""

    def cell(v: object) -> str:
        if v is None:
            return ""
        if isinstance(v, datetime):
            return v.astimezone(UTC).isoformat().replace("+00:00", "Z")
        return repr(v) if isinstance(v, float) else str(v)

    columns = ("time", "open", "high", "low", "close", "volume", "vwap", "ticks")
    return [",".join(columns)] + [",".join(cell(r[c]) for c in columns) for r in rows]


def profile(ticks: list[RefTick], day: date, bin_width: float) -> list[tuple[float, int, bool, bool]]:
    """(bin low, volume, is POC, in value area) per price bin of one day, by price."""
    ticks = sorted(ticks, key=lambda t: (t.time, t.receive_time))
    volume: dict[float, int] = defaultdict(int)
    for t, inc in zip(ticks, increments(ticks), strict=True):
        if inc is not None and trading_day(t.time) == day:
            step = Decimal(repr(bin_width))
            volume[float(Decimal(repr(t.ltp)) // step * step)] += inc
    lows = sorted(volume)
    vols = [volume[p] for p in lows]
    poc = max(range(len(lows)), key=lambda i: (vols[i], -i))
    lo = hi = poc
    area, total = vols[poc], sum(vols)
    while area < 0.7 * total and (lo > 0 or hi < len(lows) - 1):
        if lo > 0 and (hi >= len(lows) - 1 or vols[lo - 1] >= vols[hi + 1]):
            lo -= 1
            area += vols[lo]
        else:
            hi += 1
            area += vols[hi]
    return [(lows[i], vols[i], i == poc, lo <= i <= hi) for i in range(len(lows))]
