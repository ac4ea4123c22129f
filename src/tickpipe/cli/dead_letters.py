"""`tickpipe dead-letters`: what the workers set aside and why; send it back or drop it."""

from __future__ import annotations

import asyncio
import json

import click
import msgspec

from tickpipe.cli.common import reads
from tickpipe_core import Topology
from tickpipe_core.settings import AmqpSettings, load


def _topology() -> tuple[str, Topology]:
    amqp = load(AmqpSettings)
    return amqp.amqp_url, Topology(amqp.amqp_prefix)


@click.group("dead-letters")
def dead_letters() -> None:
    """The dead-letter queue (PREFIX.ticks.dead): messages and ticks the workers could not store, with the reason."""


@dead_letters.command("list")
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@reads(AmqpSettings)
def list_(limit: int, fmt: str) -> None:
    """The first dead letters with their reasons (the queue is left as it was)."""
    from tickpipe_workers.dead_letters import peek

    url, topology = _topology()
    total, letters = asyncio.run(peek(url, topology, limit))
    if fmt == "json":
        click.echo(json.dumps({"total": total, "letters": [d.summary() for d in letters]}, indent=2))
        return
    click.echo(f"{total} dead letter(s) in {topology.dead_queue}")
    for d in letters:
        what = f"{len(d.ticks)} tick(s)" if d.ticks else "undecodable"
        click.echo(f"{d.position:>4}  {what:<14} {d.size:>8} B  {d.reason}")


@dead_letters.command()
@click.argument("position", type=click.IntRange(1))
@reads(AmqpSettings)
def show(position: int) -> None:
    """One dead letter in full: its reason, headers and ticks (JSON)."""
    from tickpipe_workers.dead_letters import peek

    url, topology = _topology()
    total, letters = asyncio.run(peek(url, topology, position))
    if position > len(letters):
        raise click.ClickException(f"there are {total} dead letter(s); no {position}")
    d = letters[-1]
    out = {
        **d.summary(),
        "headers": {k: v.decode(errors="replace") if isinstance(v, bytes) else v for k, v in d.headers.items()},
        "ticks": msgspec.to_builtins([msgspec.structs.asdict(t) for t in d.ticks]) if d.ticks is not None else None,
        "body_hex": None if d.ticks is not None else d.body[:512].hex(),
    }
    click.echo(json.dumps(out, indent=2, default=str))


@dead_letters.command()
@click.option("--limit", type=click.IntRange(1), default=None, help="At most this many (default: all).")
@reads(AmqpSettings)
def replay(limit: int | None) -> None:
    """Send dead letters back to the ticks queue (after a fix: a schema change, an outage past the delivery limit).

    Each is acked only once the ticks queue has it; the workers store each tick once.
    """
    from tickpipe_workers.dead_letters import replay as send_back

    url, topology = _topology()
    click.echo(f"replayed {asyncio.run(send_back(url, topology, limit))} message(s) to {topology.ticks_queue}")


@dead_letters.command()
@click.option("--yes", is_flag=True, help="Do not ask.")
@reads(AmqpSettings)
def purge(yes: bool) -> None:
    """Delete every dead letter, for good."""
    from tickpipe_workers.dead_letters import purge as drop

    url, topology = _topology()
    if not yes:
        click.confirm(f"delete every message in {topology.dead_queue}?", abort=True)
    click.echo(f"deleted {asyncio.run(drop(url, topology))} dead letter(s)")
