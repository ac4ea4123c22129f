"""Watchlists: what to subscribe to, declared in a YAML or TOML file and resolved against `instruments`.

    symbols = ["NSE:INFY", "NSE:NIFTY"]                     # exchange:symbol (either broker's symbol)
    [[futures]]                                             # NIFTY futures, current and next expiry
    underlying = "NIFTY"
    expiries = 2
    [[options]]                                             # NIFTY options, nearest expiry, ATM +-10
    underlying = "NIFTY"
    expiry = 1
    strikes = 10
    spot = 25000                                            # optional; else the latest stored price

Only active instruments are chosen, and only expiries from today (India date) on.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import yaml
from psycopg import sql
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tickpipe_core.errors import ConfigError
from tickpipe_core.india import india_today


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FuturesRule(_Rule):
    underlying: str
    exchange: str = "NSE"
    expiries: int = Field(1, ge=1, le=12, description="How many expiries from the nearest: 2 = current and next.")


class OptionsRule(_Rule):
    underlying: str
    exchange: str = "NSE"
    expiry: int = Field(1, ge=1, le=12, description="Which expiry: 1 = the nearest.")
    strikes: int = Field(10, ge=0, le=200, description="Strikes each side of the at-the-money strike.")
    spot: float | None = Field(None, gt=0, description="Price that sets ATM; default: the latest stored price.")


class Watchlist(_Rule):
    symbols: list[str] = []
    futures: list[FuturesRule] = []
    options: list[OptionsRule] = []


@dataclass(frozen=True)
class Selected:
    instrument_id: int
    exchange: str
    trading_symbol: str
    instrument_type: str
    expiry: date | None
    strike: Decimal | None
    option_type: str | None
    dhan_segment: str | None
    dhan_security_id: int | None
    kite_instrument_token: int | None


def load_watchlist(path: Path) -> Watchlist:
    """Read a .toml, .yaml or .yml watchlist; any problem is one ConfigError naming the file."""
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"watchlist {path}: cannot read: {e.strerror}") from None
    try:
        data: Any = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"watchlist {path}: not valid {path.suffix[1:].upper()}: {e}") from None
    try:
        return Watchlist.model_validate(data or {})
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        raise ConfigError(f"watchlist {path}: {problems}") from None


_COLUMNS = (
    "instrument_id, exchange, trading_symbol, instrument_type, expiry, strike, option_type,"
    " dhan_segment, dhan_security_id, kite_instrument_token"
)


def resolve(database_url: str, watchlist: Watchlist, today: date | None = None) -> list[Selected]:
    """The instruments the watchlist names, in its order, each once."""
    today = today or india_today()
    out: dict[int, Selected] = {}
    with psycopg.connect(database_url) as conn:
        for item in watchlist.symbols:
            exchange, sep, symbol = item.partition(":")
            if not sep or not symbol:
                raise ConfigError(f"watchlist symbol {item!r} is not EXCHANGE:SYMBOL")
            rows = _select(
                conn,
                "exchange = %s and %s in (trading_symbol, dhan_symbol, kite_symbol) order by instrument_id",
                (exchange.upper(), symbol),
            )
            if not rows:
                raise ConfigError(f"watchlist symbol {item!r}: no active instrument (run `instruments sync`?)")
            out.update((r.instrument_id, r) for r in rows)
        for fut in watchlist.futures:
            rows = _select(
                conn,
                "underlying = %s and exchange = %s and instrument_type = 'FUT' and expiry >= %s"
                " order by expiry, instrument_id limit %s",
                (fut.underlying, fut.exchange, today, fut.expiries),
            )
            if not rows:
                raise ConfigError(f"watchlist futures of {fut.underlying} on {fut.exchange}: none active")
            out.update((r.instrument_id, r) for r in rows)
        for opt in watchlist.options:
            out.update((r.instrument_id, r) for r in _options(conn, opt, today))
    return list(out.values())


_OPTIONS_OF = "underlying = %s and exchange = %s and instrument_type = 'OPT'"


def _options(conn: psycopg.Connection, opt: OptionsRule, today: date) -> list[Selected]:
    expiries = conn.execute(
        sql.SQL("select distinct expiry from instruments where active and {} and expiry >= %s order by expiry").format(
            sql.SQL(_OPTIONS_OF)
        ),
        (opt.underlying, opt.exchange, today),
    ).fetchall()
    if len(expiries) < opt.expiry:
        raise ConfigError(
            f"watchlist options of {opt.underlying}: expiry {opt.expiry} asked, {len(expiries)} active expiries"
        )
    expiry = expiries[opt.expiry - 1][0]
    strikes = [
        r[0]
        for r in conn.execute(
            sql.SQL(
                "select distinct strike from instruments where active and {} and expiry = %s order by strike"
            ).format(sql.SQL(_OPTIONS_OF)),
            (opt.underlying, opt.exchange, expiry),
        ).fetchall()
    ]
    spot = opt.spot if opt.spot is not None else _latest_price(conn, opt, today)
    atm = min(range(len(strikes)), key=lambda i: (abs(float(strikes[i]) - spot), strikes[i]))
    chosen = strikes[max(0, atm - opt.strikes) : atm + opt.strikes + 1]
    return _select(
        conn,
        _OPTIONS_OF + " and expiry = %s and strike = any(%s) order by strike, option_type",
        (opt.underlying, opt.exchange, expiry, chosen),
    )


def _latest_price(conn: psycopg.Connection, opt: OptionsRule, today: date) -> float:
    """The underlying's latest stored price: its index, else its nearest future."""
    row = conn.execute(
        "select q.ltp from latest_quotes q join instruments i using (instrument_id)"
        " where i.exchange = %s and ((i.instrument_type = 'INDEX' and %s in (i.trading_symbol, i.underlying))"
        " or (i.instrument_type = 'FUT' and i.underlying = %s and i.expiry >= %s))"
        " order by i.instrument_type = 'INDEX' desc, i.expiry limit 1",
        (opt.exchange, opt.underlying, opt.underlying, today),
    ).fetchone()
    if row is None:
        raise ConfigError(
            f"watchlist options of {opt.underlying}: no stored price to find the ATM strike; set spot = <price>"
        )
    return float(row[0])


def _select(conn: psycopg.Connection, where: str, params: tuple[object, ...]) -> list[Selected]:
    """Active instruments matching `where` (a constant SQL fragment; values go in `params`)."""
    query = sql.SQL("select {} from instruments where active and {}").format(sql.SQL(_COLUMNS), sql.SQL(where))
    return [Selected(*row) for row in conn.execute(query, params).fetchall()]
