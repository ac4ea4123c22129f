"""`tickpipe serve`: the REST API, the live stream and the page, as one Starlette application.

Starlette (the ASGI toolkit FastAPI is built on) and uvicorn: a handful of JSON endpoints and one
WebSocket route need routing, static files, CORS and a lifespan, not a framework's models and docs.
Database reads run in Starlette's thread pool on a psycopg connection pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
from psycopg_pool import ConnectionPool
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketClose, WebSocketDisconnect

from tickpipe_analytics import queries
from tickpipe_analytics.queries import match_instruments
from tickpipe_core import ConfigError, Tick, Topology, get_logger
from tickpipe_core.settings import ServeSettings
from tickpipe_gateway.stream import Client, Hub, cancel, tick_message

log = get_logger("gateway")

WEB = Path(__file__).parent / "web"
VENDOR_CHARTS = (
    Path(__file__).resolve().parents[2] / "web" / "node_modules" / "lightweight-charts" / "dist"
    / "lightweight-charts.standalone.production.js"
)  # fmt: skip
REPLAY_LIMIT = 50_000
UNAUTHORIZED_CODE = 4401
FORBIDDEN_ORIGIN_CODE = 4403
STATEMENT_TIMEOUT_MS = 15_000  # no read may hold a pooled connection longer
# Probes: unauthenticated and data-free, so that an orchestrator's healthcheck needs no token.
PROBES = ("/healthz", "/readyz")
# The page loads only its own files; no other site may frame it.
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:;"
        b" connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
]


class BadRequest(Exception):
    """A request the gateway will not run: answered 400 with the reason."""


class SecurityHeaders:
    """The security headers on every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


