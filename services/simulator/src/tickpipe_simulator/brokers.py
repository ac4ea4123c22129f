"""The exchange simulators by broker adapter name: each speaks that broker's protocol over a real socket.

A broker needs no simulator to be used; one with a simulator adds its module here (one line), and
`tickpipe simulate --source NAME`, `tickpipe run` and the tests can then serve its protocol.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from tickpipe_core import ConfigError
from tickpipe_simulator import dhan, kite
from tickpipe_simulator.bundled import bundled_market
from tickpipe_simulator.market import SimInstrument, make_instruments
from tickpipe_simulator.server import SimulatorServer


@dataclass(frozen=True)
class SimulatorOptions:
    rate: float = 100.0  # ticks per second per connection
    packets_per_frame: int = 4
    full_every: int = 0  # in quote mode, every Nth packet a full one, where the broker has both


@dataclass(frozen=True)
class BrokerSimulator:
    """How to simulate one broker: its protocol server, and how a row of its bundled master becomes an instrument."""

    server: Callable[[list[SimInstrument], SimulatorOptions], SimulatorServer]
    instrument: Callable[[dict[str, str], random.Random], SimInstrument]


SIMULATORS = {
    "dhan": BrokerSimulator(
        lambda market, o: dhan.DhanSimulator(
            market, o.rate, packets_per_frame=o.packets_per_frame, full_every=o.full_every
        ),
        dhan.simulated_instrument,
    ),
    "kite": BrokerSimulator(
        lambda market, o: kite.KiteSimulator(market, o.rate, packets_per_frame=o.packets_per_frame),
        kite.simulated_instrument,
    ),
}


def simulator_of(source: str) -> BrokerSimulator:
    try:
        return SIMULATORS[source]
    except KeyError:
        raise ConfigError(f"no exchange simulator speaks {source!r}; one of {', '.join(SIMULATORS)}") from None


def simulated_market(source: str, count: int | None, seed: int = 0) -> list[SimInstrument]:
    """The bundled market of real instruments, or `count` synthetic ones: what a simulator serves."""
    if count is None:
        return bundled_market(source, simulator_of(source).instrument, seed)
    return make_instruments(count, seed)
