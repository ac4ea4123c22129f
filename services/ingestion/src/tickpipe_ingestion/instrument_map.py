"""Broker id -> our instrument id, for every tick, whichever broker it came from.

The map is loaded from `instruments` at start and reloaded on a schedule and on demand (SIGHUP),
in a thread, and swapped in whole: the tick builder keeps reading while it loads. A broker id the
map does not know is logged once per load; the builder counts such ticks and applies the
INSTRUMENTS_UNKNOWN policy.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Hashable

import psycopg
from psycopg import sql

from tickpipe_brokers import adapter
from tickpipe_core import get_logger
from tickpipe_core.settings import redact_url

log = get_logger("instruments.map")


class InstrumentMap:
    """The broker-id -> instrument-id map of one source (its adapter says which columns hold its ids)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._columns = adapter(source).ids.key
        self._ids: dict[Hashable, int] = {}
        self._seen_unknown: set[Hashable] = set()
        self.loads = 0

    def __len__(self) -> int:
        return len(self._ids)

    def get(self, key: Hashable, /) -> int | None:
        instrument_id = self._ids.get(key)
        if instrument_id is None and key not in self._seen_unknown:
            self._seen_unknown.add(key)
            log.warning("unknown_instrument", source=self.source, broker_id=str(key))
        return instrument_id

    def replace(self, ids: dict[Hashable, int]) -> None:
        """Swap in a new map; an id that was unknown before is logged again if it is still unknown."""
        self._ids = ids
        self._seen_unknown = set()

    def load(self, database_url: str) -> None:
        """Read the map from the database (blocking: call it in a thread)."""
        columns = self._columns
        query = sql.SQL("select {cols}, instrument_id from instruments where {first} is not null").format(
            cols=sql.SQL(", ").join(map(sql.Identifier, columns)), first=sql.Identifier(columns[0])
        )
        with psycopg.connect(database_url, connect_timeout=10) as conn:
            rows = conn.execute(query).fetchall()
        ids: dict[Hashable, int] = (
            {(r[0], r[1]): r[2] for r in rows} if len(columns) == 2 else {r[0]: r[1] for r in rows}
        )
        self.replace(ids)
        self.loads += 1
        log.info("instrument_map_loaded", source=self.source, instruments=len(ids))

    async def reload(self, database_url: str) -> bool:
        """Load in a thread; on failure log it, keep the old map and return False."""
        try:
            await asyncio.to_thread(self.load, database_url)
            return True
        except psycopg.Error as e:
            log.error(
                "instrument_map_load_failed",
                database=redact_url(database_url),
                error=f"{type(e).__name__}: {e}",
                kept=len(self),
            )
            return False

    async def keep_fresh(self, database_url: str, every_s: float, now: asyncio.Event) -> None:
        """Reload every `every_s` seconds, or at once when `now` is set."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(now.wait(), every_s)
            now.clear()
            await self.reload(database_url)
