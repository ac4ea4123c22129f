"""`tickpipe serve` against the real services: REST, the live stream from RabbitMQ, replay, slow clients, auth.

The gateway runs in-process under uvicorn on a free port; ticks reach it as they do in production,
published by the real `TickPublisher` to the market exchange, and numbered (by volume) so that order
and completeness are asserted from the data.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import uvicorn
from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection, connect

from tests.helpers import free_port, make_tick, until
from tests.integration.pipeline import sync_dhan_lines
from tickpipe_core import Tick, Topology
from tickpipe_core.settings import IngestSettings, ServeSettings
from tickpipe_gateway import create_app
from tickpipe_gateway.stream import SLOW_CLIENT_CODE
from tickpipe_ingestion import TickPublisher
from tickpipe_workers import TickWriter

SYMBOLS = ["ALPHA", "BRAVO", "CHARLIE"]


def _instruments(database_url: str) -> dict[str, int]:
    ids = sync_dhan_lines(
        database_url,
        [f"NSE,E,{100 + i},EQUITY,0,{s},1.0,{s} Ltd,,,,5.0000,NA,ES,EQ,{s} LTD" for i, s in enumerate(SYMBOLS)],
    )
    return {s: ids[100 + i] for i, s in enumerate(SYMBOLS)}


def _numbered(instrument_id: int, n: int, start: int = 1, at: datetime | None = None) -> list[Tick]:
    """Ticks of one instrument numbered by volume start, start+1, ..."""
    at = at or datetime.now(UTC)
    return [
        make_tick(
            segment="NSE_EQ",
            security_id=instrument_id,
            instrument_id=instrument_id,
            time=at + timedelta(milliseconds=i),
            receive_time=at + timedelta(milliseconds=i),
            volume=v,
            ltp=100.0 + v / 100,
        )
        for i, v in enumerate(range(start, start + n))
    ]


@contextlib.asynccontextmanager
async def _gateway(database_url: str, amqp_url: str, topology: Topology, **settings: Any) -> AsyncIterator[str]:
    port = free_port()
    app = create_app(ServeSettings(port=port, **settings), database_url, amqp_url, topology)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await until(lambda: server.started, "the gateway to start")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def _get(url: str, token: str | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
    def fetch() -> tuple[int, dict[str, Any], dict[str, str]]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(url, headers=headers)  # noqa: S310 - our own loopback server
        try:
            with urllib.request.urlopen(request, timeout=10) as r:  # noqa: S310 - our own loopback server
                return r.status, json.loads(r.read()), dict(r.headers)
        except urllib.error.HTTPError as e:
            body = e.read()
            return e.code, json.loads(body) if body.startswith(b"{") else {"text": body.decode()}, dict(e.headers)

    return await asyncio.to_thread(fetch)


async def _publish(amqp_url: str, topology: Topology, ticks: list[Tick]) -> None:
    publisher = TickPublisher(amqp_url, topology, IngestSettings(max_ticks_per_message=100, linger_ms=1))
    await publisher.start()
    publisher.submit(ticks)
    await publisher.close()


async def _receive_ticks(ws: ClientConnection, count: int, into: list[dict[str, Any]]) -> None:
    """Tick messages, one per frame or several in a `ticks` frame, in order."""
    while len(into) < count:
        m = json.loads(await ws.recv())
        if m["type"] == "tick":
            into.append(m)
        elif m["type"] == "ticks":
            into.extend(m["ticks"])


def test_rest_quotes_candles_instruments_lag_and_health(database_url: str, amqp_url: str, topology: Topology) -> None:
    ids = _instruments(database_url)

    async def scenario() -> None:
        writer = TickWriter(database_url)
        await writer.write(_numbered(ids["ALPHA"], 30) + _numbered(ids["BRAVO"], 5))
        await writer.close()
        async with _gateway(database_url, amqp_url, topology) as host:
            status, quotes, headers = await _get(f"http://{host}/v1/quotes?instruments=ALPHA,{ids['BRAVO']},NOPE")
            assert status == 200 and "access-control-allow-origin" not in {k.lower() for k in headers}
            assert quotes["unknown"] == ["NOPE"]
            assert [(q["symbol"], q["volume"]) for q in quotes["quotes"]] == [("ALPHA", 30), ("BRAVO", 5)]
            status, candles, _ = await _get(f"http://{host}/v1/candles?instrument=ALPHA&interval=1m")
            assert status == 200 and sum(c["ticks"] for c in candles["candles"]) == 30
            assert sum(c["volume"] for c in candles["candles"]) == 30  # the day's cumulative volume reached 30
            status, bad, _ = await _get(f"http://{host}/v1/candles?instrument=NOPE")
            assert status == 400 and "NOPE" in bad["error"]
            _, found, _ = await _get(f"http://{host}/v1/instruments?q=BRA")
            assert [i["symbol"] for i in found["instruments"]] == ["BRAVO"]
            _, lag, _ = await _get(f"http://{host}/v1/lag")
            assert lag["lag_seconds"] is not None and lag["newest_time"]
            status, health, _ = await _get(f"http://{host}/v1/health")
            assert status == 200 and health["database"] == "ok" and health["stream"]["connected"]

    asyncio.run(scenario())


def test_the_stream_delivers_every_tick_of_each_clients_instruments_in_order_from_rabbitmq(
    database_url: str, amqp_url: str, topology: Topology
) -> None:
    ids = _instruments(database_url)

    async def scenario() -> None:
        async with (
            _gateway(database_url, amqp_url, topology) as host,
            connect(f"ws://{host}/v1/stream") as one,
            connect(f"ws://{host}/v1/stream") as two,
        ):
            await one.send(json.dumps({"subscribe": ["ALPHA"]}))
            await two.send(json.dumps({"subscribe": ["BRAVO", str(ids["CHARLIE"]), "NOPE"]}))
            ack_one, ack_two = json.loads(await one.recv()), json.loads(await two.recv())
            assert [i["symbol"] for i in ack_one["instruments"]] == ["ALPHA"]
            assert sorted(i["symbol"] for i in ack_two["instruments"]) == ["BRAVO", "CHARLIE"]
            assert ack_two["unknown"] == ["NOPE"]
            ticks = [t for s in SYMBOLS for t in _numbered(ids[s], 400)]
            await _publish(amqp_url, topology, ticks)
            got_one: list[dict[str, Any]] = []
            got_two: list[dict[str, Any]] = []
            await asyncio.wait_for(_receive_ticks(one, 400, got_one), 30)
            await asyncio.wait_for(_receive_ticks(two, 800, got_two), 30)
        assert [m["volume"] for m in got_one] == list(range(1, 401))
        assert {m["symbol"] for m in got_one} == {"ALPHA"}
        for symbol in ("BRAVO", "CHARLIE"):
            assert [m["volume"] for m in got_two if m["symbol"] == symbol] == list(range(1, 401))
        first = got_one[0]
        assert {
            "instrument_id",
            "symbol",
            "time",
            "ltp",
            "volume",
            "bid",
            "bid_qty",
            "ask",
            "ask_qty",
            "change_pct",
        } <= set(first)

    asyncio.run(scenario())


def test_since_replays_what_a_client_missed_from_the_database_then_goes_live(
    database_url: str, amqp_url: str, topology: Topology
) -> None:
    ids = _instruments(database_url)
    start = datetime.now(UTC) - timedelta(minutes=5)

    async def scenario() -> None:
        writer = TickWriter(database_url)
        await writer.write(_numbered(ids["ALPHA"], 50, at=start))  # stored while the client was away
        await writer.close()
        async with _gateway(database_url, amqp_url, topology) as host, connect(f"ws://{host}/v1/stream") as ws:
            await ws.send(
                json.dumps({"subscribe": ["ALPHA"], "since": (start + timedelta(milliseconds=10)).isoformat()})
            )
            messages: list[dict[str, Any]] = []
            while not messages or messages[-1]["type"] != "replay_done":
                messages.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            replayed = [m for m in messages if m["type"] == "tick"]
            assert [m["volume"] for m in replayed] == list(range(11, 51)) and all(m["replay"] for m in replayed)
            await _publish(amqp_url, topology, _numbered(ids["ALPHA"], 5, start=51))
            live: list[dict[str, Any]] = []
            await asyncio.wait_for(_receive_ticks(ws, 5, live), 15)
            assert [m["volume"] for m in live] == [51, 52, 53, 54, 55] and not any(m["replay"] for m in live)

    asyncio.run(scenario())


class StalledClient:
    """A WebSocket client that subscribes and then stops reading, with a tiny kernel receive buffer.

    Raw socket and hand-written frames, so no client library reads on its behalf in the background.
    """

    def __init__(self, host: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        address, port = host.split(":")
        self.sock.connect((address, int(port)))
        self.sock.sendall(
            f"GET /v1/stream HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        response = b""
        while b"\r\n\r\n" not in response:
            response += self.sock.recv(1)
        assert response.startswith(b"HTTP/1.1 101"), response

    def send_text(self, text: str) -> None:
        data, mask = text.encode(), b"\x01\x02\x03\x04"
        assert len(data) < 126
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.sock.sendall(bytes([0x81, 0x80 | len(data)]) + mask + masked)

    def await_ack(self) -> None:
        """Read the server's reply to the subscription (one small frame), and nothing more."""
        self.sock.settimeout(10)
        assert b"subscribed" in self.sock.recv(4096)

    def close_code(self) -> int | None:
        """Read everything that is left; the code of the server's close frame, if it sent one."""
        self.sock.settimeout(10)
        data = b""
        with contextlib.suppress(OSError):
            while chunk := self.sock.recv(1 << 20):
                data += chunk
        self.sock.close()
        offset = 0
        while offset + 2 <= len(data):
            opcode, length, offset = data[offset] & 0x0F, data[offset + 1] & 0x7F, offset + 2
            if length == 126:
                length, offset = int.from_bytes(data[offset : offset + 2], "big"), offset + 2
            elif length == 127:
                length, offset = int.from_bytes(data[offset : offset + 8], "big"), offset + 8
            if opcode == 8:
                return int.from_bytes(data[offset : offset + 2], "big")
            offset += length
        return None


