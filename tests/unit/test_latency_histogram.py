"""The workers' receive-to-commit histogram: buckets, percentiles, and merging several workers' exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tickpipe_workers.latency import LatencyHistogram, merge, percentile


def test_percentiles_are_bucket_bounds_and_histograms_merge_exactly() -> None:
    committed = datetime(2026, 3, 9, 4, 0, tzinfo=UTC)
    first, second = LatencyHistogram(), LatencyHistogram()
    first.record_batch([committed - timedelta(milliseconds=ms) for ms in (0.5, 4, 4, 8)], committed.timestamp())
    second.record_batch([committed - timedelta(milliseconds=ms) for ms in (40, 120, 9000)], committed.timestamp())
    assert first.total == 4 and first.percentile(50) == 5.0  # the 2nd of 4 samples, 4 ms, lies in (3, 5]
    assert first.percentile(100) == pytest.approx(8.0, abs=0.01)  # a bucket bound is capped at the maximum seen
    counts, max_ms = merge([first.as_dict(), second.as_dict()])
    assert sum(counts) == 7 and round(max_ms) == 9000
    assert percentile(counts, 50, max_ms) == 10.0  # the 4th of 7 samples, 8 ms, lies in (7, 10]
    assert percentile(counts, 99, max_ms) == 9000.0  # above the last bound: the maximum itself
    assert LatencyHistogram().percentile(50) is None
