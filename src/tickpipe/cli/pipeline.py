"""The pipeline's commands: migrate, ingest, record, work, run (all of them, supervised) and health."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from tickpipe.cli.common import CAPTURE, WATCHLIST, broker, data_source, reads, run_async
from tickpipe.cli.simulate import INSTRUMENTS_HELP, feed_environment
from tickpipe_brokers import SourceSettings, adapter
from tickpipe_brokers.registry import ADAPTERS
from tickpipe_core import Topology
from tickpipe_core.health import HEALTH_FILE_ENV, is_fresh
from tickpipe_core.settings import (
    AmqpSettings,
    DatabaseSettings,
    IngestSettings,
    InstrumentSettings,
    MetricsSettings,
    ServeSettings,
    WorkerSettings,
    load,
    redact_url,
)

if TYPE_CHECKING:
    from tickpipe_ingestion.service import Broker

# SIGTERM to exit, at most (compose's stop_grace_period is longer): a worker's unacked batch is
# redelivered, ingestion's unconfirmed ticks stay in its spool.
INGEST_STOP_WITHIN_S = 4.0
BROKER_SETTINGS = [a.settings_class for a in ADAPTERS.values()]
WORKER_STOP_WITHIN_S = 8.0


@click.command()
@reads(DatabaseSettings)
def migrate() -> None:
    """Create the database if needed and apply pending SQL migrations in order."""
    from tickpipe_core.migrate import migrate as apply

    applied = apply(load(DatabaseSettings).database_url)
    click.echo(f"applied {len(applied)} migration(s)", err=True)


def _simulated(address: str) -> Broker:
    """The broker, subscribed to the bundled market a `tickpipe simulate` serves at ADDRESS."""
    from tickpipe_ingestion.service import Broker
    from tickpipe_simulator.brokers import simulated_market

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter(f"{address!r} is not HOST:PORT", param_hint="--simulator")
    chosen = adapter(data_source())
    settings = chosen.connect_to_simulator(f"ws://{host}:{port}", simulated_market(chosen.name, None))
    return Broker(chosen, settings)


@click.command()
@click.option("--record", type=CAPTURE, default=None, help="Also write every raw frame to this capture file.")
@click.option(
    "--watchlist", type=WATCHLIST, default=None, help="Subscribe to this watchlist instead of DHAN_INSTRUMENTS."
)
@click.option(
    "--simulator",
    metavar="HOST:PORT",
    default=None,
    help="Subscribe to the bundled market of the `tickpipe simulate` at HOST:PORT (with its dummy credentials).",
)
@reads(
    SourceSettings,
    *BROKER_SETTINGS,
    AmqpSettings,
    IngestSettings,
    DatabaseSettings,
    InstrumentSettings,
    MetricsSettings,
)
@click.option(
    "--schedule",
    type=click.Choice(["nse", "mcx", "always"]),
    default=None,
    help="Connect only for this market's sessions (08:55 IST to 5 min after the close, trading days); "
    "default INGEST_SCHEDULE (always).",
)
def ingest(record: Path | None, watchlist: Path | None, simulator: str | None, schedule: str | None) -> None:
    """Connect to the broker feed named by DATA_SOURCE and publish every tick to RabbitMQ.

    Each tick carries our instrument id, from a map of the database's instruments that is reloaded
    every INSTRUMENTS_REFRESH_S seconds and on SIGHUP.
    """
    from tickpipe_brokers.market_hours import MarketHours, Schedule, load_holidays, run_on_schedule
    from tickpipe_ingestion import run_ingest
    from tickpipe_instruments.watchlist import load_watchlist, resolve

    amqp, settings = load(AmqpSettings), load(IngestSettings)
    if simulator is not None:
        chosen = _simulated(simulator)
        settings = settings.model_copy(update={"market_hours": "always"})  # the simulated market never closes
    else:
        chosen = broker()
    db, instruments = load(DatabaseSettings), load(InstrumentSettings)
    subscribe = resolve(db.database_url, load_watchlist(watchlist)) if watchlist else None
    metrics = load(MetricsSettings)
    hours = MarketHours(schedule or settings.schedule, load_holidays(settings.holidays_file))  # type: ignore[arg-type]
    run_async(
        lambda stop: run_on_schedule(
            lambda session_stop: run_ingest(
                broker=chosen,
                amqp=amqp,
                ingest=settings,
                stop=session_stop,
                record=record,
                db=db,
                instruments=instruments,
                subscribe=subscribe,
                metrics=metrics,
            ),
            Schedule(hours),
            stop,
        ),
        stop_within_s=INGEST_STOP_WITHIN_S,
    )


@click.command()
@click.argument("path", type=CAPTURE)
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None, help="Stop after N seconds.")
@reads(SourceSettings, *BROKER_SETTINGS, IngestSettings)
def record(path: Path, duration: float | None) -> None:
    """Record the live feed's raw frames with their receive times to PATH (.gz compresses).

    Nothing is published. Serve the file back with `tickpipe simulate --replay PATH`.
    """
    from tickpipe_ingestion.service import run_record

    chosen, settings = broker(), load(IngestSettings)

    async def main(stop: asyncio.Event) -> None:
        if duration is not None:
            asyncio.get_running_loop().call_later(duration, stop.set)
        await run_record(broker=chosen, ingest=settings, path=path, stop=stop)

    run_async(main)


@click.command()
@click.option(
    "--workers",
    "count",
    type=click.IntRange(1, 64),
    default=None,
    help="Worker processes (default: WORKER_COUNT).",
)
@reads(DatabaseSettings, AmqpSettings, WorkerSettings, MetricsSettings)
def work(count: int | None) -> None:
    """Drain the ticks queue into the hypertable with batch-insert worker processes.

    One process per worker is faster than tasks sharing a process (python -m tickpipe_bench.workers).
    """
    from tickpipe.supervisor import Child, Supervisor
    from tickpipe_workers import run_workers

    db, amqp, settings = load(DatabaseSettings), load(AmqpSettings), load(WorkerSettings)
    count = count or settings.count
    if count > 1:
        children = [Child(f"worker-{i}", ["work", "--workers", "1"], _metrics_port(i)) for i in range(count)]
        sys.exit(Supervisor(children).run())
    metrics = load(MetricsSettings)
    run_async(
        lambda stop: run_workers(
            1, db.database_url, amqp.amqp_url, Topology(amqp.amqp_prefix), settings, stop, metrics
        ),
        stop_within_s=WORKER_STOP_WITHIN_S,
    )


def _metrics_port(offset: int) -> dict[str, str]:
    """A child's METRICS_PORT: the parent's plus `offset` (each process serves its own; 0 stays off)."""
    port = load(MetricsSettings).metrics_port
    return {"METRICS_PORT": str(port + offset)} if port else {}


@click.command()
@click.option("--max-age", type=float, default=30.0, show_default=True, help="Seconds a heartbeat stays fresh.")
@click.option("--ready", is_flag=True, help="With METRICS_PORT: ask /readyz (connected and flowing), not /healthz.")
@reads(MetricsSettings)
def health(max_age: float, ready: bool) -> None:
    """Exit 0 when this container's service is alive (or, with --ready, ready), else 1 with the reason.

    With METRICS_PORT set it asks the service's /healthz (or /readyz); otherwise it checks the
    heartbeat file TICKPIPE_HEALTH_FILE, which the services touch every few seconds.
    """
    import requests

    port = load(MetricsSettings).metrics_port
    if port:
        path = "/readyz" if ready else "/healthz"
        try:
            response = requests.get(f"http://127.0.0.1:{port}{path}", timeout=5)
        except requests.RequestException as e:
            raise click.ClickException(
                f"unhealthy: nothing answers on METRICS_PORT {port} ({type(e).__name__})"
            ) from None
        if response.status_code != 200:
            raise click.ClickException(f"not {path.strip('/z')}: {response.text.strip()}")
        return
    heartbeat = os.environ.get(HEALTH_FILE_ENV)
    if not heartbeat or not is_fresh(heartbeat, max_age):
        raise click.ClickException(f"unhealthy: {HEALTH_FILE_ENV}={heartbeat!r} is missing or stale")


@click.command()
@click.option("--workers", "count", type=click.IntRange(1, 64), default=2, show_default=True, help="Worker processes.")
@click.option("--instruments", type=click.IntRange(1, 25000), default=None, help=INSTRUMENTS_HELP)
@click.option(
    "--rate", type=click.FloatRange(min=0.1), default=100.0, show_default=True, help="Simulated ticks per second."
)
@click.option("--port", type=click.IntRange(1, 65535), default=8765, show_default=True, help="Simulator port.")
@click.option("--no-simulator", is_flag=True, help="Use the real broker feed (DATA_SOURCE and its settings).")
@click.option("--watchlist", type=WATCHLIST, default=None, help="With --no-simulator: subscribe to this watchlist.")
@click.option(
    "--schedule",
    type=click.Choice(["nse", "mcx", "always"]),
    default=None,
    help="Ingestion connects only for this market's sessions (see `ingest --schedule`).",
)
@reads(
    DatabaseSettings,
    AmqpSettings,
    SourceSettings,
    *BROKER_SETTINGS,
    IngestSettings,
    WorkerSettings,
    MetricsSettings,
)
def run(
    count: int,
    instruments: int | None,
    rate: float,
    port: int,
    no_simulator: bool,
    watchlist: Path | None,
    schedule: str | None,
) -> None:
    """All in one on this machine: migrate, then supervise simulator, ingestion, workers and maintain.

    With the simulator (the default) the bundled market of real instruments is synced first, so
    ticks carry instrument ids from the first second. Ctrl-C or SIGTERM stops ingestion first
    (flushing what it holds), then the workers (each finishing its batch), then the simulator.
    """
    from tickpipe.cli.instruments import sync_bundled
    from tickpipe.supervisor import Child, Supervisor
    from tickpipe_core.migrate import migrate as apply
    from tickpipe_simulator.brokers import simulated_market

    source = data_source()
    database_url = load(DatabaseSettings).database_url
    apply(database_url)
    children = []
    ingest_env: dict[str, str] = {}
    if not no_simulator:
        if instruments is None:
            sync_bundled(database_url, source)
        args = ["simulate", "--source", source, "--port", str(port), "--rate", str(rate)]
        children.append(Child("simulator", args + (["--instruments", str(instruments)] if instruments else []), {}))
        ingest_env = feed_environment(source, f"ws://127.0.0.1:{port}", simulated_market(source, instruments))
    else:
        chosen = broker()
        chosen.settings.credentials()  # fail now, not in a restarting child
    children += [Child(f"worker-{i}", ["work", "--workers", "1"], _metrics_port(1 + i)) for i in range(count)]
    children.append(Child("maintain", ["maintain"], {}))
    ingest_args = ["ingest", "--watchlist", str(watchlist.resolve())] if watchlist and no_simulator else ["ingest"]
    ingest_args += ["--schedule", schedule] if schedule else []
    children.append(Child("ingest", ingest_args, ingest_env | _metrics_port(0)))
    click.echo(
        f"tickpipe: {source} -> RabbitMQ -> {redact_url(database_url)}; Ctrl-C stops. Look at the data:\n"
        f"  psql {redact_url(database_url)!r} -c 'select time, instrument_id, segment, security_id, ltp, volume,"
        " spread_bps from ticks order by time desc limit 10'\n"
        "  tickpipe query candles INFY --interval 1m     (docs/analytics.md: every relation and function)",
        err=True,
    )
    sys.exit(Supervisor(children).run())


@click.command()
@reads(DatabaseSettings, AmqpSettings, ServeSettings)
def serve() -> None:
    """The read side: REST (/v1/quotes, /v1/candles, /v1/instruments, /v1/lag, /v1/health), the live
    WebSocket stream (/v1/stream) and the page (/), on SERVE_HOST:SERVE_PORT.
    """
    import uvicorn

    from tickpipe_gateway import create_app

    settings, amqp = load(ServeSettings), load(AmqpSettings)
    app = create_app(settings, load(DatabaseSettings).database_url, amqp.amqp_url, Topology(amqp.amqp_prefix))
    # A stream client sends subscriptions, never megabytes: 64 KiB per message is plenty.
    uvicorn.run(
        app, host=settings.host, port=settings.port, log_config=None, timeout_graceful_shutdown=5, ws_max_size=1 << 16
    )