class BearerAuth:
    """Every HTTP request and WebSocket wants the token: `Authorization: Bearer T`, or `?token=T` (browsers)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    def _allowed(self, scope: Scope) -> bool:
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"authorization", b"").removeprefix(b"Bearer ").strip()
        if not given:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
            given = query.get("token", [""])[0].encode()  # URL-decoded: a token may hold & or =
        return hmac.compare_digest(given, self.token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in PROBES:
            await self.app(scope, receive, send)
        elif scope["type"] == "http" and not self._allowed(scope):
            response = PlainTextResponse("unauthorized", 401, headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
        elif scope["type"] == "websocket" and not self._allowed(scope):
            await WebSocketClose(UNAUTHORIZED_CODE, "unauthorized")(scope, receive, send)
        else:
            await self.app(scope, receive, send)


class Symbols:
    """Instrument id -> trading symbol, loaded at start and every 30 s (new instruments are synced daily)."""

    def __init__(self, pool: ConnectionPool[psycopg.Connection[Any]]) -> None:
        self._pool = pool
        self._by_id: dict[int, str] = {}

    def load(self) -> None:
        with self._pool.connection() as conn:
            self._by_id = dict(conn.execute("select instrument_id, trading_symbol from instruments").fetchall())

    def __call__(self, instrument_id: int) -> str | None:
        return self._by_id.get(instrument_id)


def resolve(conn: psycopg.Connection[Any], names: Iterable[str | int]) -> tuple[dict[int, str], list[str]]:
    """Instrument ids or symbols of either broker -> ({id: symbol}, [the names that match nothing]).

    A symbol several instruments share stands for the first (active ones first), as a watchlist means it.
    """
    matches = match_instruments(conn, [str(n) for n in names])
    found = {m[0].instrument_id: m[0].trading_symbol for m in matches.values() if m}
    return found, [name for name, m in matches.items() if not m]


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    """A database row as JSON values: times and dates in ISO 8601, numerics as numbers."""
    return {
        k: v.isoformat() if isinstance(v, date) else float(v) if isinstance(v, Decimal) else v for k, v in row.items()
    }


class Gateway:
    """The read side's state (a database pool, instrument symbols, the live fan-out) and one method per endpoint."""

    def __init__(self, settings: ServeSettings, database_url: str, amqp_url: str, topology: Topology) -> None:
        self.settings = settings
        self.pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            database_url,
            min_size=1,
            max_size=8,
            open=False,
            kwargs={"autocommit": True, "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"},
        )
        self.symbols = Symbols(self.pool)
        self.hub = Hub(amqp_url, topology, self.symbols)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(self.pool.open, True, 10)
        await run_in_threadpool(self.symbols.load)
        await self.hub.start()
        refresh = asyncio.create_task(self._refresh_symbols())
        settings = self.settings
        log.info("gateway_started", host=settings.host, port=settings.port, auth=self.auth)
        if not settings.requires_token:
            log.warning("gateway_without_auth", reason="no SERVE_TOKEN: every endpoint and the stream are open")
        try:
            yield
        finally:
            await cancel(refresh)
            await self.hub.stop()
            await run_in_threadpool(self.pool.close)

    async def _refresh_symbols(self) -> None:
        while True:
            await asyncio.sleep(30)
            with contextlib.suppress(psycopg.Error):
                await run_in_threadpool(self.symbols.load)

    @property
    def auth(self) -> str:
        """What guards the endpoints: "token", or "none"."""
        return "token" if self.settings.requires_token else "none"

    def quotes(self, request: Request) -> Response:
        names = _param(request, "instruments")
        with self.pool.connection() as conn:
            if not names:  # every instrument with a quote: the page's default watchlist
                return JSONResponse({"quotes": [_jsonable(r) for r in queries.latest_quotes(conn)], "unknown": []})
            found, unknown = resolve(conn, names.split(","))
            rows = queries.latest_quotes(conn, list(found))
        return JSONResponse({"quotes": [_jsonable(r) for r in rows], "unknown": unknown})

    def candles(self, request: Request) -> Response:
        params = request.query_params
        try:
            interval = _param(request, "interval") or "1m"
            width = queries.parse_interval(interval)
            start = datetime.fromisoformat(params["from"]) if "from" in params else None
            end = datetime.fromisoformat(params["to"]) if "to" in params else None
            with self.pool.connection() as conn:
                inst = queries.resolve_instrument(conn, _param(request, "instrument") or "")
                start, end = _utc(start), _utc(end)
                if start is None or end is None:
                    default_start, default_end = queries.default_window(conn, inst.instrument_id)
                    start, end = start or default_start, end or default_end
                if (end - start) / width > self.settings.max_candles:
                    raise BadRequest(
                        f"{(end - start) / width:,.0f} {interval} candles asked for; at most"
                        f" {self.settings.max_candles:,} per request: narrow from/to, or page through them"
                    )
                rows = queries.candles(conn, inst.instrument_id, interval, start, end)
        except (ConfigError, ValueError, OverflowError) as e:
            return JSONResponse({"error": str(e)}, 400)
        return JSONResponse(
            {"instrument_id": inst.instrument_id, "symbol": inst.trading_symbol, "interval": interval,
             "candles": [_jsonable(r) for r in rows]}
        )  # fmt: skip

    def instruments(self, request: Request) -> Response:
        with self.pool.connection() as conn:
            rows = queries.search_instruments(conn, (_param(request, "q") or "").strip())
        return JSONResponse({"instruments": [_jsonable(r) for r in rows]})

    def lag(self, request: Request) -> Response:
        with self.pool.connection() as conn:
            row = queries.lag(conn)
        return JSONResponse(_jsonable(row))

    def health(self, request: Request) -> Response:
        try:
            with self.pool.connection() as conn:
                conn.execute("select 1")
            database = "ok"
        except psycopg.Error as e:
            database = f"error: {type(e).__name__}"
        ok = database == "ok" and self.hub.connected
        return JSONResponse(
            {"status": "ok" if ok else "degraded", "database": database, "stream": self.hub.stats(), "auth": self.auth},
            200 if ok else 503,
        )

    def healthz(self, request: Request) -> Response:
        """Alive: the process answers."""
        return PlainTextResponse("ok")

    def readyz(self, request: Request) -> Response:
        """Ready: the database answers and the live stream is connected (nothing else is said)."""
        try:
            with self.pool.connection(timeout=5) as conn:
                conn.execute("select 1")
        except psycopg.Error:
            return PlainTextResponse("database unreachable", 503)
        if not self.hub.connected:
            return PlainTextResponse("RabbitMQ stream not connected", 503)
        return PlainTextResponse("ready")

    def _origin_allowed(self, ws: WebSocket) -> bool:
        """A browser's page may open the stream from the server's own origin or an allowed one; other
        clients send no Origin."""
        origin = ws.headers.get("origin")
        if origin is None:
            return True
        return origin in self.settings.origins() or urlsplit(origin).netloc == ws.headers.get("host")

    async def stream(self, ws: WebSocket) -> None:
        if not self._origin_allowed(ws):
            await ws.close(FORBIDDEN_ORIGIN_CODE, "origin not allowed")
            return
        await ws.accept()
        client = Client(
            ws.send_text,
            lambda code, reason: ws.close(code, reason),
            self.settings.client_queue,
            send_timeout_s=self.settings.client_send_timeout_s,
        )
        self.hub.add(client)
        pump = asyncio.create_task(client.pump())
        try:
            while True:
                try:
                    message = json.loads(await ws.receive_text())
                    if not isinstance(message, dict):
                        raise ValueError("send a JSON object")
                    await self._handle(ws, client, message)
                except (ValueError, KeyError, TypeError, RecursionError, BadRequest) as e:
                    reason = "too deeply nested" if isinstance(e, RecursionError) else str(e)
                    await ws.send_text(json.dumps({"type": "error", "message": f"not understood: {reason}"}))
        except WebSocketDisconnect:
            pass
        except RuntimeError:
            pass  # closed by the hub (too slow) while we waited
        finally:
            self.hub.remove(client)
            await cancel(pump)

    async def _handle(self, ws: WebSocket, client: Client, message: dict[str, Any]) -> None:
        if "subscribe" in message or "unsubscribe" in message:
            names = message.get("subscribe") or message.get("unsubscribe") or []
            if not isinstance(names, list) or not all(
                isinstance(n, str | int) and not isinstance(n, bool) and "\x00" not in str(n) for n in names
            ):
                raise BadRequest("subscribe and unsubscribe take a list of instrument ids or symbols")
            found, unknown = await run_in_threadpool(self._resolve, names)
            if "subscribe" in message:
                self.hub.subscribe(client, set(found))
            else:
                self.hub.unsubscribe(client, set(found))
            await ws.send_text(json.dumps({
                "type": "subscribed" if "subscribe" in message else "unsubscribed",
                "instruments": [{"instrument_id": i, "symbol": s} for i, s in found.items()],
                "unknown": unknown,
            }))  # fmt: skip
        if "since" in message:
            if not isinstance(message["since"], str):
                raise BadRequest("since takes an ISO 8601 time, e.g. 2026-03-09T09:15:00+05:30")
            try:
                since = _utc(datetime.fromisoformat(message["since"]))
            except ValueError:
                raise BadRequest(f"since {message['since'][:40]!r} is not an ISO 8601 time") from None
            await self._replay(ws, client, since)

    def _resolve(self, names: Iterable[str | int]) -> tuple[dict[int, str], list[str]]:
        with self.pool.connection() as conn:
            return resolve(conn, names)

    def _replayed(self, instruments: list[int], since: datetime | None) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            return queries.stored_ticks(conn, instruments, since, REPLAY_LIMIT)

    async def _replay(self, ws: WebSocket, client: Client, since: datetime | None) -> None:
        """What the client missed, from the database, before any further live tick; live copies are skipped."""
        async with client.sending:
            rows = await run_in_threadpool(self._replayed, list(client.instruments), since)
            for r in rows:
                tick = _row_tick(r)
                client.skip.add(tick.tick_id)
                await ws.send_text(tick_message(tick, self.symbols(tick.instrument_id or 0), replay=True).decode())
            await ws.send_text(json.dumps({"type": "replay_done", "count": len(rows)}))

    def page(self, request: Request) -> Response:
        return FileResponse(WEB / "index.html")

    def charts_library(self, request: Request) -> Response:
        if not VENDOR_CHARTS.exists():
            return PlainTextResponse("lightweight-charts is not installed: run scripts/setup.sh (npm ci)", 503)
        return FileResponse(VENDOR_CHARTS, media_type="text/javascript")

    def app(self) -> Starlette:
        settings = self.settings
        # Outermost first: CORS answers a browser's preflight itself (it carries no token), and adds its
        # headers to every answer, a 401 included; then the security headers; then the token.
        middleware = []
        if settings.origins():
            middleware.append(
                Middleware(CORSMiddleware, allow_origins=settings.origins(), allow_headers=["Authorization"])
            )
        middleware.append(Middleware(SecurityHeaders))
        if settings.token is not None:
            middleware.append(Middleware(BearerAuth, token=settings.token.get_secret_value()))
        routes = [
            Route("/", self.page),
            Route("/v1/quotes", self.quotes),
            Route("/v1/candles", self.candles),
            Route("/v1/instruments", self.instruments),
            Route("/v1/lag", self.lag),
            Route("/v1/health", self.health),
            Route("/healthz", self.healthz),
            Route("/readyz", self.readyz),
            WebSocketRoute("/v1/stream", self.stream),
            Route("/static/vendor/lightweight-charts.js", self.charts_library),
            Mount("/static", StaticFiles(directory=WEB)),
        ]
        app = Starlette(
            routes=routes, middleware=middleware, lifespan=self.lifespan, exception_handlers={BadRequest: _bad_request}
        )
        app.state.hub = self.hub
        return app


