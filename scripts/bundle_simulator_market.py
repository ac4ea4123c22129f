"""Cut the simulator's bundled market out of the real instrument masters in ../shared/data.

Run once when the slice should change; its output is committed under
services/simulator/src/tickpipe_simulator/market_data/ with README.md giving the provenance.
Usage: python scripts/bundle_simulator_market.py [SHARED_DATA_DIR]
"""

from __future__ import annotations

import csv
import gzip
import sys
from pathlib import Path

SHARED = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "data")
OUT = Path(__file__).resolve().parents[1] / "services/simulator/src/tickpipe_simulator/market_data"
STOCKS = {"INFY", "RELIANCE", "HDFCBANK", "TCS", "SBIN", "ICICIBANK"}
STRIKES = {f"{k}" for k in range(25000, 26001, 100)}  # NIFTY ATM 25500 +-5 strikes


def dhan() -> None:
    with gzip.open(SHARED / "dhan/api-scrip-master-2026-02.csv.gz", "rt", newline="") as f:
        rows = list(csv.reader(f))
    header, keep = rows[0], []
    for r in rows[1:]:
        exch, seg, inst, symbol, expiry = r[0], r[1], r[3], r[5], r[8]
        if exch != "NSE":
            continue
        if (
            (seg == "I" and symbol in {"NIFTY", "BANKNIFTY"})
            or (seg == "E" and r[14] == "EQ" and symbol in STOCKS)
            or (inst == "FUTIDX" and symbol in {"NIFTY-Feb2026-FUT", "NIFTY-Mar2026-FUT", "BANKNIFTY-Feb2026-FUT"})
        ):
            keep.append(r)
        elif inst == "OPTIDX" and expiry.startswith("2026-02-10") and symbol.startswith("NIFTY-Feb2026-"):
            keep += [r] if symbol.split("-")[2] in STRIKES else []
    _write(OUT / "dhan-master.csv", header, keep)


def kite() -> None:
    with (SHARED / "kite/instruments-nse.csv").open(newline="") as f:
        nse = list(csv.reader(f))
    with (SHARED / "kite/instruments-nfo-bfo.csv").open(newline="") as f:
        nfo = list(csv.reader(f))
    header, keep = nse[0], []
    for r in nse[1:]:
        if (r[10] == "INDICES" and r[2] in {"NIFTY 50", "NIFTY BANK"}) or (r[10] == "NSE" and r[2] in STOCKS):
            keep.append(r)
    for r in nfo[1:]:
        if (r[9] == "FUT" and r[2] in {"NIFTY26AUGFUT", "NIFTY26SEPFUT", "BANKNIFTY26AUGFUT"}) or (
            r[3] == "NIFTY" and r[5] == "2026-08-18" and r[9] in {"CE", "PE"} and r[6].split(".")[0] in STRIKES
        ):
            keep.append(r)
    _write(OUT / "kite-master.csv", header, keep)


def _write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows([header, *rows])
    print(f"{path.name}: {len(rows)} instruments")


if __name__ == "__main__":
    dhan()
    kite()
