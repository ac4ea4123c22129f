"""What every command shares: settings listed in --help, an async runner with clean signals, the broker choice."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from pydantic_settings import BaseSettings

from tickpipe_core import get_logger
from tickpipe_core.health import heartbeat
from tickpipe_core.settings import env_names, load

if TYPE_CHECKING:
    from tickpipe_ingestion.service import Broker

F = TypeVar("F", bound=Callable[..., Any])

log = get_logger("cli")

CAPTURE = click.Path(dir_okay=False, path_type=Path)
WATCHLIST = click.Path(exists=True, dir_okay=False, path_type=Path)


def reads(*classes: type[BaseSettings]) -> Callable[[F], F]:
    """Append the environment variables a command reads to its --help."""
    names = ["LOG_LEVEL", "LOG_FORMAT"]
    for cls in classes:
        names += env_names(cls).values()

    def decorate(f: F) -> F:
        f.__doc__ = inspect.cleandoc(f.__doc__ or "") + "\n\n\b\nSettings (environment or .env): " + ", ".join(names)
        return f

    return decorate


def run_async(main: Callable[[asyncio.Event], Coroutine[Any, Any, None]], stop_within_s: float | None = None) -> None:
    """Run a coroutine with an Event that SIGINT/SIGTERM set, for a clean shutdown.

    With `stop_within_s`, a shutdown that has not finished that long after the signal (a server that
    vanished mid-call) is cancelled, and a process still stuck a second later exits at once: what it
    had not finished is unacked (RabbitMQ redelivers it) or spooled, never lost.
    """

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        beat = asyncio.create_task(heartbeat())
        task = asyncio.create_task(main(stop))
        try:
            if stop_within_s is None:
                await task
                return
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if not task.done() and not (await asyncio.wait({task}, timeout=stop_within_s))[0]:
                log.error("shutdown_overdue", seconds=stop_within_s, action="cancelled")
                task.cancel()
                if not (await asyncio.wait({task}, timeout=1.0))[0]:
                    log.error("shutdown_stuck", action="exiting now")
                    os._exit(0)
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            beat.cancel()

    asyncio.run(runner())


def data_source() -> str:
    """DATA_SOURCE: the name of the broker adapter to use (checked against the registry)."""
    from tickpipe_brokers import SourceSettings

    return load(SourceSettings).data_source


def broker() -> Broker:
    """The adapter DATA_SOURCE names, with its settings (loaded now, so errors come at start)."""
    from tickpipe_ingestion.service import Broker

    return Broker.named(data_source())
