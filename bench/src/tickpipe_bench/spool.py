"""Benchmark: what the durable spool costs ingestion, per fsync policy.

Ingestion's submit path is: encode a frame's ticks once, append them to the spool as one record.
This times that path for real Dhan full ticks, four to a frame (as the simulator sends them), with
INGEST_SPOOL_FSYNC = never, interval (1 s, in a thread) and segment, against encoding alone in the
same run, on the spool directory's own disk. Each policy runs `--repeats` times; prints the median
ticks/s, the spread (min-max) and the ratio to encoding alone.

    uv run python -m tickpipe_bench.spool --ticks 400000 --dir /var/lib/tickpipe
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from tickpipe_brokers.dhan.encode import encode_full
from tickpipe_brokers.dhan.parse import DhanDecoder
from tickpipe_core import Tick, encode_ticks
from tickpipe_ingestion.spool import FsyncPolicy, Spool
from tickpipe_simulator.market import make_instruments


def frames_of_ticks(count: int) -> list[list[Tick]]:
    decoder, now = DhanDecoder(), datetime.now(UTC)
    instruments = make_instruments(200, seed=1)
    ltt = int(now.timestamp()) + 19800
    ticks = [t for i in range(count) for t in decoder.decode(encode_full(instruments[i % 200].step(), ltt), now).ticks]
    return [ticks[i : i + 4] for i in range(0, len(ticks), 4)]


def encode_only(frames: list[list[Tick]]) -> float:
    start = time.perf_counter()
    for ticks in frames:
        encode_ticks(ticks)
    return time.perf_counter() - start


def spooled(frames: list[list[Tick]], policy: FsyncPolicy, base: Path) -> float:
    directory = Path(tempfile.mkdtemp(dir=base))
    spool = Spool(directory, max_bytes=1 << 40, fsync=policy)
    spool.open()

    async def run() -> float:
        syncer = None
        if policy == "interval":

            async def every_second() -> None:
                while True:
                    await asyncio.sleep(1.0)
                    await spool.sync_in_background()

            syncer = asyncio.create_task(every_second())
        start = time.perf_counter()
        for n, ticks in enumerate(frames):
            spool.append(encode_ticks(ticks), len(ticks))
            if n % 256 == 0:
                await asyncio.sleep(0)  # the feed's loop turns: the interval sync gets its turn
        elapsed = time.perf_counter() - start
        if syncer is not None:
            syncer.cancel()
        return elapsed

    try:
        return asyncio.run(run())
    finally:
        spool.close()
        shutil.rmtree(directory, ignore_errors=True)


def summary(name: str, ticks: int, times: list[float], base: list[float] | None) -> None:
    rates = sorted(ticks / t for t in times)
    line = f"{name:<22} {statistics.median(rates):>12,.0f} ticks/s  (spread {rates[0]:,.0f}-{rates[-1]:,.0f})"
    if base is not None:
        ratios = sorted(b / t for b, t in zip(base, times, strict=True))
        line += f"  {statistics.median(ratios):.2f}x of encoding alone (spread {ratios[0]:.2f}-{ratios[-1]:.2f})"
    print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ticks", type=int, default=400_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()), help="where the spool goes")
    args = parser.parse_args()
    frames = frames_of_ticks(args.ticks)
    ticks = sum(len(f) for f in frames)
    print(f"{ticks:,} Dhan full ticks, 4 to a record, spool in {args.dir}; median of {args.repeats} runs")
    runs: dict[str, Callable[[], float]] = {
        "encode only": lambda: encode_only(frames),
        "spool, fsync never": lambda: spooled(frames, "never", args.dir),
        "spool, fsync interval": lambda: spooled(frames, "interval", args.dir),
        "spool, fsync segment": lambda: spooled(frames, "segment", args.dir),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):  # interleaved, so that the machine's noise touches each alike
        for name, run in runs.items():
            times[name].append(run())
    for name in runs:
        summary(name, ticks, times[name], None if name == "encode only" else times["encode only"])


if __name__ == "__main__":
    main()
