"""What the fault matrix is made of: a numbered feed, tickpipe processes, scratch RabbitMQ nodes, a TCP proxy.

Every case streams numbered ticks (the simulator's `numbered` mode: a trade's volume is its number on
the server) through real `tickpipe ingest` and `tickpipe work` processes into a real database, strikes
one fault mid-stream, and reads back which numbers were stored: exactly-once is asserted from those
numbers, never from counts that agree by construction.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import aio_pika
import psycopg

from tests.helpers import free_port, until, wait_until
from tickpipe.cli.simulate import feed_environment
from tickpipe_simulator.dhan import DhanSimulator
from tickpipe_simulator.market import make_instruments

T = TypeVar("T")


class LoopThread:
    """An asyncio loop on its own thread, for servers the test process runs beside its child processes."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def call(self, make: Callable[[], Coroutine[Any, Any, T]], timeout: float = 30) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(make(), self.loop)
        return future.result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


class NumberedFeed:
    """A Dhan simulator sending `total` numbered full packets at `rate` per second, on a thread."""

    def __init__(
        self, total: int, rate: float, instruments: int = 20, packets_per_frame: int = 4, snapshot: bool = False
    ) -> None:
        self.instruments = make_instruments(instruments, seed=7)
        self.server = DhanSimulator(
            self.instruments,
            rate,
            max_ticks=total,
            record=True,
            packets_per_frame=packets_per_frame,
            numbered=True,
            snapshot=snapshot,
        )
        self.total = total
        self._loop = LoopThread()
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self.port = 0
        self._serving = asyncio.run_coroutine_threadsafe(self._serve(), self._loop.loop)
        if not self._ready.wait(30):
            raise RuntimeError("the feed server did not start")

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with self.server.serving() as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    def env(self, port: int | None = None) -> dict[str, str]:
        """The settings that point `tickpipe ingest` at this feed (or at a proxy of it on `port`)."""
        return feed_environment("dhan", f"ws://127.0.0.1:{port or self.port}", self.instruments) | {
            "DHAN_FEED_MODE": "full"
        }

    def sent(self) -> list[int]:
        """The numbers written to a socket so far."""

        async def numbers() -> list[int]:
            return [t.quote.volume for t in self.server.sent]

        return self._loop.call(numbers)

    @property
    def done(self) -> bool:
        return self.server.done

    def drop(self) -> None:
        """Cut every feed connection without a close frame (the broker's side of an outage)."""
        self._loop.call(self.server.drop)

    def close(self) -> None:
        if self._stop is not None:
            self._loop.loop.call_soon_threadsafe(self._stop.set)
        with contextlib.suppress(Exception):
            self._serving.result(10)
        self._loop.close()


class Service:
    """One `tickpipe` child process, its JSON log in a file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name, self.args, self.env = name, args, env
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, **env: str) -> Service:
        self.env = {**self.env, **env}
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tickpipe", *self.args], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30) -> tuple[int, float]:
        """SIGTERM and wait: (exit code, seconds it took)."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        return code, time.monotonic() - started

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(30)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def last_run(self) -> str:
        """The log of the latest start only."""
        return self.log().rsplit(f"--- start {self.starts}\n", 1)[-1]

    def close(self) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(30)


