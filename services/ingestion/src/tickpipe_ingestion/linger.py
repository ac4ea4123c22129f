"""The publisher's linger policy: how long a partial message may wait for more ticks."""

from __future__ import annotations


class Linger:
    """How long a partial message waits for more ticks: not at all at a trickle; under load (ticks
    arriving at LOADED_TICKS_PER_S or more), until its oldest tick is `linger_s` old.

    A message costs the broker, ingestion and a worker far more than a tick does, so under load
    fewer, fuller messages save CPU at the same receive-to-commit latency (docs/benchmarks.md). At a
    trickle nothing is saved, so nothing waits.
    """

    LOADED_TICKS_PER_S = 200.0

    def __init__(self, linger_s: float) -> None:
        self.linger_s = linger_s
        self.rate = 0.0  # ticks/s, as the last read found them
        self._last_read: float | None = None

    def read(self, ticks: int, now: float) -> None:
        """A round read `ticks` (all that had arrived since the round before)."""
        if self._last_read is not None:
            self.rate = ticks / max(now - self._last_read, 1e-3)
        self._last_read = now

    def wait(self, oldest_at: float, now: float) -> float:
        """Seconds to wait before reading the next round, whose oldest tick arrived at `oldest_at`."""
        if self.linger_s <= 0 or self.rate < self.LOADED_TICKS_PER_S:
            return 0.0
        return max(0.0, oldest_at + self.linger_s - now)