def test_a_slow_client_is_disconnected_with_its_code_and_never_slows_the_others(
    database_url: str, amqp_url: str, topology: Topology
) -> None:
    ids = _instruments(database_url)
    total = 20_000

    async def scenario() -> None:
        # The slow client reads nothing: its socket fills, then its queue, and it is cut.
        async with (
            _gateway(database_url, amqp_url, topology, client_queue=1000) as host,
            connect(f"ws://{host}/v1/stream") as fast,
        ):
            slow = await asyncio.to_thread(StalledClient, host)  # blocking socket calls: off the server's loop
            await asyncio.to_thread(slow.send_text, json.dumps({"subscribe": ["ALPHA"]}))
            await asyncio.to_thread(slow.await_ack)
            await fast.send(json.dumps({"subscribe": ["ALPHA"]}))
            await fast.recv()
            got: list[dict[str, Any]] = []
            reader = asyncio.create_task(_receive_ticks(fast, total, got))
            await _publish(amqp_url, topology, _numbered(ids["ALPHA"], total))
            await asyncio.wait_for(reader, 60)
            assert [m["volume"] for m in got] == list(range(1, total + 1))  # every tick, in order

            assert await asyncio.to_thread(slow.close_code) == SLOW_CLIENT_CODE

    asyncio.run(scenario())


