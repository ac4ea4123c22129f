"""`tickpipe status`: the pipeline at a glance."""

from __future__ import annotations

import json
import time

import click

from tickpipe.cli.common import reads
from tickpipe_core import Topology
from tickpipe_core.settings import AmqpSettings, DatabaseSettings, IngestSettings, MetricsSettings, load


@click.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--watch", type=click.FloatRange(min=1), default=None, metavar="SECONDS", help="Refresh every SECONDS.")
@click.option(
    "--min-gap", type=click.FloatRange(min=0.1), default=30.0, show_default=True, help="Silences shorter are no gap."
)
@reads(DatabaseSettings, AmqpSettings, IngestSettings, MetricsSettings)
def status(fmt: str, watch: float | None, min_gap: float) -> None:
    """Feeds and connections, ticks/s read and stored, queues and consumers, lag, spool, the last gaps,
    database size and chunks. With METRICS_PORT, ingestion's own rate (read from its /metrics).
    """
    from tickpipe.status import collect, render

    db, amqp = load(DatabaseSettings), load(AmqpSettings)
    spool_dir, port = load(IngestSettings).spool_dir, load(MetricsSettings).metrics_port
    while True:
        found = collect(db.database_url, amqp.amqp_url, Topology(amqp.amqp_prefix), spool_dir, port, min_gap)
        text = json.dumps(found, indent=2) if fmt == "json" else render(found)
        if watch is None:
            click.echo(text)
            return
        click.clear()
        click.echo(text)
        time.sleep(watch)
