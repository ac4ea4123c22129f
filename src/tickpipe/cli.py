"""The `tickpipe` command line: migrate, ingest, work, simulate, and run them all together."""

from __future__ import annotations

import asyncio
import inspect
import signal
import sys
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from pydantic_settings import BaseSettings

from tickpipe_core import ConfigError, TickpipeError, Topology, configure_logging, get_logger
from tickpipe_core.health import HEALTH_FILE_ENV, heartbeat, is_fresh
from tickpipe_core.settings import (
    AmqpSettings,
    DatabaseSettings,
    DhanSettings,
    IngestSettings,
    InstrumentSettings,
    KiteSettings,
    LogSettings,
    SourceSettings,
    WorkerSettings,
    load,
)

if TYPE_CHECKING:
    from tickpipe_ingestion.service import Brokers

F = TypeVar("F", bound=Callable[..., Any])
log = get_logger("cli")


def _reads(*classes: type[BaseSettings]) -> Callable[[F], F]:
    """Append the environment variables a command reads to its --help."""
    names = ["LOG_LEVEL", "LOG_FORMAT"]
    for cls in classes:
        prefix = str(cls.model_config.get("env_prefix", ""))
        names += [(prefix + name).upper() for name in cls.model_fields]

    def decorate(f: F) -> F:
        f.__doc__ = inspect.cleandoc(f.__doc__ or "") + "\n\n\b\nSettings (environment or .env): " + ", ".join(names)
        return f

    return decorate


