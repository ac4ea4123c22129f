"""tickpipe workers: drain the ticks queue into the TimescaleDB hypertable."""

from tickpipe_workers.consumer import Worker
from tickpipe_workers.pool import run_workers
from tickpipe_workers.writer import TickWriter

__all__ = ["TickWriter", "Worker", "run_workers"]
