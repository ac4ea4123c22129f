"""`tickpipe maintain` (keep the analytics schema fresh) and `tickpipe query` (read it without SQL)."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import click
import psycopg

from tickpipe.cli.common import reads, run_async
from tickpipe_core.india import IST
from tickpipe_core.settings import AnalyticsSettings, DatabaseSettings, load

FORMAT = click.Choice(["table", "csv", "json"])
WHEN = click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"])


@click.command()
@click.option("--once", is_flag=True, help="One cycle, then exit (cron, tests).")
@click.option("--rebuild", is_flag=True, help="Recompute every materialized candle from the first tick (with --once).")
@reads(DatabaseSettings, AnalyticsSettings)
def maintain(once: bool, rebuild: bool) -> None:
    """Keep the analytics schema fresh: candle refresh, retention, chunk interval.

    On the Community edition refresh policies keep each level's recent window; maintain refreshes the
    history before it (late or backfilled ticks) and sets the retention policies.
    """
    from tickpipe_analytics.maintain import maintain_forever, maintain_once

    database_url, settings = load(DatabaseSettings).database_url, load(AnalyticsSettings)
    if once:
        report = maintain_once(database_url, settings, rebuild=rebuild)
        levels = ", ".join(f"{k} {v}" for k, v in report.refreshed.items()) or (
            "by the refresh policies; history before their windows refreshed for "
            + (", ".join(report.history_refreshed) or "no level")
        )
        click.echo(
            f"maintained ({report.edition} edition) in {report.seconds:.2f} s: candle rows {levels};"
            f" {report.dropped_chunks} tick chunks dropped, {report.deleted_candles} candles deleted",
            err=True,
        )
        return
    if rebuild:
        raise click.UsageError("--rebuild goes with --once")
    run_async(lambda stop: maintain_forever(database_url, settings, stop))


@click.group()
def query() -> None:
    """Read the analytics schema: candles, volume profile, option chain, breadth (see docs/analytics.md)."""


def _aware(value: datetime | None) -> datetime | None:
    """Times given on the command line are India time unless they say otherwise."""
    return None if value is None else value.replace(tzinfo=IST) if value.tzinfo is None else value


def _connect() -> psycopg.Connection[Any]:
    return psycopg.connect(load(DatabaseSettings).database_url)


def _number(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _emit(rows: Sequence[dict[str, Any]], columns: Sequence[str], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps([{c: _json(r[c]) for c in columns} for r in rows], indent=1))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        for r in rows:
            writer.writerow([_iso(r[c]) if isinstance(r[c], datetime) else _number(r[c]) for c in columns])
    else:
        table = [[_human(r[c]) for c in columns] for r in rows]
        widths = [max([len(c)] + [len(row[i]) for row in table]) for i, c in enumerate(columns)]
        click.echo("  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)))
        for row in table:
            click.echo("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _json(v: Any) -> Any:
    if isinstance(v, datetime):
        return _iso(v)
    if isinstance(v, date):
        return v.isoformat()
    if hasattr(v, "as_integer_ratio") and not isinstance(v, float | int):
        return float(v)  # Decimal
    return v


def _human(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, datetime):
        return v.astimezone(IST).strftime("%Y-%m-%d %H:%M:%S IST")
    if isinstance(v, float):
        return f"{v:,.2f}"
    if isinstance(v, bool):
        return "*" if v else ""
    return str(v)


@query.command("candles")
@click.argument("instrument")
@click.option("--interval", default="1m", show_default=True, help="1s 1m 5m 15m 1h 1d, or any N s|m|h|d.")
@click.option("--from", "start", type=WHEN, default=None, help="India time unless zoned (default: the last day).")
@click.option("--to", "end", type=WHEN, default=None, help="India time unless zoned (default: now).")
@click.option("--format", "fmt", type=FORMAT, default="table", show_default=True)
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Also draw them to a PNG.")
@reads(DatabaseSettings)
def query_candles(
    instrument: str, interval: str, start: datetime | None, end: datetime | None, fmt: str, plot: Path | None
) -> None:
    """Candles of INSTRUMENT (an instrument id or a trading symbol of either broker).

    CSV columns: time (ISO 8601 UTC), open, high, low, close, volume, vwap, ticks.
    """
    from tickpipe_analytics import queries

    queries.parse_interval(interval)
    with _connect() as conn:
        inst = queries.resolve_instrument(conn, instrument)
        default_start, default_end = queries.default_window(conn, inst.instrument_id)
        rows = queries.candles(
            conn, inst.instrument_id, interval, _aware(start) or default_start, _aware(end) or default_end
        )
    _emit(rows, queries.CANDLE_COLUMNS if fmt == "csv" else (*queries.CANDLE_COLUMNS, "oi_open", "oi_close"), fmt)
    if plot is not None:
        if not rows:
            raise click.ClickException("no candles in that window: nothing to plot")
        from tickpipe_analytics.plot import plot_candles

        plot_candles(rows, f"{inst.trading_symbol} {interval}", plot)
        click.echo(f"plotted {len(rows)} candles to {plot}", err=True)


@query.command("profile")
@click.argument("instrument")
@click.option("--day", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Trading day (default: the last).")
@click.option("--bin", "bin_width", type=click.FloatRange(min=0, min_open=True), default=None, help="Price bin width.")
@click.option("--format", "fmt", type=FORMAT, default="table", show_default=True)
@reads(DatabaseSettings)
def query_profile(instrument: str, day: datetime | None, bin_width: float | None, fmt: str) -> None:
    """Volume profile of INSTRUMENT for one trading day: volume per price bin, POC and 70 % value area."""
    from tickpipe_analytics import queries

    with _connect() as conn:
        inst = queries.resolve_instrument(conn, instrument)
        session = day.date() if day else queries.default_window(conn, inst.instrument_id)[0].astimezone(IST).date()
        rows = queries.profile(conn, inst.instrument_id, session, bin_width)
    _emit(rows, ("price_low", "price_high", "volume", "ticks", "is_poc", "in_value_area"), fmt)
    if rows and fmt == "table":
        poc = next(r for r in rows if r["is_poc"])
        area = [r for r in rows if r["in_value_area"]]
        click.echo(
            f"{inst.trading_symbol} {session}: POC {poc['price_low']:g}-{poc['price_high']:g}, value area"
            f" {area[0]['price_low']:g}-{area[-1]['price_high']:g}",
            err=True,
        )


@query.command("chain")
@click.argument("underlying")
@click.option("--expiry", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Default: the nearest expiry.")
@click.option("--format", "fmt", type=FORMAT, default="table", show_default=True)
@reads(DatabaseSettings)
def query_chain(underlying: str, expiry: datetime | None, fmt: str) -> None:
    """Option chain of UNDERLYING (e.g. NIFTY): every strike's CE and PE, OI and its change, the ATM strike."""
    from tickpipe_analytics import queries

    with _connect() as conn:
        chosen, rows = queries.chain(conn, underlying, expiry.date() if expiry else None)
    columns = ("ce_oi", "ce_oi_change", "ce_volume", "ce_bid", "ce_ask", "ce_ltp", "strike", "is_atm",
               "pe_ltp", "pe_bid", "pe_ask", "pe_volume", "pe_oi_change", "pe_oi")  # fmt: skip
    _emit(rows, columns if fmt == "table" else ("spot", *columns, "ce_instrument_id", "pe_instrument_id"), fmt)
    if fmt == "table":
        spot = rows[0]["spot"] if rows else None
        click.echo(f"{underlying} {chosen}: {len(rows)} strikes, spot {_human(spot)}", err=True)


@query.command("breadth")
@click.argument("instruments", nargs=-1, required=True)
@click.option("--format", "fmt", type=FORMAT, default="table", show_default=True)
@reads(DatabaseSettings)
def query_breadth(instruments: tuple[str, ...], fmt: str) -> None:
    """Advances, declines and unchanged among INSTRUMENTS (ids or symbols) against the previous close."""
    from tickpipe_analytics import queries

    with _connect() as conn:
        ids = [queries.resolve_instrument(conn, i).instrument_id for i in instruments]
        row = queries.breadth(conn, ids)
    _emit([row], ("advances", "declines", "unchanged", "unknown"), fmt)