def test_a_client_that_stops_reading_is_cut_with_its_code_before_its_queue_fills(
    database_url: str, amqp_url: str, topology: Topology
) -> None:
    """A slow client is one whose socket takes nothing more, however few messages wait for it: it gets
    4001 after SERVE_CLIENT_SEND_TIMEOUT_S, not a silent drop by the keepalive's ping timeout (1006)."""
    ids = _instruments(database_url)

    async def scenario() -> None:
        async with _gateway(
            database_url, amqp_url, topology, client_queue=1_000_000, client_send_timeout_s=1.0
        ) as host:
            slow = await asyncio.to_thread(StalledClient, host)
            await asyncio.to_thread(slow.send_text, json.dumps({"subscribe": ["ALPHA"]}))
            await asyncio.to_thread(slow.await_ack)
            await _publish(amqp_url, topology, _numbered(ids["ALPHA"], 20_000))  # more than the sockets hold

            async def cut() -> bool:
                return int((await _get(f"http://{host}/v1/health"))[1]["stream"]["slow_clients"]) >= 1

            await until(cut, "the gateway to cut the client that stopped reading", timeout=30)
            assert await asyncio.to_thread(slow.close_code) == SLOW_CLIENT_CODE  # its code, after what was sent

    asyncio.run(scenario())


