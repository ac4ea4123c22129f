"""`tickpipe bench`: measure the whole pipeline on this machine."""

from __future__ import annotations

import json
from pathlib import Path

import click

from tickpipe.cli.common import reads
from tickpipe_core.settings import AmqpSettings, DatabaseSettings, load


@click.command()
@click.option("--ticks", type=click.IntRange(100), default=100_000, show_default=True, help="Numbered ticks to send.")
@click.option("--rate", type=click.FloatRange(min=1), default=None, help="Ticks per second (default: flat out).")
@click.option(
    "--workers", type=click.IntRange(1, 16), default=2, show_default=True, help="Worker processes (as tickpipe run)."
)
@click.option("--instruments", type=click.IntRange(1, 5000), default=500, show_default=True)
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=1), default=600, show_default=True)
@click.option(
    "--report", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write the report (JSON)."
)
@click.option(
    "--plot", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Draw throughput and latency."
)
@reads(DatabaseSettings, AmqpSettings)
def bench(
    ticks: int,
    rate: float | None,
    workers: int,
    instruments: int,
    timeout_s: float,
    report: Path | None,
    plot: Path | None,
) -> None:
    """Run the pipeline on numbered ticks from a feed server of its own and measure it.

    Ingestion and workers are real processes; the database and queues are scratch ones on
    DATABASE_URL's server and AMQP_URL's broker, removed afterwards. Prints sustained ticks/s, the
    same rows' server-side COPY (the ceiling) and the ratio, receive-to-commit p50/p95/p99/max, CPU
    seconds and peak RSS per process, and exactly-once (stored = sent, none twice). Where PostgreSQL
    and RabbitMQ run on this machine, also their CPU, and the CPU a tick cost each part.
    """
    try:
        from tickpipe_bench import pipeline as measure
    except ImportError:
        raise click.ClickException(
            "tickpipe bench needs the benchmarks, which a checkout's development install has (uv sync --all-packages)"
        ) from None

    found = measure.run(
        load(DatabaseSettings).database_url, load(AmqpSettings).amqp_url, ticks, rate, workers, instruments, timeout_s
    )
    if report is not None:
        report.write_text(json.dumps(found, indent=2))
    if plot is not None:
        measure.plot(found, plot)
    latency = found["receive_to_commit_ms"]
    rate_label = measure.rate_label(found["rate"])
    click.echo(f"sent {found['ticks_sent']:,} {rate_label}, {workers} worker(s); stored {found['stored']:,}")
    click.echo(f"exactly once       {'yes' if found['exactly_once'] else 'NO'} ({found['duplicates']} duplicates)")
    click.echo(
        f"enriched           {found['with_instrument_id']:,} rows with an instrument id, "
        f"{found['with_change']:,} with a change (their master synced, their previous close sent)"
    )
    click.echo(
        f"sustained          {found['sustained_ticks_per_s'] or 0:,} ticks/s = {found['ratio_to_copy'] or 0:.2f} "
        f"of a server-side COPY ({found['copy_ceiling_ticks_per_s']:,} rows/s, same rows, same run)"
    )
    click.echo(
        f"                   (into an identical hypertable; {found['copy_unindexed_ticks_per_s']:,} rows/s "
        "without its primary key and indexes)"
    )
    click.echo(
        f"receive to commit  p50 {latency['p50']} ms, p95 {latency['p95']} ms, p99 {latency['p99']} ms, "
        f"max {latency['max']} ms ({latency['samples']:,} samples)"
    )
    for name, p in found["processes"].items():
        click.echo(
            f"{name:<18} {p['cpu_s']:>7.2f} CPU s ({p['cpu_s_with_ticks']:.2f} with ticks flowing), "
            f"peak RSS {p['peak_rss_mb']:.0f} MB"
        )
    click.echo(f"{'feed server':<18} {found['feed_server_cpu_s']:>7.2f} CPU s (this bench's own, on this machine)")
    for name, key, what in (
        ("PostgreSQL", "postgresql_cpu_s", "the scratch database's connections; WAL writer, checkpointer, bgwriter"),
        ("RabbitMQ", "rabbitmq_cpu_s", "its node on this machine, whatever else it carried"),
    ):
        spent = found[key]
        click.echo(
            f"{name:<18} {spent:>7.2f} CPU s ({what})" if spent is not None else f"{name:<18} not on this machine"
        )
    budget = found["cpu_budget"]
    parts = ", ".join(f"{name} {us:,.1f}" for name, us in budget["us_per_tick"].items())
    click.echo(
        f"CPU a tick         {budget['total_us_per_tick']:,.1f} us ({parts}); "
        f"while ticks flowed, {budget['busy_share']:.0%} of {budget['cores']} cores were busy"
    )
    if not found["exactly_once"]:
        raise SystemExit(1)
