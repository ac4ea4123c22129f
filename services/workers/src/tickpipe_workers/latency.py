"""Receive-to-commit latency as a mergeable histogram: measured by the worker, needing no server setting.

After a batch commits, the worker records how long ago each (sampled) tick was read from the broker's
socket (`receive_time`, the same machine's clock when ingestion and workers share a host). Buckets are
fixed, so histograms of several workers or intervals add up exactly.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

# Upper bounds in milliseconds; the last bucket is everything above.
BOUNDS_MS = (1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200, 300, 500, 700, 1000, 1500, 2000, 3000, 5000)
SAMPLE_EVERY = 8  # one tick in 8: enough for percentiles, cheap per batch


class LatencyHistogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(BOUNDS_MS) + 1)
        self.max_ms = 0.0
        self.sum_ms = 0.0

    def record_batch(self, receive_times: Iterable[datetime], committed: float | None = None) -> None:
        now = time.time() if committed is None else committed
        for ts in receive_times:
            ms = (now - ts.timestamp()) * 1000
            self.counts[bisect.bisect_left(BOUNDS_MS, ms)] += 1
            self.max_ms = max(self.max_ms, ms)
            self.sum_ms += ms

    def add(self, other: LatencyHistogram) -> None:
        """Fold another histogram (a finished interval) into this one."""
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.max_ms = max(self.max_ms, other.max_ms)
        self.sum_ms += other.sum_ms

    @property
    def total(self) -> int:
        return sum(self.counts)

    def percentile(self, p: float) -> float | None:
        """The bucket bound under which p percent of the samples lie (None when empty)."""
        return percentile(self.counts, p, self.max_ms)

    def summary(self) -> dict[str, float | int | None]:
        return {
            "latency_samples": self.total,
            "receive_to_commit_p50_ms": self.percentile(50),
            "receive_to_commit_p99_ms": self.percentile(99),
            "receive_to_commit_max_ms": round(self.max_ms, 1),
        }

    def as_dict(self) -> dict[str, object]:
        return {"bounds_ms": list(BOUNDS_MS), "counts": self.counts, "max_ms": round(self.max_ms, 1)}


def percentile(counts: list[int], p: float, max_ms: float) -> float | None:
    total = sum(counts)
    if not total:
        return None
    target, seen = p / 100 * total, 0
    for i, n in enumerate(counts):
        seen += n
        if seen >= target:
            return min(float(BOUNDS_MS[i]), max_ms) if i < len(BOUNDS_MS) else max_ms
    return max_ms


def merge(histograms: Iterable[Mapping[str, Any]]) -> tuple[list[int], float]:
    """Add up `as_dict()` histograms (from several workers' logs)."""
    counts = [0] * (len(BOUNDS_MS) + 1)
    max_ms = 0.0
    for h in histograms:
        for i, n in enumerate(h["counts"]):
            counts[i] += int(n)
        max_ms = max(max_ms, float(h["max_ms"]))
    return counts, max_ms
