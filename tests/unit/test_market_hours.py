"""The watchdog's market hours: IST sessions, weekends, holidays from a file."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers import until
from tickpipe_brokers.market_hours import MarketHours, Schedule, load_holidays, run_on_schedule
from tickpipe_core import ConfigError
from tickpipe_core.india import IST

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


@pytest.mark.parametrize(
    ("ist", "segments", "open_"),
    [
        ("2026-11-23 09:10", {"NSE_FNO"}, False),  # F&O trades from 09:15
        ("2026-11-23 09:10", {"NSE_EQ"}, True),  # the equity pre-open sends packets from 09:00
        ("2026-11-23 09:10", {"NSE_FNO", "NSE_EQ"}, True),  # a connection arms when any of its segments is open
        ("2026-11-23 09:15", {"NFO"}, True),  # Kite's names too
        ("2026-11-23 16:30", {"CDS"}, True),  # currency to 17:00
        ("2026-11-23 20:00", {"MCX_COMM"}, True),
        ("2026-11-23 20:00", {"NSE_FNO"}, False),
    ],
)
def test_each_segment_has_its_own_window(ist: str, segments: set[str], open_: bool) -> None:
    when = datetime.fromisoformat(ist).replace(tzinfo=IST)
    assert MarketHours("nse").is_open(when, segments) is open_


def test_the_bundled_nse_calendar_has_the_late_holiday_and_is_the_default() -> None:
    holidays = load_holidays(None)
    assert {date(2026, 1, 15), date(2026, 1, 26), date(2026, 11, 24)} <= holidays


@pytest.mark.parametrize(
    ("now_ist", "start_ist", "end_ist"),
    [
        ("2026-11-23 10:00", "2026-11-23 08:55", "2026-11-23 15:35"),  # inside Monday's window
        ("2026-11-20 16:00", "2026-11-23 08:55", "2026-11-23 15:35"),  # Friday evening: Monday
        ("2026-11-23 16:00", "2026-11-25 08:55", "2026-11-25 15:35"),  # Tuesday 24th is a holiday
        ("2026-11-23 15:34", "2026-11-23 08:55", "2026-11-23 15:35"),  # five minutes after the close
    ],
)
def test_the_schedule_runs_from_0855_to_after_the_close_on_trading_days(
    now_ist: str, start_ist: str, end_ist: str
) -> None:
    schedule = Schedule(MarketHours("nse", load_holidays(None)))

    def ist(text: str) -> datetime:
        return datetime.fromisoformat(text).replace(tzinfo=IST)

    assert schedule.window(ist(now_ist)) == (ist(start_ist), ist(end_ist))
    assert Schedule(MarketHours("always")).window(ist(now_ist)) is None


def test_ingestion_on_a_schedule_runs_in_the_window_and_is_stopped_at_its_end() -> None:
    # The schedule's clock runs at the real pace, moved to a Monday (a trading day whatever today is).
    shift = timedelta(days=(7 - datetime.now(IST).weekday()) % 7)

    def clock() -> datetime:
        return datetime.now(IST) + shift

    now = clock()
    session = ((now + timedelta(seconds=0.3)).time(), (now + timedelta(seconds=0.8)).time())
    schedule = Schedule(MarketHours("nse", frozenset()), lead=timedelta(0), tail=timedelta(0), session=session)
    runs: list[tuple[datetime, datetime]] = []

    async def ingest(session_stop: asyncio.Event) -> None:
        started = clock()
        await session_stop.wait()  # ingestion runs until the schedule closes its window
        runs.append((started, clock()))

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(run_on_schedule(ingest, schedule, stop, clock))
        await until(lambda: len(runs) == 1, "one session run", timeout=10)
        stop.set()  # now waiting for tomorrow's window: the stop ends it at once
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    ((started, ended),) = runs
    assert started >= datetime.combine(now.date(), session[0], IST)
    assert ended >= datetime.combine(now.date(), session[1], IST)
