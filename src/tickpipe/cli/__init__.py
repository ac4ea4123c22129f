"""The `tickpipe` command line: one module per command group; `main` turns foreseeable failures into one line.

Exit codes (also in README, Operations): 0 done; 1 a failure a restart may fix (a server down, a
network error); 2 bad usage; 78 (`EXIT_TERMINAL`) retrying cannot help (a rejected token, a bad
setting): `tickpipe run`'s supervisor does not restart it, and with TICKPIPE_ON_TERMINAL=wait (set in
the container image) the process stays up after saying why, so a restart policy cannot crash-loop it.
"""

from __future__ import annotations

import os
import signal
import sys

import click

from tickpipe.cli.analytics import maintain, query
from tickpipe.cli.bench import bench
from tickpipe.cli.dead_letters import dead_letters
from tickpipe.cli.instruments import instruments
from tickpipe.cli.pipeline import health, ingest, migrate, record, run, serve, work
from tickpipe.cli.simulate import simulate
from tickpipe.cli.spool import spool
from tickpipe.cli.status import status
from tickpipe_core import EXIT_FAILURE, EXIT_TERMINAL, ConfigError, TerminalError, TickpipeError, configure_logging
from tickpipe_core.logging import redact
from tickpipe_core.settings import LogSettings, load

ON_TERMINAL_ENV = "TICKPIPE_ON_TERMINAL"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """tickpipe: broker WebSocket feed -> RabbitMQ -> TimescaleDB hypertable."""
    settings = load(LogSettings)
    configure_logging(settings.log_level, settings.log_format)


for command in (
    migrate,
    ingest,
    record,
    work,
    serve,
    simulate,
    instruments,
    maintain,
    query,
    health,
    run,
    spool,
    dead_letters,
    status,
    bench,
):
    cli.add_command(command)


def _first_known(exc: BaseException) -> BaseException:
    """The error to report: a TickpipeError inside an exception group (else its first error), never the group."""
    if isinstance(exc, BaseExceptionGroup):
        leaves = [_first_known(inner) for inner in exc.exceptions]
        return next((e for e in leaves if isinstance(e, TickpipeError)), leaves[0] if leaves else exc)
    return exc


def _unreachable(exc: BaseException) -> str | None:
    """One line for a server we could not reach, or None when `exc` is not that."""
    import aiormq
    import psycopg

    if isinstance(exc, psycopg.OperationalError):
        return f"cannot use the database: {str(exc).strip().splitlines()[0]}"
    if isinstance(exc, aiormq.exceptions.AMQPConnectionError | ConnectionError | OSError):
        return f"cannot reach RabbitMQ or the network: {type(exc).__name__}: {exc}"
    return None


def _terminal(message: str) -> None:
    click.echo(message, err=True)
    if os.environ.get(ON_TERMINAL_ENV) == "wait":
        click.echo(f"{ON_TERMINAL_ENV}=wait: staying up until stopped, so that nothing restarts this", err=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: sys.exit(EXIT_TERMINAL))
        while True:
            signal.pause()
    sys.exit(EXIT_TERMINAL)


def main(args: list[str] | None = None) -> None:
    """Entry point: one clear line, never a traceback, for every failure we can foresee."""
    try:
        cli.main(args=args, standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except BaseException as raised:
        if isinstance(raised, SystemExit | KeyboardInterrupt):
            raise
        exc = _first_known(raised)
        if isinstance(exc, ConfigError):
            _terminal(redact(f"configuration error: {exc}"))
        if isinstance(exc, TerminalError):
            _terminal(redact(f"error: {type(exc).__name__}: {exc}"))
        if isinstance(exc, TickpipeError):
            click.echo(redact(f"error: {type(exc).__name__}: {exc}"), err=True)
            sys.exit(EXIT_FAILURE)
        line = _unreachable(exc)
        if line is None:
            raise  # a bug: the traceback is what a developer needs
        click.echo(redact(line), err=True)
        sys.exit(EXIT_FAILURE)
