"""Candlestick charts with volume bars, drawn with matplotlib (headless: the Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import matplotlib.dates as mdates
import matplotlib.pyplot as plt

from tickpipe_core.india import IST

UP, DOWN = "#26a69a", "#ef5350"


def plot_candles(rows: Sequence[dict[str, Any]], title: str, path: Path) -> None:
    """Write a candlestick chart (India time) with a volume panel to `path` (PNG, SVG or PDF by suffix)."""
    fig, (price, volume) = plt.subplots(
        2, 1, sharex=True, figsize=(12, 6), gridspec_kw={"height_ratios": [3, 1]}, layout="constrained"
    )
    times = [mdates.date2num(r["time"].astimezone(IST).replace(tzinfo=None)) for r in rows]  # type: ignore[no-untyped-call]
    width = (times[1] - times[0]) * 0.7 if len(times) > 1 else 0.0005
    for t, r in zip(times, rows, strict=True):
        color = UP if r["close"] >= r["open"] else DOWN
        price.vlines(t, r["low"], r["high"], color=color, linewidth=1)
        body = abs(r["close"] - r["open"]) or (r["high"] - r["low"]) * 0.01 or 0.01
        price.bar(t, body, width, bottom=min(r["open"], r["close"]), color=color)
        volume.bar(t, r["volume"] or 0, width, color=color)
    price.set_title(title)
    price.set_ylabel("price")
    volume.set_ylabel("volume")
    volume.xaxis.set_major_formatter(mdates.DateFormatter("%d %b %H:%M"))  # type: ignore[no-untyped-call]
    fig.autofmt_xdate()
    fig.savefig(path, dpi=110)
    plt.close(fig)
