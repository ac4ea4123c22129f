#!/usr/bin/env python3
"""Download and sync the brokers' instrument masters: the job a deployment runs once a day.

    python scripts/sync_instruments.py [dhan] [kite]        (default: both)

Each master is fetched with a conditional GET (unchanged masters are not downloaded again) and
synced in one transaction. The exit status is non-zero when any source failed. Settings:
DATABASE_URL, INSTRUMENTS_DHAN_URL, INSTRUMENTS_KITE_URL, INSTRUMENTS_CACHE_DIR.
"""

from __future__ import annotations

import sys

from tickpipe.cli import main


def sync_all(sources: list[str]) -> int:
    failed = 0
    for source in sources:
        try:
            main(["instruments", "sync", "--source", source, "--download"])
        except SystemExit as e:
            failed += e.code not in (0, None)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(sync_all(sys.argv[1:] or ["dhan", "kite"]))
