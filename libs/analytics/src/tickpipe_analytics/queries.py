"""Read the analytics schema for people who would rather not write SQL: `tickpipe query ...`.

Every function here is one query against a documented relation or function of `analytics`
(docs/analytics.md); nothing is computed in Python that the database does not also give to SQL users.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from tickpipe_core import ConfigError

LEVEL_OF_INTERVAL = {"1s": "1s", "1m": "1m", "5m": "5m", "15m": "15m", "1h": "1h", "1d": "1d"}
_INTERVAL = re.compile(r"^(\d+)\s*(s|m|h|d)$")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}

MAX_INTERVAL = timedelta(days=366)  # a candle wider than a year is no candle
CANDLE_COLUMNS = ("time", "open", "high", "low", "close", "volume", "vwap", "ticks")


@dataclass(frozen=True)
class Instrument:
    instrument_id: int
    trading_symbol: str
    tick_size: float | None


def parse_interval(text: str) -> timedelta:
    """'1m', '5m', '2h', '90s', '1d' -> a timedelta; anything else is a ConfigError naming it."""
    m = _INTERVAL.match(text.strip())
    if not m or int(m[1]) == 0:
        raise ConfigError(f"--interval {text!r}: give a number and a unit, e.g. 1s, 1m, 15m, 1h, 1d")
    try:
        width = timedelta(**{_UNIT[m[2]]: int(m[1])})
    except OverflowError:
        width = MAX_INTERVAL * 2
    if width > MAX_INTERVAL:
        raise ConfigError(f"--interval {text!r}: at most {MAX_INTERVAL.days} days")
    return width


def match_instruments(conn: psycopg.Connection[Any], names: Iterable[str]) -> dict[str, list[Instrument]]:
    """What each name stands for, in one query: an instrument id, or a trading symbol of either broker.

    Each name maps to every instrument it matches, active ones first; an unknown name to none.
    """
    wanted = list(dict.fromkeys(n.strip() for n in names if n.strip()))
    ids = [int(n) for n in wanted if n.isdigit()]
    symbols = [n for n in wanted if not n.isdigit()]
    rows = conn.execute(
        "select instrument_id, trading_symbol, tick_size::float8, dhan_symbol, kite_symbol from instruments"
        " where instrument_id = any(%s) or %s && array[trading_symbol, dhan_symbol, kite_symbol]"
        " order by active desc, instrument_id",
        (ids, symbols),
    ).fetchall()
    matches: dict[str, list[Instrument]] = {n: [] for n in wanted}
    for iid, trading, tick_size, dhan, kite in rows:
        instrument = Instrument(int(iid), str(trading), tick_size)
        for name in {str(iid), trading, dhan, kite} & matches.keys():
            matches[name].append(instrument)
    return matches


def resolve_instrument(conn: psycopg.Connection[Any], text: str) -> Instrument:
    """An instrument id, or a trading symbol of either broker; an unknown or ambiguous one is a ConfigError."""
    found = match_instruments(conn, [text]).get(text.strip(), [])
    if not found:
        raise ConfigError(f"no instrument {text!r} (give an instrument id or a trading symbol of either broker)")
    if len(found) > 1:
        ids = ", ".join(f"{i.instrument_id} ({i.trading_symbol})" for i in found[:10])
        raise ConfigError(f"{text!r} names {len(found)} instruments: {ids}; give the instrument id")
    return found[0]


def default_window(conn: psycopg.Connection[Any], instrument_id: int) -> tuple[datetime, datetime]:
    """The trading day of the instrument's newest tick (India time), to now."""
    row = conn.execute(
        "select analytics.trading_day(max(time))::timestamp at time zone 'Asia/Kolkata', now()"
        " from ticks where instrument_id = %s",
        (instrument_id,),
    ).fetchone()
    if row is None or row[0] is None:
        raise ConfigError(f"instrument {instrument_id} has no ticks yet")
    return row[0], row[1]