def log_events(text: str, event: str) -> list[dict[str, Any]]:
    """The JSON log lines of `event`, parsed."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{") and f'"{event}"' in line]


def last_event(text: str, event: str) -> dict[str, Any]:
    events = log_events(text, event)
    assert events, f"no {event} in the log"
    return events[-1]


def service_env(database_url: str, amqp_url: str, prefix: str, spool: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "AMQP_URL": amqp_url,
        "AMQP_PREFIX": prefix,
        "INGEST_SPOOL_DIR": str(spool),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        **extra,
    }


def stored_numbers(database_url: str) -> list[int]:
    with psycopg.connect(database_url) as conn:
        return [int(v) for (v,) in conn.execute("select volume from ticks order by volume").fetchall()]


def stored_count(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("select count(*) from ticks").fetchone()
        return int(row[0]) if row else 0


def assert_exactly_once(database_url: str, sent: list[int]) -> None:
    """Every number sent is stored once: none missing, none twice, none invented."""
    stored = stored_numbers(database_url)
    twice = len(stored) - len(set(stored))
    missing = sorted(set(sent) - set(stored))
    invented = sorted(set(stored) - set(sent))
    assert (twice, missing[:20], invented[:20]) == (0, [], []), (
        f"{len(sent)} sent, {len(stored)} stored: {twice} twice, {len(missing)} missing {missing[:10]},"
        f" {len(invented)} not sent {invented[:10]}"
    )


def wait_stored(database_url: str, count: int, timeout: float = 120) -> None:
    wait_until(lambda: stored_count(database_url) >= count, f"{count} rows stored", timeout=timeout, interval=0.2)


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/lib/rabbitmq/bin")
    if path is None:
        raise RuntimeError(f"{name} is not installed")
    return path


class ScratchRabbit:
    """A RabbitMQ node of our own (own node name, AMQP and distribution ports), which a test may stop.

    Nodes started with the same `cluster` list can be joined into one cluster (`join`).
    """

    def __init__(self, base: Path, name: str) -> None:
        self.base = base / name
        self.node = f"{name}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.base / "pid"),
        }

    def start(self) -> ScratchRabbit:
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "enabled_plugins").write_text("[].\n")
        (self.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\nloopback_users.guest = false\n"
        )
        if os.geteuid() == 0:
            shutil.chown(self.base.parent, "rabbitmq")
            for path in self.base.parent.rglob("*"):
                shutil.chown(path, "rabbitmq")
        subprocess.run(
            [_tool("rabbitmq-server"), "-detached"], env=self._env(), check=True, capture_output=True, timeout=60
        )
        self.wait_up()
        return self

    def wait_up(self, timeout: float = 90) -> None:
        async def up() -> bool:
            try:
                connection = await aio_pika.connect(self.url, timeout=2)
            except Exception:
                return False
            await connection.close()
            return True

        asyncio.run(until(up, f"RabbitMQ node {self.node}", timeout=timeout, interval=0.5))

    def readable_copy(self, path: Path) -> Path:
        """A copy of `path` in the node's directory, which the broker's user can read (rabbitmqctl runs as it)."""
        copy = self.base / path.name
        shutil.copyfile(path, copy)
        if os.geteuid() == 0:
            shutil.chown(copy, "rabbitmq")
        return copy

    def ctl(self, *args: str, timeout: float = 120) -> str:
        result = subprocess.run(
            [_tool("rabbitmqctl"), "-n", self.node, *args],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} on {self.node}: {result.stderr or result.stdout}")
        return result.stdout

    def stop_app(self) -> None:
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app")
        self.wait_up()

    def join(self, seed: ScratchRabbit) -> None:
        self.ctl("stop_app")
        self.ctl("join_cluster", seed.node)
        self.start_app()

    def shutdown(self) -> None:
        with contextlib.suppress(Exception):
            self.ctl("shutdown", timeout=60)
        pid = self.base / "pid"
        with contextlib.suppress(Exception):
            os.kill(int(pid.read_text().strip()), signal.SIGKILL)


@contextlib.contextmanager
def scratch_rabbits(count: int) -> Iterator[list[ScratchRabbit]]:
    """`count` fresh RabbitMQ nodes, started in parallel; all shut down afterwards."""
    base = Path(tempfile.mkdtemp(prefix="tickpipe-scratch-rmq-"))
    tag = os.urandom(3).hex()
    nodes = [ScratchRabbit(base, f"tp{tag}n{i}") for i in range(count)]
    try:
        threads = [threading.Thread(target=n.start) for n in nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for n in nodes:
            n.wait_up()
        yield nodes
    finally:
        for n in nodes:
            n.shutdown()
        shutil.rmtree(base, ignore_errors=True)


class TcpProxy:
    """A TCP proxy on a thread, for faults of the network: `stall` (bytes stop, sockets stay), `cut`
    (every connection reset), `refuse` (new connections closed at once) and `heal`."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._loop = LoopThread()
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._flowing = asyncio.Event()
        self.refusing = False
        self.connections = 0
        self._server: asyncio.Server = self._loop.call(self._start)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _start(self) -> asyncio.Server:
        self._flowing = asyncio.Event()
        self._flowing.set()
        return await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self.refusing:
            client_w.transport.abort()
            return
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.transport.abort()
            return
        self.connections += 1
        link = (client_w, server_w)
        self._links.add(link)
        try:
            await asyncio.gather(self._pipe(client_r, server_w), self._pipe(server_r, client_w))
        finally:
            self._links.discard(link)
            for w in link:
                w.close()  # what is still buffered goes out first (a cut aborts instead)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy one direction; its end (EOF) is passed on as a half-close, as TCP does."""
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()

    def stall(self) -> None:
        self._loop.loop.call_soon_threadsafe(self._flowing.clear)

    def cut(self) -> None:
        async def cut() -> None:
            for link in list(self._links):
                for w in link:
                    w.transport.abort()

        self._loop.call(cut)

    def refuse(self) -> None:
        self.refusing = True
        self.cut()

    def heal(self) -> None:
        self.refusing = False
        self._loop.loop.call_soon_threadsafe(self._flowing.set)

    def close(self) -> None:
        async def close() -> None:
            self._server.close()
            for link in list(self._links):
                for w in link:
                    w.transport.abort()

        self._loop.call(close)
        self._loop.close()
