"""Benchmark: syncing the full Dhan compact master (273k rows) vs a plain COPY of the same file.

Prints the wall time of parsing and of each sync phase, the total against the 15 s goal, peak
memory, and the ratio to the baseline: the same CSV bytes COPY'd into a text table by the server,
measured in the same run (the floor any loader of this file pays on this machine).

    uv run python -m tickpipe_bench.sync [--file tests/data/dhan/api-scrip-master-2026-02.csv.gz]
"""

from __future__ import annotations

import argparse
import gzip
import resource
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

from tickpipe_core.db import with_database
from tickpipe_core.logging import configure_logging
from tickpipe_core.migrate import migrate
from tickpipe_instruments import open_master, parse_master, sync_instruments

ROOT = Path(__file__).resolve().parents[2]


def baseline_copy(url: str, path: Path) -> float:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    header = data.split(b"\n", 1)[0].decode().split(",")
    with psycopg.connect(url) as conn:
        columns = sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(c)) for c in header)
        conn.execute(sql.SQL("create temp table raw_master ({})").format(columns))
        start = time.perf_counter()
        with conn.cursor().copy("copy raw_master from stdin (format csv, header true)") as copy:
            copy.write(data)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", type=Path, default=ROOT / "tests/data/dhan/api-scrip-master-2026-02.csv.gz")
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    configure_logging("WARNING", "console")
    name = f"tickpipe_bench_sync_{uuid.uuid4().hex[:8]}"
    url = with_database(args.server, name)
    migrate(url)
    try:
        start = time.perf_counter()
        with args.file.open("rb") as raw, open_master(raw) as text:
            master = parse_master("dhan", text)
        parsed = time.perf_counter()
        first = sync_instruments(url, master)
        synced = time.perf_counter()
        second = sync_instruments(url, master)
        again = time.perf_counter()
        base = baseline_copy(url, args.file)
    finally:
        with psycopg.connect(args.server, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
    total = synced - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"rows {len(master.rows):,} (bad {len(master.bad)}), added {first.added:,}")
    print(f"parse {parsed - start:.2f} s + first sync {synced - parsed:.2f} s = {total:.2f} s (goal < 15 s)")
    print(f"second, identical sync {again - synced:.2f} s ({second.changed} changed, {second.added} added)")
    print(f"baseline: server COPY of the raw CSV {base:.2f} s; sync/baseline ratio {total / base:.1f}x")
    print(f"peak memory (RSS) {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
