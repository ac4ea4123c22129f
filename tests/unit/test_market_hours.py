"""The watchdog's market hours: IST sessions, weekends, holidays from a file."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from tickpipe_core import ConfigError
from tickpipe_ingestion.market_hours import MarketHours, load_holidays

DATA = Path(__file__).parent.parent / "data" / "calendar"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("when_utc", "market", "open_"),
    [
        ("2026-11-23 03:29:59", "nse", False),  # Monday 08:59:59 IST
        ("2026-11-23 03:30:00", "nse", True),  # 09:00 IST, pre-open
        ("2026-11-23 09:59:59", "nse", True),  # 15:29:59 IST
        ("2026-11-23 10:00:00", "nse", False),  # 15:30 IST
        ("2026-11-23 17:00:00", "mcx", True),  # 22:30 IST
        ("2026-11-23 18:25:00", "mcx", False),  # 23:55 IST
        ("2026-11-22 05:00:00", "nse", False),  # Sunday
        ("2026-11-22 05:00:00", "always", True),
    ],
)
def test_sessions_are_weekday_ist_hours(when_utc: str, market: str, open_: bool) -> None:
    assert MarketHours(market).is_open(utc(when_utc)) is open_  # type: ignore[arg-type]


def test_holidays_from_the_real_2026_nse_list_close_the_market() -> None:
    holidays = load_holidays(DATA / "nse_holidays_2026.dushyantjangidMS.csv")
    assert len(holidays) == 15 and date(2026, 11, 24) in holidays
    hours = MarketHours("nse", holidays)
    assert not hours.is_open(utc("2026-11-24 05:00:00"))  # Tuesday, a holiday
    assert hours.is_open(utc("2026-11-25 05:00:00"))


def test_a_late_holiday_is_one_line_added_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "holidays.txt"
    path.write_text("# NSE 2026, plus the municipal elections holiday announced late\n2026-01-15\n\n2026-01-26\n")
    assert load_holidays(path) == {date(2026, 1, 15), date(2026, 1, 26)}


def test_a_bad_holiday_line_names_the_file_setting_and_line(tmp_path: Path) -> None:
    path = tmp_path / "holidays.txt"
    path.write_text("2026-01-26\n26-Jan-2026\n")
    with pytest.raises(ConfigError, match=r"INGEST_HOLIDAYS_FILE: line 2: '26-Jan-2026'"):
        load_holidays(path)