def test_a_token_guards_every_endpoint_and_the_stream(database_url: str, amqp_url: str, topology: Topology) -> None:
    async def scenario() -> None:
        async with _gateway(database_url, amqp_url, topology, token=SecretStr("s3cret")) as host:
            for path in ("/", "/v1/quotes", "/v1/health", "/v1/lag", "/static/app.js"):
                status, _, headers = await _get(f"http://{host}{path}")
                assert status == 401 and headers.get("www-authenticate") == "Bearer", path
            status, _, _ = await _get(f"http://{host}/v1/health", token="s3cret")
            assert status == 200
            status, _, _ = await _get(f"http://{host}/v1/health?token=s3cret")
            assert status == 200
            with pytest.raises(Exception, match="4401|403"):
                async with connect(f"ws://{host}/v1/stream") as ws:
                    await ws.recv()
            async with connect(f"ws://{host}/v1/stream?token=s3cret") as ws:
                await ws.send(json.dumps({"subscribe": ["ALPHA"]}))
                assert json.loads(await ws.recv())["type"] == "subscribed"

    asyncio.run(scenario())


def test_two_gateway_processes_side_by_side_each_stream_every_tick(
    database_url: str, amqp_url: str, topology: Topology
) -> None:
    ids = _instruments(database_url)

    async def scenario() -> None:
        async with (
            _gateway(database_url, amqp_url, topology) as first,
            _gateway(database_url, amqp_url, topology) as second,
            connect(f"ws://{first}/v1/stream") as a,
            connect(f"ws://{second}/v1/stream") as b,
        ):
            for ws in (a, b):
                await ws.send(json.dumps({"subscribe": ["BRAVO"]}))
                await ws.recv()
            await _publish(amqp_url, topology, _numbered(ids["BRAVO"], 300))
            got_a: list[dict[str, Any]] = []
            got_b: list[dict[str, Any]] = []
            await asyncio.wait_for(_receive_ticks(a, 300, got_a), 30)
            await asyncio.wait_for(_receive_ticks(b, 300, got_b), 30)
        assert [m["volume"] for m in got_a] == [m["volume"] for m in got_b] == list(range(1, 301))

    asyncio.run(scenario())


async def _request(
    url: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, bytes, dict[str, str]]:
    def fetch() -> tuple[int, bytes, dict[str, str]]:
        request = urllib.request.Request(url, method=method, headers=headers or {})  # noqa: S310 - loopback
        try:
            with urllib.request.urlopen(request, timeout=10) as r:  # noqa: S310 - our own loopback server
                return r.status, r.read(), {k.lower(): v for k, v in r.headers.items()}
        except urllib.error.HTTPError as e:
            return e.code, e.read(), {k.lower(): v for k, v in e.headers.items()}

    return await asyncio.to_thread(fetch)


def test_an_empty_token_is_no_auth_and_says_so(database_url: str, amqp_url: str, topology: Topology) -> None:
    async def scenario() -> None:
        async with _gateway(database_url, amqp_url, topology, token=SecretStr("")) as host:
            status, health, _ = await _get(f"http://{host}/v1/health")
            assert (status, health["auth"]) == (200, "none")
        async with _gateway(database_url, amqp_url, topology, token=SecretStr("t")) as host:
            status, health, _ = await _get(f"http://{host}/v1/health", token="t")
            assert (status, health["auth"]) == (200, "token")

    asyncio.run(scenario())


def test_a_token_with_reserved_characters_works_in_the_query_string(
    database_url: str, amqp_url: str, topology: Topology
) -> None:
    token = "a&b=c d/+%"

    async def scenario() -> None:
        async with _gateway(database_url, amqp_url, topology, token=SecretStr(token)) as host:
            status, _, _ = await _get(f"http://{host}/v1/health?token={urllib.parse.quote(token, safe='')}")
            assert status == 200
            status, _, _ = await _get(f"http://{host}/v1/health?token=a")
            assert status == 401

    asyncio.run(scenario())


def test_cors_preflight_passes_without_the_token_and_other_origins_get_no_cors(
    database_url: str, amqp_url: str, topology: Topology
) -> None:
    allowed = "http://dashboard.test:8080"

    async def scenario() -> None:
        async with _gateway(database_url, amqp_url, topology, token=SecretStr("t"), cors_origins=allowed) as host:
            preflight = {"Origin": allowed, "Access-Control-Request-Method": "GET",
                         "Access-Control-Request-Headers": "authorization"}  # fmt: skip
            status, _, headers = await _request(f"http://{host}/v1/quotes", "OPTIONS", preflight)
            assert status == 200 and headers["access-control-allow-origin"] == allowed
            status, _, headers = await _request(
                f"http://{host}/v1/health", headers={"Origin": allowed, "Authorization": "Bearer t"}
            )
            assert status == 200 and headers["access-control-allow-origin"] == allowed
            status, _, headers = await _request(
                f"http://{host}/v1/health", headers={"Origin": "https://evil.example", "Authorization": "Bearer t"}
            )
            assert "access-control-allow-origin" not in headers  # the browser keeps the answer from that page

    asyncio.run(scenario())


