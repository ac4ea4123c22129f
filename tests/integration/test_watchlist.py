"""Watchlists resolved against real NIFTY instruments (a slice of Dhan's Feb-2026 master)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from tickpipe_core import ConfigError
from tickpipe_instruments import open_master, parse_master, sync_instruments
from tickpipe_instruments.watchlist import OptionsRule, Watchlist, load_watchlist, resolve

MASTER = Path(__file__).parent.parent / "data" / "dhan" / "nifty-derivatives-master-2026-02.csv"
TRADING_DAY = date(2026, 2, 9)  # a Monday the master was current for


@pytest.fixture
def nifty_db(database_url: str) -> str:
    with MASTER.open("rb") as raw, open_master(raw) as text:
        sync_instruments(database_url, parse_master("dhan", text))
    return database_url


def test_futures_current_and_next_expiry(nifty_db: str) -> None:
    selected = resolve(nifty_db, Watchlist(futures=[{"underlying": "NIFTY", "expiries": 2}]), TRADING_DAY)
    assert [(s.trading_symbol, s.expiry, s.dhan_segment, s.dhan_security_id) for s in selected] == [
        ("NIFTY-Feb2026-FUT", date(2026, 2, 24), "NSE_FNO", 59182),
        ("NIFTY-Mar2026-FUT", date(2026, 3, 30), "NSE_FNO", 51714),
    ]


def test_options_nearest_expiry_atm_plus_minus_ten_strikes_from_a_given_spot(nifty_db: str) -> None:
    rule = OptionsRule(underlying="NIFTY", expiry=1, strikes=10, spot=25012.5)
    selected = resolve(nifty_db, Watchlist(options=[rule]), TRADING_DAY)
    strikes = sorted({s.strike for s in selected if s.strike is not None})
    assert strikes == [Decimal(24500 + 50 * i) for i in range(21)]  # ATM 25000 (nearest to 25012.5) +-10
    assert len(selected) == 42 and {s.option_type for s in selected} == {"CE", "PE"}
    assert {s.expiry for s in selected} == {date(2026, 2, 10)}


def test_atm_comes_from_the_latest_stored_price_when_no_spot_is_given(nifty_db: str) -> None:
    with psycopg.connect(nifty_db) as conn:
        conn.execute(
            "insert into latest_quotes (source, segment, security_id, instrument_id, time, receive_time, tick_id, ltp)"
            " select 'dhan', 'IDX_I', 13, instrument_id, now(), now(), gen_random_uuid(), 24212.3"
            " from instruments where dhan_segment = 'IDX_I' and dhan_security_id = 13"
        )
    rule = OptionsRule(underlying="NIFTY", expiry=2, strikes=1)
    selected = resolve(nifty_db, Watchlist(options=[rule]), TRADING_DAY)
    assert sorted({s.strike for s in selected if s.strike is not None}) == [
        Decimal(24150),
        Decimal(24200),
        Decimal(24250),
    ]
    assert {s.expiry for s in selected} == {date(2026, 2, 17)}


def test_without_spot_or_stored_price_the_error_says_what_to_do(nifty_db: str) -> None:
    with pytest.raises(ConfigError, match="no stored price to find the ATM strike; set spot"):
        resolve(nifty_db, Watchlist(options=[OptionsRule(underlying="NIFTY")]), TRADING_DAY)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        (
            "watch.toml",
            'symbols = ["NSE:INFY", "NSE:NIFTY"]\n[[futures]]\nunderlying = "NIFTY"\n'
            '[[options]]\nunderlying = "NIFTY"\nstrikes = 2\nspot = 25000\n',
        ),
        (
            "watch.yaml",
            "symbols: [NSE:INFY, NSE:NIFTY]\nfutures:\n  - underlying: NIFTY\n"
            "options:\n  - {underlying: NIFTY, strikes: 2, spot: 25000}\n",
        ),
    ],
)
def test_toml_and_yaml_watchlists_resolve_the_same(nifty_db: str, tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    selected = resolve(nifty_db, load_watchlist(path), TRADING_DAY)
    assert [s.trading_symbol for s in selected[:3]] == ["INFY", "NIFTY", "NIFTY-Feb2026-FUT"]
    assert len(selected) == 3 + 10


def test_a_bad_watchlist_names_the_file_and_the_field(tmp_path: Path) -> None:
    path = tmp_path / "watch.toml"
    path.write_text('[[options]]\nunderlying = "NIFTY"\nstrikes = -1\n')
    with pytest.raises(ConfigError, match=r"watch.toml: options.0.strikes: Input should be greater than or equal"):
        load_watchlist(path)


def test_an_unknown_symbol_is_an_error_not_an_empty_subscription(nifty_db: str) -> None:
    with pytest.raises(ConfigError, match="'NSE:NOSUCH': no active instrument"):
        resolve(nifty_db, Watchlist(symbols=["NSE:NOSUCH"]), TRADING_DAY)


def test_expired_contracts_are_never_selected(nifty_db: str) -> None:
    selected = resolve(nifty_db, Watchlist(futures=[{"underlying": "NIFTY", "expiries": 5}]), date(2026, 3, 1))
    assert [s.trading_symbol for s in selected] == ["NIFTY-Mar2026-FUT", "NIFTY-Apr2026-FUT"]
