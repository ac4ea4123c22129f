"""Load a parsed master into `instruments` in one transaction: COPY to staging, then upsert.

Readers never see half a sync. Per broker, a listing is matched by that broker's id first, then
(for a contract the other broker's master created) by exchange + exchange token, so that one
contract is one instrument carrying both ids. The master that created a row owns its common
fields (symbol, name, expiry, lot and tick size...); the other master only fills what is empty.
Listings missing from the new master are marked unlisted for that broker, never deleted; an
instrument no broker lists is inactive. A dry run does all of it and rolls back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from tickpipe_brokers import adapter
from tickpipe_brokers.adapter import InstrumentIds
from tickpipe_brokers.master import InstrumentRow, ParsedMaster
from tickpipe_core.errors import StorageError, SyncError
from tickpipe_core.logging import get_logger

log = get_logger("instruments.sync")

_STAGE = sql.Identifier("instrument_stage")
_COMMON = (
    "exchange",
    "segment",
    "exchange_token",
    "trading_symbol",
    "name",
    "underlying",
    "instrument_type",
    "expiry",
    "strike",
    "option_type",
    "lot_size",
    "tick_size",
)
_STAGE_COLUMNS = """
    exchange text not null, segment text not null, exchange_token bigint, trading_symbol text not null,
    name text, underlying text not null, instrument_type text not null, expiry date, strike numeric,
    option_type text, lot_size numeric not null, tick_size numeric not null,
    broker_segment text not null, broker_id bigint not null, kite_exchange_token bigint
"""


@dataclass
class SyncReport:
    source: str
    rows: int
    added: int = 0
    changed: int = 0
    merged: int = 0
    """Listings joined to an instrument the other broker's master created."""
    deactivated: int = 0
    """Listings this master no longer has (the instrument stays, marked unlisted)."""
    conflicts: int = 0
    """Listings whose exchange token another listing of this broker already holds: not loaded."""
    samples: dict[str, list[str]] = field(default_factory=dict)
    dry_run: bool = False

    def summary(self) -> str:
        verb = "would change" if self.dry_run else "synced"
        return (
            f"{self.source}: {verb} {self.rows} rows: {self.added} added, {self.changed} changed, "
            f"{self.merged} merged with the other broker, {self.deactivated} deactivated, "
            f"{self.conflicts} conflicts, {self.rows - self.added - self.changed - self.merged - self.conflicts}"
            " unchanged"
        )


_SAMPLE = 20


def sync_instruments(
    database_url: str,
    master: ParsedMaster,
    *,
    dry_run: bool = False,
    max_deactivate: float = 0.5,
    partial: bool = False,
    progress: Callable[[int], None] | None = None,
) -> SyncReport:
    """Apply the master in one transaction (rolled back when `dry_run`); returns what changed.

    A master that would unlist more than `max_deactivate` of this broker's listings (a truncated
    download, the wrong file) is refused with nothing written. A `partial` master (a slice, such as
    the simulator's bundled market) adds and updates its rows and unlists nothing.
    """
    if not master.rows:
        raise SyncError(f"{master.format} master has no valid rows; refusing to unlist every instrument")
    broker = adapter(master.source).ids
    report = SyncReport(master.source, len(master.rows), dry_run=dry_run)
    try:
        with psycopg.connect(database_url) as conn:
            listed = _count(
                conn, sql.SQL("select count(*) from instruments where {}").format(sql.Identifier(broker.listed))
            )
            _stage(conn, master.rows, progress)
            _apply(conn, master.source, broker, report, unlist_missing=not partial)
            if listed and report.deactivated > max_deactivate * listed:
                raise SyncError(
                    f"this {master.format} master would unlist {report.deactivated} of {listed} {master.source}"
                    f" listings (more than {max_deactivate:.0%}); nothing was written. If that is right, raise"
                    " the limit (--max-deactivate)"
                )
            if dry_run:
                conn.rollback()
    except psycopg.Error as e:
        raise StorageError(f"instrument sync failed: {type(e).__name__}: {e}") from e
    log.info("instruments_synced", **{k: v for k, v in vars(report).items() if k != "samples"})
    return report


def _stage(conn: psycopg.Connection, rows: list[InstrumentRow], progress: Callable[[int], None] | None) -> None:
    conn.execute(sql.SQL("create temp table {} ({}) on commit drop").format(_STAGE, sql.SQL(_STAGE_COLUMNS)))
    with conn.cursor().copy(sql.SQL("copy {} from stdin").format(_STAGE)) as copy:
        for i, row in enumerate(rows, 1):
            copy.write_row(row)
            if progress is not None and i % 5000 == 0:
                progress(5000)
    if progress is not None:
        progress(len(rows) % 5000)
    conn.execute(sql.SQL("analyze {}").format(_STAGE))


