"""`tickpipe simulate`: a simulated exchange, or a recorded capture, over a broker's real protocol."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from tickpipe.cli.common import run_async
from tickpipe_core import get_logger
from tickpipe_simulator.brokers import SIMULATORS

if TYPE_CHECKING:
    from tickpipe_brokers.quote import Listing

log = get_logger("cli")

INSTRUMENTS_HELP = "Serve this many synthetic instruments (NSE_FNO 40000, 40001, ...) instead of the bundled market."


def feed_environment(source: str, url: str, market: Sequence[Listing]) -> dict[str, str]:
    """The environment that points a `tickpipe ingest` process at a simulator at `url` serving `market`."""
    from tickpipe_brokers import adapter

    chosen = adapter(source)
    # INGEST_MARKET_HOURS: the simulated market never closes.
    env = {"DATA_SOURCE": source, "INGEST_MARKET_HOURS": "always"}
    return env | chosen.environment(chosen.simulator_settings(url, market))


@click.command()
@click.option(
    "--source",
    type=click.Choice(list(SIMULATORS)),
    default=next(iter(SIMULATORS)),
    show_default=True,
    help="Which broker protocol to speak.",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True)
@click.option("--instruments", "count", type=click.IntRange(1, 25000), default=None, help=INSTRUMENTS_HELP)
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
    count: int | None,
    rate: float,
    seed: int,
    packets_per_frame: int,
    full_every: int,
    replay: Path | None,
    speed: float,
) -> None:
    """Serve a simulated exchange, or a recorded capture, over the broker's real WebSocket protocol.

    By default the market is the bundled slice of real instruments (NIFTY and BANKNIFTY, their
    futures, NIFTY options around the money, six large stocks); `tickpipe run` syncs the same slice.
    """
    from tickpipe_core.capture import read_frames, read_header
    from tickpipe_simulator.brokers import SimulatorOptions, simulated_market, simulator_of
    from tickpipe_simulator.replay import Replay
    from tickpipe_simulator.server import SimulatorServer

    server_of: Replay | SimulatorServer
    if replay is not None:
        recorded = read_header(replay).get("source")
        if recorded != source:
            raise click.UsageError(f"{replay} was recorded from {recorded!r}, not {source!r} (use --source)")
        server_of = Replay(list(read_frames(replay)), speed)
    else:
        options = SimulatorOptions(rate, packets_per_frame, full_every)
        server_of = simulator_of(source).server(simulated_market(source, count, seed), options)

    async def main(stop: asyncio.Event) -> None:
        async with server_of.serving(host, port) as server:
            bound = server.sockets[0].getsockname()[1] if server.sockets else port
            log.info("simulator_listening", source=source, url=f"ws://{host}:{bound}", replay=str(replay))
            await stop.wait()
        log.info("simulator_stopped", connections=server_of.connections)

    run_async(main)
