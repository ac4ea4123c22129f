"""`tickpipe spool`: what an ingestion's durable spool holds, and publishing it without a feed."""

from __future__ import annotations

import asyncio
import sys

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
    from tickpipe_ingestion.spool import inspect

    settings = load(IngestSettings)
    found = inspect(settings.spool_dir)
    click.echo(f"spool      {settings.spool_dir}")
    click.echo(f"ticks      {found.ticks:,} in {found.records:,} records, {found.segments} segment file(s)")
    click.echo(f"size       {found.bytes / 2**20:,.1f} MiB of {settings.spool_max_bytes / 2**20:,.0f} MiB")
    if found.torn:
        click.echo(f"torn       {found.torn} record(s) cut short by a crash: skipped at the next start")


@spool.command()
@reads(AmqpSettings, IngestSettings)
def drain() -> None:
    """Publish everything in the spool to RabbitMQ and exit (ingestion must not be running on it).

    Ingestion does this by itself at every start; use it to empty the spool of a host that will not
    run ingestion again.
    """
    from tickpipe_ingestion.drain import drain_spool

    amqp, settings = load(AmqpSettings), load(IngestSettings)
    left: list[int] = []

    async def main(stop: asyncio.Event) -> None:
        left.append(await drain_spool(amqp.amqp_url, Topology(amqp.amqp_prefix), settings, stop))

    run_async(main)
    click.echo(f"{left[0]:,} tick(s) left in the spool" if left and left[0] else "the spool is empty", err=True)
    sys.exit(1 if left and left[0] else 0)
