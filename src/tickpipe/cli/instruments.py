"""`tickpipe instruments`: sync the brokers' instrument masters, select instruments by watchlist."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import click

from tickpipe.cli.common import WATCHLIST, reads
from tickpipe_brokers import names
from tickpipe_core.settings import DatabaseSettings, InstrumentSettings, load


@click.group()
def instruments() -> None:
    """The instrument master: sync the brokers' CSVs, select instruments by watchlist."""


@instruments.command("sync")
@click.option("--source", type=click.Choice(names()), help="Whose master it is (--bundled: default all).")
@click.option("--file", "path", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="A master on disk.")
@click.option("--download", is_flag=True, help="Fetch the master from the broker's <BROKER>_MASTER_URL.")
@click.option(
    "--bundled", is_flag=True, help="The simulator's bundled slice of real instruments (adds, unlists nothing)."
)
@click.option("--dry-run", is_flag=True, help="Print what would be added, changed and deactivated; write nothing.")
@click.option(
    "--max-deactivate",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Refuse a master that would unlist more than this share of the broker's listings.",
)
@reads(DatabaseSettings, InstrumentSettings)
def instruments_sync(
    source: str | None, path: Path | None, download: bool, bundled: bool, dry_run: bool, max_deactivate: float
) -> None:
    """Load a broker's instrument master into the database in one transaction.

    Bad rows are reported with their line number and skipped; a missing required column rejects the
    whole file. Instruments the master no longer lists are marked inactive, never deleted.
    """
    from tickpipe_brokers import adapter
    from tickpipe_instruments import download_master

    if sum((path is not None, download, bundled)) != 1:
        raise click.UsageError("give exactly one of --file PATH, --download and --bundled")
    database_url = load(DatabaseSettings).database_url
    if bundled:
        for each in [source] if source else names():
            sync_bundled(database_url, each, dry_run=dry_run)
        return
    if source is None:
        raise click.UsageError("--source is required with --file and --download")
    if download:
        settings, chosen = load(InstrumentSettings), adapter(source)
        url = chosen.settings().master_url
        path = download_master(url, settings.cache_dir, f"{source}-master.csv").path
    assert path is not None
    sync_file(database_url, source, path, dry_run=dry_run, max_deactivate=max_deactivate)


def sync_bundled(database_url: str, source: str, *, dry_run: bool = False) -> None:
    """Sync the simulator's bundled slice of `source`'s master (a partial master: it unlists nothing)."""
    from tickpipe_simulator.bundled import master_path

    sync_file(database_url, source, master_path(source), dry_run=dry_run, partial=True)


def sync_file(
    database_url: str,
    source: str,
    path: Path,
    *,
    dry_run: bool = False,
    max_deactivate: float = 0.5,
    partial: bool = False,
) -> None:
    """Parse a master file (with a progress bar on a terminal), sync it, print the bad rows and a summary."""
    from tickpipe_instruments import open_master, parse_master, sync_instruments

    tty = sys.stderr.isatty()
    size = path.stat().st_size
    with (
        path.open("rb") as raw,
        open_master(raw) as text,
        click.progressbar(length=size, label="parsing", file=sys.stderr, hidden=not tty) as bar,
    ):

        def lines() -> Iterator[str]:
            for n, line in enumerate(text):
                if n % 20_000 == 0:
                    bar.update(raw.tell() - bar.pos)  # compressed bytes read, for a .gz
                yield line

        master = parse_master(source, lines())
        bar.update(size - bar.pos)
    for bad in master.bad[:100]:
        click.echo(f"{path}:{bad.line}: skipped: {bad.reason}", err=True)
    if len(master.bad) > 100:
        click.echo(f"... and {len(master.bad) - 100} more bad rows", err=True)
    with click.progressbar(length=len(master.rows), label="loading", file=sys.stderr, hidden=not tty) as bar:
        report = sync_instruments(
            database_url,
            master,
            dry_run=dry_run,
            max_deactivate=max_deactivate,
            partial=partial,
            progress=bar.update,
        )
    if dry_run:
        for kind, labels in report.samples.items():
            for label in labels:
                click.echo(f"would be {kind}: {label}")
    click.echo(f"{report.summary()}; {len(master.bad)} bad rows skipped ({master.format}, {path.name})", err=True)


@instruments.command("select")
@click.argument("watchlist", type=WATCHLIST)
@click.option("--spot", type=float, default=None, help="Use this price for every options rule without a spot.")
@reads(DatabaseSettings)
def instruments_select(watchlist: Path, spot: float | None) -> None:
    """Print the instruments a watchlist (YAML or TOML) resolves to."""
    from tickpipe_instruments.watchlist import load_watchlist, resolve

    wl = load_watchlist(watchlist)
    if spot is not None:
        wl = wl.model_copy(update={"options": [o.model_copy(update={"spot": o.spot or spot}) for o in wl.options]})
    selected = resolve(load(DatabaseSettings).database_url, wl)
    click.echo(f"{'id':>8}  {'exchange':8}  {'symbol':28}  {'type':5}  {'expiry':10}  {'strike':>9}  opt  dhan  kite")
    for s in selected:
        dhan = f"{s.dhan_segment}:{s.dhan_security_id}" if s.dhan_security_id else "-"
        click.echo(
            f"{s.instrument_id:>8}  {s.exchange:8}  {s.trading_symbol:28}  {s.instrument_type:5}  "
            f"{s.expiry or '-'!s:10}  {s.strike or '-'!s:>9}  {s.option_type or '-':3}  {dhan}  "
            f"{s.kite_instrument_token or '-'}"
        )
    click.echo(f"{len(selected)} instruments", err=True)
