"""`tickpipe spool`: what an ingestion's durable spool holds, and publishing it without a feed."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from tickpipe.cli.common import reads, run_async
from tickpipe_core import Topology
from tickpipe_core.settings import AmqpSettings, IngestSettings, load


@click.group()
def spool() -> None:
    """The durable spool (INGEST_SPOOL_DIR): every tick ingestion read that RabbitMQ has not confirmed yet."""


@spool.command()
@reads(IngestSettings)
def status() -> None:
    """What the spool holds (read only: ingestion may be running on it)."""
    from tickpipe_ingestion.publisher import EVENTS_DIR
    from tickpipe_ingestion.spool import inspect

    settings = load(IngestSettings)
    found = inspect(settings.spool_dir)
    click.echo(f"spool      {settings.spool_dir}")
    click.echo(f"ticks      {found.ticks:,} in {found.records:,} records, {found.segments} segment file(s)")
    click.echo(f"size       {found.bytes / 2**20:,.1f} MiB of {settings.spool_max_bytes / 2**20:,.0f} MiB")
    if found.torn or found.skipped_bytes:
        click.echo(
            f"damaged    {found.torn:,} record(s), {found.skipped_bytes:,} bytes, about {found.lost_ticks:,} tick(s):"
            " unreadable, skipped at the next start (the good records around them are kept)"
        )
    events = inspect(settings.spool_dir / EVENTS_DIR)
    if events.ticks or events.torn:
        click.echo(f"orders     {events.ticks:,} order update(s) unconfirmed, in {settings.spool_dir / EVENTS_DIR}")
    _quarantine_lines(settings.spool_dir)


def _quarantine_lines(directory: Path) -> int:
    """Say what quarantine/ holds; how many files."""
    from tickpipe_ingestion.spool import QUARANTINE, quarantined

    files = quarantined(directory)
    if files:
        size = sum(f.stat().st_size for f in files)
        click.echo(
            f"quarantine {len(files)} damaged segment file(s), {size / 2**20:,.1f} MiB, in {directory / QUARANTINE}:"
            " kept as they were; their unreadable ticks are lost (repair the gap from the broker's history)"
        )
    return len(files)


@spool.command()
@reads(AmqpSettings, IngestSettings)
def drain() -> None:
    """Publish everything in the spool to RabbitMQ and exit (ingestion must not be running on it).

    Ingestion does this by itself at every start; use it to empty the spool of a host that will not
    run ingestion again. Exits 1 when ticks are left, or when quarantine/ holds damaged segments.
    """
    from tickpipe_ingestion.drain import drain_spool

    amqp, settings = load(AmqpSettings), load(IngestSettings)
    left: list[int] = []

    async def main(stop: asyncio.Event) -> None:
        left.append(await drain_spool(amqp.amqp_url, Topology(amqp.amqp_prefix), settings, stop))

    run_async(main)
    click.echo(f"{left[0]:,} tick(s) left in the spool" if left and left[0] else "the spool is empty", err=True)
    damaged = _quarantine_lines(settings.spool_dir)
    sys.exit(1 if (left and left[0]) or damaged else 0)