def candles(
    conn: psycopg.Connection[Any], instrument_id: int, interval: str, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Candles from `analytics.candles_<level>` for the fixed levels, else `analytics.candles(...)`."""
    level = LEVEL_OF_INTERVAL.get(interval)
    with conn.cursor(row_factory=dict_row) as cur:
        if level is not None:
            cur.execute(
                sql.SQL(
                    "select time, open, high, low, close, volume, vwap, ticks, oi_open, oi_close"
                    " from analytics.{} where instrument_id = %s and time >= time_bucket(%s::interval, %s::timestamptz,"
                    " 'Asia/Kolkata') and time < %s"
                    " and trading_day between analytics.trading_day(%s) and analytics.trading_day(%s) order by time"
                ).format(sql.Identifier(f"candles_{level}")),
                (instrument_id, parse_interval(interval), start, end, start, end),
            )
        else:
            cur.execute(
                "select time, open, high, low, close, volume, vwap, ticks, oi_open, oi_close"
                " from analytics.candles(%s, %s, %s, %s)",
                (instrument_id, parse_interval(interval), start, end),
            )
        return cur.fetchall()


def profile(
    conn: psycopg.Connection[Any], instrument_id: int, day: date, bin_width: float | None
) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("select * from analytics.volume_profile(%s, %s, %s)", (instrument_id, day, bin_width))
        return cur.fetchall()


def chain(conn: psycopg.Connection[Any], underlying: str, expiry: date | None) -> tuple[date, list[dict[str, Any]]]:
    """The option chain of `underlying` at `expiry` (default: the nearest expiry from today, India time)."""
    if expiry is None:
        row = conn.execute(
            "select min(expiry) from instruments where underlying = %s and option_type in ('CE', 'PE')"
            " and expiry >= analytics.trading_day(now())",
            (underlying,),
        ).fetchone()
        if row is None or row[0] is None:
            row = conn.execute(
                "select max(expiry) from instruments where underlying = %s and option_type in ('CE', 'PE')",
                (underlying,),
            ).fetchone()
        if row is None or row[0] is None:
            raise ConfigError(f"no options of {underlying!r} in the instruments (sync the masters first)")
        expiry = row[0]
    assert expiry is not None
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("select * from analytics.option_chain(%s, %s)", (underlying, expiry))
        return expiry, cur.fetchall()


def breadth(conn: psycopg.Connection[Any], instrument_ids: list[int]) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("select * from analytics.breadth(%s)", (instrument_ids,))
        row = cur.fetchone()
    assert row is not None
    return row


# -- the read side's queries (`tickpipe serve`) ------------------------------------------------------

_QUOTE_COLUMNS = (
    "select i.instrument_id, i.trading_symbol as symbol, i.exchange, l.time, l.ltp, l.volume, l.oi,"
    " l.change_pct, l.bid_price as bid, l.bid_qty, l.ask_price as ask, l.ask_qty"
)


def latest_quotes(conn: psycopg.Connection[Any], instrument_ids: list[int] | None = None) -> list[dict[str, Any]]:
    """The newest quote of each instrument (a row without a quote where it has none); without ids, the
    first 500 instruments that have one, by symbol."""
    with conn.cursor(row_factory=dict_row) as cur:
        if instrument_ids is None:
            cur.execute(
                f"{_QUOTE_COLUMNS} from analytics.latest l join instruments i using (instrument_id)"
                " order by i.trading_symbol limit 500"
            )
        else:
            cur.execute(
                f"{_QUOTE_COLUMNS} from instruments i left join analytics.latest l using (instrument_id)"
                " where i.instrument_id = any(%s) order by i.trading_symbol",
                (instrument_ids,),
            )
        return cur.fetchall()


def search_instruments(conn: psycopg.Connection[Any], q: str, limit: int = 50) -> list[dict[str, Any]]:
    """Active instruments whose symbol starts with `q` or whose name contains it."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "select instrument_id, trading_symbol as symbol, exchange, instrument_type, expiry, strike, option_type,"
            " dhan_segment, dhan_security_id, kite_instrument_token from instruments"
            " where active and (trading_symbol ilike %s or name ilike %s) order by trading_symbol limit %s",
            (f"{q}%", f"%{q}%", limit),
        )
        return cur.fetchall()


def lag(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """The server's now, the newest stored quote's exchange and receive times, and the seconds since the first."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "select now() as now, max(time) as newest_time, max(receive_time) as newest_receive,"
            " extract(epoch from now() - max(time))::float8 as lag_seconds from latest_quotes"
        )
        row = cur.fetchone()
    assert row is not None  # an aggregate always returns a row
    return row


def stored_ticks(
    conn: psycopg.Connection[Any], instrument_ids: list[int], since: datetime | None, limit: int
) -> list[dict[str, Any]]:
    """The stored ticks of the instruments from `since`, in time order, at most `limit`."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "select tick_id, source, segment, security_id, time, receive_time, time_source, packet, ltp, volume,"
            " oi, change_pct, bid_price, bid_qty, ask_price, ask_qty, instrument_id from ticks"
            " where instrument_id = any(%s) and time >= %s order by time, receive_time limit %s",
            (instrument_ids, since, limit),
        )
        return cur.fetchall()
