"""The one reconnect loop every broker connection uses.

Backoff with full jitter that resets once data flows again, a no-data watchdog, resubscribe on
every connect, and a terminal stop for failures retrying cannot fix (FeedAuthError). Broker
modules supply the URL, the subscribe messages and a frame handler; they never write a loop.
Model: cryptofeed's connection_handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import websockets
from websockets.asyncio.client import ClientConnection, connect

from tickpipe_brokers.market_hours import MarketHours
from tickpipe_core import Backoff, FeedAuthError, FeedError, TerminalError, get_logger, redact
from tickpipe_core.settings import redact_url


@dataclass(frozen=True)
class Watchdog:
    """Reconnect a connection that brought no data (no tick: silence, or only heartbeats) for `silence_s`
    seconds, but only while the market is open."""

    silence_s: float | None = 30.0
    hours: MarketHours = field(default_factory=lambda: MarketHours("always"))
    segments: frozenset[str] = frozenset()
    """The connection's segments: it arms while any of them is open (empty: the market's hours)."""

    def fires(self) -> bool:
        return self.silence_s is not None and self.hours.is_open(segments=self.segments)

    def over(self, segments: Iterable[str]) -> Watchdog:
        return dataclasses.replace(self, segments=frozenset(segments))


class SessionObserver(Protocol):
    def started(self, connection: str) -> None: ...
    def ended(self, connection: str, reason: str, frames: int, ticks: int) -> None: ...


class HasCounters(Protocol):
    @property
    def counters(self) -> Mapping[str, int]: ...


# Called with (receive time, connection index, frame) for every frame, before decoding.
Recorder = Callable[[float, int, bytes | str], None]

# Handles one frame from the server; raises FeedError to reconnect, FeedAuthError to stop.
FrameHandler = Callable[[bytes | str], Awaitable[None]]

_YIELD_EVERY = 16  # frames handled between turns given to the loop's other tasks
_LOG_FIRST_N = 20  # events of a kind logged in full, then every 1000th


@dataclass
class FeedConnection:
    """One WebSocket connection to a broker, kept alive until `stop()` or a terminal error."""

    name: str
    url: str = field(repr=False)  # it holds the token
    subscribe_messages: Callable[[], Sequence[str]]
    on_frame: FrameHandler
    backoff: Backoff = field(default_factory=Backoff)
    watchdog: Watchdog = field(default_factory=Watchdog)
    min_backoff_after: Callable[[], float] = lambda: 0.0
    """A floor for the next backoff the handler may raise (e.g. after a rate-limit disconnect)."""
    sessions: SessionObserver | None = None
    """Told when a session starts and ends (feed_sessions in the database)."""

    def __post_init__(self) -> None:
        self.log = get_logger("feed", connection=self.name, url=redact_url(self.url))
        self._stopping = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._closing: asyncio.Future[None] | None = None
        self.connects = 0
        self.frames = 0
        self.ticks = 0  # counted by the broker feed, which decodes
        self.reconnects: Counter[str] = Counter()  # by reason
        self.last_frame = 0.0  # time.monotonic() of the last frame
        self._attempt = 0  # reconnects since data last flowed: the backoff's exponent
        self._data_at = 0.0  # time.monotonic() of the last frame that carried ticks (or the session's start)
        self._got_data = False  # this session has handled a frame

    @property
    def connected(self) -> bool:
        return self._ws is not None

    def stop(self) -> None:
        """Close the connection; `run` handles the frames that arrive before the broker's close, then returns.

        A frame the broker wrote before it saw our close is read, not lost (at most close_timeout).
        """
        self._stopping.set()
        if self._ws is not None:
            # Keep a reference so the closing task is not collected early.
            self._closing = asyncio.ensure_future(self._ws.close())

    async def run(self) -> None:
        """Connect, subscribe and pump frames; reconnect on failures; return on stop()."""
        self._attempt = 0
        while not self._stopping.is_set():
            reason = "stopped"
            frames, ticks = self.frames, self.ticks
            try:
                # No permessage-deflate: inflating every small binary frame costs ingestion CPU (and the
                # server as much again to deflate it) to save bandwidth a feed does not lack.
                async with connect(self.url, max_size=2**22, open_timeout=10, close_timeout=2, compression=None) as ws:
                    reason = await self._session(ws)
            except FeedAuthError as e:
                reason = str(e)
                self.log.error("feed_stopped", reason=reason)
                raise
            except (OSError, websockets.exceptions.WebSocketException, FeedError) as e:
                if self._stopping.is_set() and not _refused_credentials(e):
                    break
                reason = self._failure(e)
            finally:
                if self._ws is not None and self.sessions is not None:
                    self.sessions.ended(self.name, reason, self.frames - frames, self.ticks - ticks)
                self._ws = None
            if self._stopping.is_set():
                break
            delay = max(self.backoff.delay(self._attempt), self.min_backoff_after())
            self._attempt += 1
            self.log.info("feed_reconnecting", attempt=self._attempt, delay_s=round(delay, 3))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
        self.log.info("feed_closed")

    async def _session(self, ws: ClientConnection) -> str:
        """One connected session: subscribe, then read frames until stop() or the watchdog; why it ended."""
        self._ws = ws
        self.connects += 1
        if self.sessions is not None:
            self.sessions.started(self.name)
        for message in self.subscribe_messages():
            await ws.send(message)
        self.log.info("feed_connected", connects=self.connects)
        # The watchdog wants data, not just frames: a connection whose subscription failed and that
        # only sends heartbeats is as dead as a silent one.
        silence = self.watchdog.silence_s
        self._data_at, self._got_data = time.monotonic(), False
        while True:
            # One deadline per silence period, not a timeout per frame (arming a timer for every frame
            # is work on the hot path): when it passes, data since moves it on; else the watchdog.
            deadline = None if silence is None else self._data_at + silence
            try:
                async with asyncio.timeout_at(deadline) as period:
                    await self._read(ws)
                return "stopped"  # closed by stop()
            except TimeoutError:
                if not period.expired():
                    raise
                assert silence is not None  # a period only expires with a deadline
                verdict = self._silence(silence)
                if verdict is not None:
                    return verdict

    async def _read(self, ws: ClientConnection) -> None:
        """Handle frames until the connection closes on stop(); raises when it closes otherwise."""
        ticks_then, got_data = self.ticks, self._got_data
        while True:
            try:
                frame = await ws.recv()  # cancel-safe: a frame is never half read
            except websockets.exceptions.ConnectionClosed:
                if self._stopping.is_set():
                    return  # stop() closed it; every frame before the close is handled
                raise
            self.frames += 1
            self.last_frame = time.monotonic()
            await self.on_frame(frame)
            if not self.frames % _YIELD_EVERY:
                # recv() returns a buffered frame without yielding to the loop: in a burst the reader
                # would have it to itself while the publisher (and the broker's confirms) wait for the
                # socket to run dry.
                await asyncio.sleep(0)
            if self.ticks != ticks_then:
                self._data_at, ticks_then = self.last_frame, self.ticks
            if not got_data:
                # Data flows again: reset the backoff (only once a frame was handled, so a connection
                # whose one frame is a disconnect packet keeps backing off).
                got_data = self._got_data = True
                self._attempt = 0

    def _silence(self, silence: float) -> str | None:
        """A silence period passed: None to read on (data came since, or the market is closed), else
        why the connection is given up."""
        if time.monotonic() < self._data_at + silence:
            return None  # data came within the period
        if not self.watchdog.fires():
            self._data_at = time.monotonic()  # quiet outside market hours is normal
            return None
        kind = "no_data" if self.last_frame > self._data_at else "silent"
        self.log.warning("feed_silent", seconds=silence, frames_without_data=kind == "no_data")
        self.reconnects[kind] += 1
        if kind == "no_data":
            return f"only heartbeats (no data) for {silence:g} s while the market was open"
        return f"silent for {silence:g} s while the market was open"

    def _failure(self, e: Exception) -> str:
        """A connection that failed: a FeedAuthError when retrying cannot help, else the reason, counted."""
        if _refused_credentials(e):
            assert isinstance(e, websockets.exceptions.InvalidStatus)
            # The broker refused the credentials at the handshake; retrying cannot fix that.
            error = FeedAuthError(f"{self.name}: the broker refused the credentials (HTTP {e.response.status_code})")
            self.log.error("feed_stopped", reason=str(error))
            raise error from None
        self.reconnects["broker_disconnect" if isinstance(e, FeedError) else "connection_lost"] += 1
        reason = redact(f"{type(e).__name__}: {e}")
        self.log.warning("feed_disconnected", error=reason)
        return reason


def _refused_credentials(e: Exception) -> bool:
    return isinstance(e, websockets.exceptions.InvalidStatus) and e.response.status_code in (401, 403)


class Feed:
    """All connections of one broker feed; a terminal error on one stops them all.

    Broker feeds fill `connections`, set `decoder`, and call `received` first thing in each frame
    handler. `counters` holds the feed's own events (broker disconnect codes, text frames);
    `stats()` adds each connection's connects and frames.
    """

    decoder: HasCounters

    def __init__(self, recorder: Recorder | None) -> None:
        self.connections: list[FeedConnection] = []
        self.counters: Counter[str] = Counter()
        self._recorder = recorder

    def stats(self) -> dict[str, int]:
        """The feed's counters and its connections', as one flat dict."""
        out = dict(self.counters)
        for conn in self.connections:
            out[f"{conn.name}.connects"] = conn.connects
            out[f"{conn.name}.frames"] = conn.frames
        return out

    def note(self, kind: str, event: str, level: str = "info", **fields: object) -> None:
        """Count a feed event of `kind` and log it: the first 20 of a kind, then every 1000th (with the
        count), so a broker sending thousands of text frames cannot flood the log."""
        self.counters[kind] += 1
        seen = self.counters[kind]
        if seen <= _LOG_FIRST_N or seen % 1000 == 0:
            getattr(get_logger("feed"), level)(event, seen=seen, **fields)

    def received(self, connection: int, frame: bytes | str) -> float:
        """Note a frame's arrival (and record it); returns its receive time as epoch seconds.

        A recorder that fails (a full disk) stops recording, loudly, never ingestion.
        """
        now = time.time()
        if self._recorder is not None:
            try:
                self._recorder(now, connection, frame)
            except OSError as e:
                self._recorder = None
                self.counters["recording_failed"] += 1
                get_logger("feed").error("recording_stopped", error=f"{type(e).__name__}: {e}", ingestion="goes on")
        return now

    async def run(self) -> None:
        """Run every connection; the first terminal error stops them all and is raised as itself."""
        try:
            async with asyncio.TaskGroup() as tg:
                for conn in self.connections:
                    tg.create_task(conn.run())
        except* TerminalError as group:
            raise group.exceptions[0] from None

    def stop(self) -> None:
        for conn in self.connections:
            conn.stop()

    def observe_sessions(self, sessions: SessionObserver) -> None:
        for conn in self.connections:
            conn.sessions = sessions