def _run_async(main: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
    """Run a coroutine with an Event that SIGINT/SIGTERM set, for a clean shutdown."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        beat = asyncio.create_task(heartbeat())
        try:
            await main(stop)
        finally:
            beat.cancel()

    asyncio.run(runner())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """tickpipe: broker WebSocket feed -> RabbitMQ -> TimescaleDB hypertable."""
    settings = load(LogSettings)
    configure_logging(settings.log_level, settings.log_format)


@cli.command()
@_reads(DatabaseSettings)
def migrate() -> None:
    """Create the database if needed and apply pending SQL migrations in order."""
    from tickpipe_core.migrate import migrate as apply

    applied = apply(load(DatabaseSettings).database_url)
    click.echo(f"applied {len(applied)} migration(s)", err=True)


_CAPTURE = click.Path(dir_okay=False, path_type=Path)


_WATCHLIST = click.Path(exists=True, dir_okay=False, path_type=Path)


def _brokers() -> Brokers:
    """DATA_SOURCE and the settings of the broker it names (loaded now, so errors come at start)."""
    from tickpipe_ingestion.service import Brokers

    source = load(SourceSettings).data_source
    if source == "kite":
        return Brokers(source, kite=load(KiteSettings))
    return Brokers(source, dhan=load(DhanSettings))


@cli.command()
@click.option("--record", type=_CAPTURE, default=None, help="Also write every raw frame to this capture file.")
@click.option(
    "--watchlist", type=_WATCHLIST, default=None, help="Subscribe to this watchlist instead of DHAN_INSTRUMENTS."
)
@_reads(SourceSettings, DhanSettings, KiteSettings, AmqpSettings, IngestSettings, DatabaseSettings, InstrumentSettings)
def ingest(record: Path | None, watchlist: Path | None) -> None:
    """Connect to the broker feed named by DATA_SOURCE and publish every tick to RabbitMQ.

    Each tick carries our instrument id, from a map of the database's instruments that is reloaded
    every INSTRUMENTS_REFRESH_S seconds and on SIGHUP.
    """
    from tickpipe_instruments.watchlist import load_watchlist, resolve
    from tickpipe_ingestion import run_ingest

    brokers = _brokers()
    amqp, settings = load(AmqpSettings), load(IngestSettings)
    db, instruments = load(DatabaseSettings), load(InstrumentSettings)
    subscribe = resolve(db.database_url, load_watchlist(watchlist)) if watchlist else None
    _run_async(
        lambda stop: run_ingest(
            brokers=brokers,
            amqp=amqp,
            ingest=settings,
            stop=stop,
            record=record,
            db=db,
            instruments=instruments,
            subscribe=subscribe,
        )
    )


@cli.command()
@click.argument("path", type=_CAPTURE)
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None, help="Stop after N seconds.")
@_reads(SourceSettings, DhanSettings, KiteSettings, IngestSettings)
def record(path: Path, duration: float | None) -> None:
    """Record the live feed's raw frames with their receive times to PATH (.gz compresses).

    Nothing is published. Serve the file back with `tickpipe simulate --replay PATH`.
    """
    from tickpipe_ingestion.service import run_record

    brokers, settings = _brokers(), load(IngestSettings)

    async def main(stop: asyncio.Event) -> None:
        if duration is not None:
            asyncio.get_running_loop().call_later(duration, stop.set)
        await run_record(brokers=brokers, ingest=settings, path=path, stop=stop)

    _run_async(main)


@cli.command()
@click.option(
    "--workers",
    "count",
    type=click.IntRange(1, 64),
    default=None,
    help="Worker processes (default: WORKER_COUNT).",
)
@_reads(DatabaseSettings, AmqpSettings, WorkerSettings)
def work(count: int | None) -> None:
    """Drain the ticks queue into the hypertable with batch-insert worker processes.

    One process per worker measured faster than tasks sharing a process (scripts/bench/bench_workers.py).
    """
    from tickpipe.supervisor import Child, Supervisor
    from tickpipe_workers import run_workers

    db, amqp, settings = load(DatabaseSettings), load(AmqpSettings), load(WorkerSettings)
    count = count or settings.count
    if count > 1:
        sys.exit(Supervisor([Child(f"worker-{i}", ["work", "--workers", "1"], {}) for i in range(count)]).run())
    _run_async(lambda stop: run_workers(1, db.database_url, amqp.amqp_url, Topology(amqp.amqp_prefix), settings, stop))


@cli.command()
@click.option(
    "--source",
    type=click.Choice(["dhan", "kite"]),
    default="dhan",
    show_default=True,
    help="Which broker protocol to speak.",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True)
@click.option(
    "--instruments",
    "count",
    type=click.IntRange(1, 25000),
    default=10,
    show_default=True,
    help="How many instruments the market has (NSE_FNO security ids 40000, 40001, ...).",
)
@click.option(
    "--rate", type=click.FloatRange(min=0.1), default=100.0, show_default=True, help="Ticks per second per connection."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed of the market.")
@click.option(
    "--packets-per-frame", type=click.IntRange(1, 100), default=4, show_default=True, help="Most packets in a frame."
)
@click.option(
    "--full-every",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="Dhan quote mode: every Nth packet is a full packet (0: never).",
)
@click.option("--replay", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Serve this capture.")
@click.option(
    "--speed", type=click.FloatRange(min=0), default=1.0, show_default=True, help="Replay speed (0: flat out)."
)
def simulate(
    source: str,
    host: str,
    port: int,
    count: int,
    rate: float,
    seed: int,
    packets_per_frame: int,
    full_every: int,
    replay: Path | None,
    speed: float,
) -> None:
    """Serve a simulated exchange, or a recorded capture, over the broker's real WebSocket protocol."""
    from tickpipe_ingestion.capture import read_frames, read_header
    from tickpipe_simulator.dhan import DhanSimulator
    from tickpipe_simulator.kite import KiteSimulator
    from tickpipe_simulator.market import make_instruments
    from tickpipe_simulator.replay import Replay

    server_of: Replay | DhanSimulator | KiteSimulator
    if replay is not None:
        recorded = read_header(replay).get("source")
        if recorded != source:
            raise click.UsageError(f"{replay} was recorded from {recorded!r}, not {source!r} (use --source)")
        server_of = Replay(list(read_frames(replay)), speed)
    elif source == "kite":
        server_of = KiteSimulator(make_instruments(count, seed), rate, packets_per_frame=packets_per_frame)
    else:
        instruments = make_instruments(count, seed)
        server_of = DhanSimulator(instruments, rate, packets_per_frame=packets_per_frame, full_every=full_every)

    async def main(stop: asyncio.Event) -> None:
        async with server_of.serving(host, port) as server:
            bound = server.sockets[0].getsockname()[1] if server.sockets else port
            log.info("simulator_listening", source=source, url=f"ws://{host}:{bound}", replay=str(replay))
            await stop.wait()
        log.info("simulator_stopped", connections=server_of.connections)

    _run_async(main)


@cli.group()
def instruments() -> None:
    """The instrument master: sync the brokers' CSVs, select instruments by watchlist."""


@instruments.command("sync")
@click.option("--source", type=click.Choice(["dhan", "kite"]), required=True, help="Whose master it is.")
@click.option("--file", "path", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="A master on disk.")
@click.option("--download", is_flag=True, help="Fetch the master (INSTRUMENTS_DHAN_URL / INSTRUMENTS_KITE_URL).")
@click.option("--dry-run", is_flag=True, help="Print what would be added, changed and deactivated; write nothing.")
@click.option(
    "--max-deactivate",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Refuse a master that would unlist more than this share of the broker's listings.",
)
@_reads(DatabaseSettings, InstrumentSettings)
def instruments_sync(source: str, path: Path | None, download: bool, dry_run: bool, max_deactivate: float) -> None:
    """Load a broker's instrument master into the database in one transaction.

    Bad rows are reported with their line number and skipped; a missing required column rejects the
    whole file. Instruments the master no longer lists are marked inactive, never deleted.
    """
    from tickpipe_instruments import download_master, open_master, parse_master, sync_instruments

    if (path is None) == (not download):
        raise click.UsageError("give exactly one of --file PATH and --download")
    db, settings = load(DatabaseSettings), load(InstrumentSettings)
    if download:
        url = settings.dhan_url if source == "dhan" else settings.kite_url
        path = download_master(url, settings.cache_dir, f"{source}-master.csv").path
    assert path is not None
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

        master = parse_master(source, lines())  # type: ignore[arg-type]
        bar.update(size - bar.pos)
    for bad in master.bad[:100]:
        click.echo(f"{path}:{bad.line}: skipped: {bad.reason}", err=True)
    if len(master.bad) > 100:
        click.echo(f"... and {len(master.bad) - 100} more bad rows", err=True)
    with click.progressbar(length=len(master.rows), label="loading", file=sys.stderr, hidden=not tty) as bar:
        report = sync_instruments(
            db.database_url, master, dry_run=dry_run, max_deactivate=max_deactivate, progress=bar.update
        )
    if dry_run:
        for kind, labels in report.samples.items():
            for label in labels:
                click.echo(f"would be {kind}: {label}")
    click.echo(f"{report.summary()}; {len(master.bad)} bad rows skipped ({master.format}, {path.name})", err=True)


@instruments.command("select")
@click.argument("watchlist", type=_WATCHLIST)
@click.option("--spot", type=float, default=None, help="Use this price for every options rule without a spot.")
@_reads(DatabaseSettings)
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


@cli.command()
@click.option("--max-age", type=float, default=30.0, show_default=True, help="Seconds a heartbeat stays fresh.")
def health(max_age: float) -> None:
    """Exit 0 when this container's service is alive (its heartbeat file is fresh), else 1.

    \b
    Settings: TICKPIPE_HEALTH_FILE (the services touch it every few seconds).
    """
    import os

    path = os.environ.get(HEALTH_FILE_ENV)
    if not path or not is_fresh(path, max_age):
        raise click.ClickException(f"unhealthy: {HEALTH_FILE_ENV}={path!r} is missing or stale")


@cli.command()
@click.option("--workers", "count", type=click.IntRange(1, 64), default=2, show_default=True, help="Worker processes.")
@click.option(
    "--instruments",
    type=click.IntRange(1, 25000),
    default=10,
    show_default=True,
    help="Simulated instruments to subscribe.",
)
@click.option(
    "--rate", type=click.FloatRange(min=0.1), default=100.0, show_default=True, help="Simulated ticks per second."
)
@click.option("--port", type=click.IntRange(1, 65535), default=8765, show_default=True, help="Simulator port.")
@click.option("--no-simulator", is_flag=True, help="Use the real broker feed (DATA_SOURCE and its settings).")
@click.option("--watchlist", type=_WATCHLIST, default=None, help="With --no-simulator: subscribe to this watchlist.")
@_reads(DatabaseSettings, AmqpSettings, SourceSettings, DhanSettings, KiteSettings, IngestSettings, WorkerSettings)
def run(count: int, instruments: int, rate: float, port: int, no_simulator: bool, watchlist: Path | None) -> None:
    """All in one on this machine: migrate, then supervise simulator, ingestion and workers.

    Ctrl-C or SIGTERM stops ingestion first (flushing what it holds), then the workers (each
    finishing its batch), then the simulator.
    """
    from tickpipe.supervisor import Child, Supervisor
    from tickpipe_core.migrate import migrate as apply

    source = load(SourceSettings).data_source
    apply(load(DatabaseSettings).database_url)
    children = []
    ingest_env: dict[str, str] = {}
    if not no_simulator:
        args = ["simulate", "--source", source, "--port", str(port), "--instruments", str(instruments)]
        children.append(Child("simulator", [*args, "--rate", str(rate)], {}))
        ingest_env = _simulator_env(source, port, instruments)
    else:
        brokers = _brokers()
        broker = brokers.kite or brokers.dhan
        assert broker is not None
        broker.credentials()  # fail now, not in a restarting child
    children += [Child(f"worker-{i}", ["work", "--workers", "1"], {}) for i in range(count)]
    ingest_args = ["ingest", "--watchlist", str(watchlist.resolve())] if watchlist and no_simulator else ["ingest"]
    children.append(Child("ingest", ingest_args, ingest_env))
    sys.exit(Supervisor(children).run())


def _simulator_env(source: str, port: int, count: int) -> dict[str, str]:
    """Settings that point ingestion at `tickpipe simulate --source SOURCE --instruments COUNT`."""
    from tickpipe_simulator.kite import kite_token
    from tickpipe_simulator.market import make_instruments

    simulated = make_instruments(count)  # the same instruments the simulator child builds
    env = {"DATA_SOURCE": source, "INGEST_MARKET_HOURS": "always"}  # the simulated market never closes
    if source == "kite":
        return env | {
            "KITE_FEED_URL": f"ws://127.0.0.1:{port}",
            "KITE_API_KEY": "simulator",
            "KITE_ACCESS_TOKEN": "simulator-token",
            "KITE_INSTRUMENTS": ",".join(str(kite_token(i)) for i in simulated),
        }
    return env | {
        "DHAN_FEED_URL": f"ws://127.0.0.1:{port}",
        "DHAN_CLIENT_ID": "simulator",
        "DHAN_ACCESS_TOKEN": "simulator-token",
        "DHAN_INSTRUMENTS": ",".join(f"{i.segment}:{i.security_id}" for i in simulated),
    }


def main(args: list[str] | None = None) -> None:
    """Entry point: one clear line instead of a traceback for configuration and known errors."""
    try:
        cli.main(args=args, standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except ConfigError as e:
        click.echo(f"configuration error: {e}", err=True)
        sys.exit(2)
    except TickpipeError as e:
        click.echo(f"error: {type(e).__name__}: {e}", err=True)
        sys.exit(1)