def _apply(
    conn: psycopg.Connection, source: str, broker: InstrumentIds, report: SyncReport, *, unlist_missing: bool
) -> None:
    i, s = sql.Identifier("i"), sql.Identifier("s")
    key_match = sql.SQL(" and ").join(
        sql.SQL("{}.{} = {}.{}").format(i, sql.Identifier(a), s, sql.Identifier(b))
        for a, b in zip(broker.key, broker.stage_key, strict=True)
    )
    # Common fields: the creating master's values win; the other master fills what is empty.
    common = {
        c: sql.SQL("case when i.source = {src} or i.{c} is null then s.{c} else i.{c} end").format(
            src=sql.Literal(source), c=sql.Identifier(c)
        )
        for c in _COMMON
    }
    own = {c: sql.SQL("s.{}").format(sql.Identifier(e)) for c, e in broker.own.items()}
    values = {**common, **own, broker.listed: sql.SQL("true")}
    assignments = sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(c), v) for c, v in values.items())
    old = sql.SQL(", ").join(sql.SQL("i.{}").format(sql.Identifier(c)) for c in values)
    new = sql.SQL(", ").join(values.values())
    label = sql.SQL("i.exchange || ':' || i.trading_symbol")

    def run(query: sql.Composed) -> list[str]:
        return [r[0] for r in conn.execute(query).fetchall()]

    # 1. Listings this broker already had: update where anything differs.
    changed = run(
        sql.SQL(
            "update instruments i set {assign}, updated_at = now() from {stage} s"
            " where {key} and ({old}) is distinct from ({new}) returning {label}"
        ).format(assign=assignments, stage=_STAGE, key=key_match, old=old, new=new, label=label)
    )
    # 2. The other broker's instrument for the same contract: attach this broker's listing to it.
    first_key = sql.Identifier(broker.key[0])
    merged = run(
        sql.SQL(
            "update instruments i set {assign}, updated_at = now() from {stage} s"
            " where i.{first_key} is null and s.exchange_token is not null and i.exchange = s.exchange"
            " and i.segment = s.segment and i.exchange_token = s.exchange_token returning {label}"
        ).format(assign=assignments, stage=_STAGE, first_key=first_key, label=label)
    )
    # 3. New contracts.
    columns = [*_COMMON, *broker.own, broker.listed, "source"]
    selected = [
        *(sql.SQL("s.{}").format(sql.Identifier(c)) for c in _COMMON),
        *own.values(),
        sql.SQL("true"),
        sql.Literal(source),
    ]
    added = run(
        sql.SQL(
            "insert into instruments as i ({cols}) select {sel} from {stage} s"
            " where not exists (select 1 from instruments i where {key})"
            " on conflict (exchange, segment, exchange_token) do nothing returning {label}"
        ).format(
            cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
            sel=sql.SQL(", ").join(selected),
            stage=_STAGE,
            key=key_match,
            label=label,
        )
    )
    # 4. Listings the master no longer has.
    deactivated = (
        run(
            sql.SQL(
                "update instruments i set {listed} = false, updated_at = now() where i.{listed} and i.{first_key}"
                " is not null and not exists (select 1 from {stage} s where {key}) returning {label}"
            ).format(
                listed=sql.Identifier(broker.listed), first_key=first_key, stage=_STAGE, key=key_match, label=label
            )
        )
        if unlist_missing
        else []
    )
    report.changed, report.merged, report.added, report.deactivated = (
        len(changed),
        len(merged),
        len(added),
        len(deactivated),
    )
    report.conflicts = report.rows - _matched(conn, key_match)
    report.samples = {
        "added": added[:_SAMPLE],
        "changed": changed[:_SAMPLE],
        "merged": merged[:_SAMPLE],
        "deactivated": deactivated[:_SAMPLE],
    }


def _matched(conn: psycopg.Connection, key_match: sql.Composed) -> int:
    """Staging rows that now have their listing in instruments (all but the conflicts)."""
    return _count(
        conn,
        sql.SQL("select count(*) from {} s where exists (select 1 from instruments i where {})").format(
            _STAGE, key_match
        ),
    )


def _count(conn: psycopg.Connection, query: sql.Composed) -> int:
    row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0
