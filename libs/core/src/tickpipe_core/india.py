"""India's clock: IST is UTC+05:30 all year (no daylight saving)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

IST = timezone(timedelta(hours=5, minutes=30), "IST")


def india_today() -> date:
    """Today's date in India, which is what exchange sessions and expiries follow."""
    return datetime.now(UTC).astimezone(IST).date()


_IST_OFFSET_S = 19_800


def india_day(ts: datetime) -> int:
    """The India calendar day of an aware time, as a day number."""
    return int(ts.timestamp() + _IST_OFFSET_S) // 86_400


def india_day_bounds(day: int) -> tuple[datetime, datetime]:
    """When India day number `day` starts and the next one starts, as aware UTC times.

    A per-frame check is then two comparisons (`start <= t < end`), not a conversion.
    """
    start = datetime.fromtimestamp(day * 86_400 - _IST_OFFSET_S, UTC)
    return start, start + timedelta(days=1)