def create_app(settings: ServeSettings, database_url: str, amqp_url: str, topology: Topology) -> Starlette:
    """The gateway application; its lifespan opens the database pool and the RabbitMQ consumer."""
    return Gateway(settings, database_url, amqp_url, topology).app()


def _param(request: Request, name: str) -> str | None:
    """A query parameter, refused (400) where it holds a NUL, which no text column can."""
    value = request.query_params.get(name)
    if value is not None and "\x00" in value:
        raise BadRequest(f"{name} holds a NUL character")
    return value


async def _bad_request(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": str(exc)}, 400)


def _utc(t: datetime | None) -> datetime | None:
    """ISO times without a zone are UTC."""
    return None if t is None else t if t.tzinfo else t.replace(tzinfo=UTC)


def _row_tick(r: dict[str, Any]) -> Tick:
    return Tick(
        tick_id=r["tick_id"] if isinstance(r["tick_id"], uuid.UUID) else uuid.UUID(str(r["tick_id"])),
        source=r["source"],
        segment=r["segment"],
        security_id=r["security_id"],
        time=r["time"],
        receive_time=r["receive_time"],
        time_source=r["time_source"],
        packet=r["packet"],
        ltp=r["ltp"],
        volume=r["volume"],
        oi=r["oi"],
        change_pct=r["change_pct"],
        bid_price=tuple(r["bid_price"] or ()),
        bid_qty=tuple(r["bid_qty"] or ()),
        ask_price=tuple(r["ask_price"] or ()),
        ask_qty=tuple(r["ask_qty"] or ()),
        instrument_id=r["instrument_id"],
    )