def test_the_stream_refuses_a_foreign_origin_and_accepts_its_own_and_allowed_ones(
    database_url: str, amqp_url: str, topology: Topology
) -> None:
    async def scenario() -> None:
        async with _gateway(database_url, amqp_url, topology, cors_origins="http://dashboard.test") as host:
            with pytest.raises(Exception, match="403|4403"):
                async with connect(f"ws://{host}/v1/stream", origin="https://evil.example") as ws:  # type: ignore[arg-type]
                    await ws.recv()
            for origin in (f"http://{host}", "http://dashboard.test"):
                async with connect(f"ws://{host}/v1/stream", origin=origin) as ws:  # type: ignore[arg-type]
                    await ws.send(json.dumps({"subscribe": ["ALPHA"]}))
                    assert json.loads(await ws.recv())["type"] == "subscribed"

    asyncio.run(scenario())


def test_every_answer_carries_the_security_headers_and_probes_need_no_token(
    database_url: str, amqp_url: str, topology: Topology
) -> None:
    async def scenario() -> None:
        async with _gateway(database_url, amqp_url, topology, token=SecretStr("t")) as host:
            for path in ("/", "/v1/health", "/static/app.js"):
                _, _, headers = await _request(f"http://{host}{path}?token=t")
                assert headers["x-content-type-options"] == "nosniff", path
                assert headers["x-frame-options"] == "DENY", path
                assert "frame-ancestors 'none'" in headers["content-security-policy"], path
            assert (await _request(f"http://{host}/healthz"))[0] == 200
            status, body, _ = await _request(f"http://{host}/readyz")
            assert (status, body) == (200, b"ready")

    asyncio.run(scenario())


def test_hostile_inputs_get_a_clear_400_or_error_message_never_a_500_or_a_dropped_socket(
    database_url: str, amqp_url: str, topology: Topology
) -> None:
    _instruments(database_url)

    async def scenario() -> None:
        async with _gateway(database_url, amqp_url, topology, max_candles=1000) as host:
            for path in (
                "/v1/quotes?instruments=AL%00PHA",
                "/v1/instruments?q=%00",
                "/v1/candles?instrument=ALPHA&interval=999999999d",
                "/v1/candles?instrument=ALPHA&interval=99999999999999999999d",
                "/v1/candles?instrument=ALPHA&interval=2s&from=2006-01-01&to=2026-01-01",
            ):
                status, body, _ = await _request(f"http://{host}{path}")
                assert status == 400 and json.loads(body)["error"], (path, status, body[:200])
            status, body, _ = await _request(
                f"http://{host}/v1/candles?instrument=ALPHA&interval=2s&from=2006-01-01&to=2026-01-01"
            )
            assert "at most 1,000 per request" in json.loads(body)["error"]
            async with connect(f"ws://{host}/v1/stream") as ws:
                deep = "[" * 20_000 + "]" * 20_000
                for bad in ('{"subscribe": 5}', '{"since": "yesterday"}', '{"since": 12345}', deep,
                            '{"subscribe": ["AL\\u0000PHA"]}', "not json"):  # fmt: skip
                    await ws.send(bad)
                    reply = json.loads(await ws.recv())
                    assert reply["type"] == "error" and reply["message"].startswith("not understood"), bad[:40]
                await ws.send(json.dumps({"subscribe": ["ALPHA"]}))  # the connection is still good
                assert json.loads(await ws.recv())["type"] == "subscribed"

    asyncio.run(scenario())


def test_the_read_pool_bounds_every_statement(database_url: str, amqp_url: str, topology: Topology) -> None:
    from tickpipe_gateway.app import STATEMENT_TIMEOUT_MS, Gateway

    gateway = Gateway(ServeSettings(), database_url, amqp_url, topology)
    gateway.pool.open(True, 10)
    try:
        with gateway.pool.connection() as conn:
            assert conn.execute("show statement_timeout").fetchone() == (f"{STATEMENT_TIMEOUT_MS // 1000}s",)
    finally:
        gateway.pool.close()
