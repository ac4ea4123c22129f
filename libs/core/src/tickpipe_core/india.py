"""India's clock: IST is UTC+05:30 all year (no daylight saving)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

IST = timezone(timedelta(hours=5, minutes=30), "IST")


def india_today() -> date:
    """Today's date in India, which is what exchange sessions and expiries follow."""
    return datetime.now(UTC).astimezone(IST).date()
