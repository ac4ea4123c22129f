"""Prometheus metrics and health endpoints, served by every long-running process on METRICS_PORT.

Stages keep their own plain counters on the hot path; a collector of each service reads them when
Prometheus scrapes, so nothing is counted twice and a scrape costs nothing between scrapes. The
server (Starlette on uvicorn, in the process's own event loop, so a collector never races the
stages) answers `/metrics`, `/healthz` (the process is alive: its loop answers) and `/readyz`
(connected and flowing, as the service defines it: 200 or 503 with the reason).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import urllib.request
from collections.abc import Callable, Generator, Iterable, Mapping

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tickpipe_core.errors import ConfigError
from tickpipe_core.logging import get_logger

log = get_logger("metrics")

Readiness = Callable[[], tuple[bool, str]]
"""Whether the process is ready (connected and flowing), and why (or why not)."""


def scrape(port: int, host: str = "127.0.0.1", timeout: float = 3.0) -> list[Sample]:
    """Every sample a tickpipe process serves on host:port/metrics (OSError when nothing answers)."""
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout) as response:
        text = response.read().decode()
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def counter(name: str, doc: str, value: float, labels: Mapping[str, str] | None = None) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), value)
    return family


def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def labelled(
    family: CounterMetricFamily | GaugeMetricFamily, samples: Iterable[tuple[Iterable[str], float]]
) -> CounterMetricFamily | GaugeMetricFamily:
    for labels, value in samples:
        family.add_metric(list(labels), value)
    return family


class FunctionCollector(Collector):
    """A collector whose metrics a function builds at scrape time."""

    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self._collect = collect

    def collect(self) -> Iterable[Metric]:
        return self._collect()


def registry_of(collect: Callable[[], Iterable[Metric]]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FunctionCollector(collect))
    return registry


class _InLoopServer(uvicorn.Server):
    """uvicorn inside a process that owns its signals: SIGTERM is the service's, not the server's."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class MetricsServer:
    """`/metrics`, `/healthz` and `/readyz` on host:port, in the running event loop."""

    def __init__(self, registry: CollectorRegistry, ready: Readiness, host: str, port: int) -> None:
        self.registry, self.ready, self.host, self.port = registry, ready, host, port
        self._server: _InLoopServer | None = None
        self._task: asyncio.Task[None] | None = None

    def _app(self) -> Starlette:
        async def metrics(_: Request) -> Response:
            return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

        async def healthz(_: Request) -> Response:
            return PlainTextResponse("ok\n")

        async def readyz(_: Request) -> Response:
            ok, why = self.ready()
            return PlainTextResponse(f"{why}\n", status_code=200 if ok else 503)

        return Starlette(routes=[Route("/metrics", metrics), Route("/healthz", healthz), Route("/readyz", readyz)])

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as e:
            sock.close()
            raise ConfigError(f"METRICS_PORT {self.port} on {self.host}: {e.strerror}") from None
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self._app(), log_config=None, access_log=False, lifespan="off")
        self._server = _InLoopServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="metrics-server")
        log.info("metrics_serving", host=self.host, port=self.port, paths=["/metrics", "/healthz", "/readyz"])

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._task, 3)
