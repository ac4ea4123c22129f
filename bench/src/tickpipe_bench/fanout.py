"""Benchmark: the gateway's live fan-out to many WebSocket clients on loopback.

A `tickpipe serve` process consumes a stream of numbered ticks published to RabbitMQ at a fixed rate;
CLIENTS WebSocket clients (spread over client processes) each subscribe to a few instruments and
check that they get every tick of their instruments, in order. Latency is publish to client receive
(one clock: this machine's). The baseline, measured in the same run on the same ticks, is a bare
RabbitMQ consumer of the published messages: the fan-out's cost is the ratio to it.

    uv run python -m tickpipe_bench.fanout [--clients 1000] [--rate 2000] [--seconds 15]

Needs TEST_DATABASE_URL (a server with TimescaleDB) and TEST_AMQP_URL; it creates and drops its own
database and queue names.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import multiprocessing as mp
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import aio_pika
import psycopg

from tickpipe_bench.common import cpu_seconds, peak_rss_kib
from tickpipe_core import Tick, Topology, encode_batch, new_tick_id
from tickpipe_core.codec import CONTENT_TYPE
from tickpipe_core.db import with_database
from tickpipe_core.migrate import migrate
from tickpipe_core.topology import TICKS_ROUTING_KEY
from tickpipe_instruments import parse_master, sync_instruments

HEADER = (
    "SEM_EXM_EXCH_ID,SEM_SEGMENT,SEM_SMST_SECURITY_ID,SEM_INSTRUMENT_NAME,SEM_EXPIRY_CODE,SEM_TRADING_SYMBOL,"
    "SEM_LOT_UNITS,SEM_CUSTOM_SYMBOL,SEM_EXPIRY_DATE,SEM_STRIKE_PRICE,SEM_OPTION_TYPE,SEM_TICK_SIZE,"
    "SEM_EXPIRY_FLAG,SEM_EXCH_INSTRUMENT_TYPE,SEM_SERIES,SM_SYMBOL_NAME"
)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else float("nan")


def clients_main(port: int, subscriptions: list[list[int]], per_instrument: int, out: Any, ready: Any) -> None:
    """One client process: its share of the WebSocket clients; reports what they got."""
    from websockets.asyncio.client import connect

    async def one(ids: list[int]) -> dict[str, Any]:
        seen: dict[int, int] = dict.fromkeys(ids, 0)
        out_of_order = 0
        latencies: list[float] = []
        async with connect(f"ws://127.0.0.1:{port}/v1/stream", max_size=None, open_timeout=60) as ws:
            await ws.send(json.dumps({"subscribe": ids}))
            await ws.recv()
            ready.put(1)
            total = per_instrument * len(ids)
            got = 0
            while got < total:
                m = json.loads(await asyncio.wait_for(ws.recv(), 60))
                ticks = m["ticks"] if m.get("type") == "ticks" else [m] if m.get("type") == "tick" else []
                now = time.time()
                for t in ticks:
                    got += 1
                    iid, n = t["instrument_id"], t["volume"]
                    out_of_order += n != seen[iid] + 1
                    seen[iid] = n
                    if got % 4 == 0:
                        latencies.append(now - datetime.fromisoformat(t["receive_time"]).timestamp())
        return {"got": got, "expected": total, "out_of_order": out_of_order, "latencies": latencies}

    async def main() -> None:
        results = await asyncio.gather(*(one(ids) for ids in subscriptions), return_exceptions=True)
        failed = [repr(r) for r in results if isinstance(r, BaseException)]
        ok = [r for r in results if isinstance(r, dict)]
        out.put(
            {
                "clients": len(ok),
                "failed": failed[:5],
                "failures": len(failed),
                "got": sum(r["got"] for r in ok),
                "expected": sum(r["expected"] for r in ok),
                "out_of_order": sum(r["out_of_order"] for r in ok),
                "latencies": [x for r in ok for x in r["latencies"]],
            }
        )

    asyncio.run(main())


def _tick(iid: int, n: int) -> Tick:
    now = datetime.now(UTC)
    return Tick(
        tick_id=new_tick_id(), source="dhan", segment="NSE_EQ", security_id=iid, time=now, receive_time=now,
        time_source="receive", packet="full", ltp=100.0 + n / 100, volume=n, instrument_id=iid,
        bid_price=(99.9,), bid_qty=(10,), ask_price=(100.1,), ask_qty=(12,),
    )  # fmt: skip


async def publish(amqp_url: str, topology: Topology, ids: list[int], rate: float, seconds: float) -> float:
    """Numbered ticks round-robin over `ids` at `rate` per second, 10 ms batches; returns the elapsed time."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=False)
        exchange, _ = await topology.declare(channel)
        total = int(rate * seconds) // len(ids) * len(ids)
        counters = dict.fromkeys(ids, 0)
        started, sent, k = time.perf_counter(), 0, 0
        while sent < total:
            due = int((time.perf_counter() - started) * rate) - sent
            if due <= 0:
                await asyncio.sleep(0.005)
                continue
            batch = []
            for _ in range(min(due, total - sent)):
                iid = ids[k % len(ids)]
                k += 1
                counters[iid] += 1
                batch.append(_tick(iid, counters[iid]))
            await exchange.publish(
                aio_pika.Message(encode_batch(batch), content_type=CONTENT_TYPE), routing_key=TICKS_ROUTING_KEY
            )
            sent += len(batch)
        return time.perf_counter() - started


async def baseline(amqp_url: str, topology: Topology, ids: list[int], rate: float, seconds: float) -> list[float]:
    """The same stream to one bare consumer of the exchange: publish-to-receive latency without the gateway."""
    from tickpipe_core import decode_batch

    connection = await aio_pika.connect(amqp_url)
    latencies: list[float] = []
    async with connection:
        channel = await connection.channel()
        exchange, _ = await topology.declare(channel)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key=TICKS_ROUTING_KEY)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            now = time.time()
            latencies.extend(now - t.receive_time.timestamp() for t in decode_batch(message.body)[::4])

        await queue.consume(on_message, no_ack=True)
        await publish(amqp_url, topology, ids, rate, seconds)
        await asyncio.sleep(1)
    return latencies


def proc_usage(pid: int) -> tuple[float, int]:
    """CPU seconds (user + system) and peak RSS in bytes of a process."""
    return cpu_seconds(pid) or 0.0, peak_rss_kib(pid) * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--instruments", type=int, default=500, help="Instruments in the stream.")
    parser.add_argument("--per-client", type=int, default=3, help="Instruments each client subscribes to.")
    parser.add_argument("--rate", type=float, default=2000.0, help="Ticks per second in the stream.")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--client-processes", type=int, default=2)
    args = parser.parse_args()

    server_url = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    amqp_url = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    name = f"bench_fanout_{uuid.uuid4().hex[:8]}"
    db_url = with_database(server_url, name)
    topology = Topology(prefix=f"bench-{uuid.uuid4().hex[:8]}")
    migrate(db_url)
    lines = [
        f"NSE,E,{9000 + i},EQUITY,0,BENCH{i},1.0,BENCH {i},,,,5.0000,NA,ES,EQ,BENCH {i}"
        for i in range(args.instruments)
    ]
    sync_instruments(db_url, parse_master("dhan", io.StringIO("\n".join([HEADER, *lines]))))
    with psycopg.connect(db_url) as conn:
        ids = [r[0] for r in conn.execute("select instrument_id from instruments order by instrument_id")]

    port = 18000 + random.randint(0, 999)
    env = {**os.environ, "DATABASE_URL": db_url, "AMQP_URL": amqp_url, "AMQP_PREFIX": topology.prefix,
           "SERVE_PORT": str(port), "SERVE_CLIENT_QUEUE": "10000", "LOG_LEVEL": "WARNING"}  # fmt: skip
    gateway = subprocess.Popen([sys.executable, "-m", "tickpipe", "serve"], env=env)
    try:
        print("baseline: bare RabbitMQ consumer ...", flush=True)
        base = asyncio.run(baseline(amqp_url, topology, ids, args.rate, min(args.seconds, 10)))
        time.sleep(2)
        per_instrument = int(args.rate * args.seconds) // len(ids)
        rng = random.Random(1)
        subscriptions = [rng.sample(ids, args.per_client) for _ in range(args.clients)]
        out: mp.Queue[Any] = mp.Queue()
        ready: mp.Queue[Any] = mp.Queue()
        shares = [subscriptions[i :: args.client_processes] for i in range(args.client_processes)]
        workers = [mp.Process(target=clients_main, args=(port, s, per_instrument, out, ready)) for s in shares]
        cpu0, _ = proc_usage(gateway.pid)
        for w in workers:
            w.start()
        for _ in range(args.clients):
            ready.get(timeout=120)
        print(
            f"{args.clients} clients subscribed; streaming {args.rate:.0f} ticks/s for {args.seconds:.0f} s ...",
            flush=True,
        )
        elapsed = asyncio.run(publish(amqp_url, topology, ids, args.rate, args.seconds))
        results = [out.get(timeout=180) for _ in workers]
        for w in workers:
            w.join(30)
        cpu1, rss = proc_usage(gateway.pid)
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(30)
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}"')

    latencies = [x for r in results for x in r["latencies"]]
    got, expected = sum(r["got"] for r in results), sum(r["expected"] for r in results)
    print(f"published {int(args.rate * args.seconds) // len(ids) * len(ids):,} ticks in {elapsed:.1f} s")
    print(f"clients: {sum(r['clients'] for r in results)} ok, {sum(r['failures'] for r in results)} failed "
          f"{[f for r in results for f in r['failed']][:3]}")  # fmt: skip
    print(f"messages: {got:,} of {expected:,} expected, {sum(r['out_of_order'] for r in results)} out of order")
    print(
        f"baseline (bare consumer)  p50 {percentile(base, 50) * 1e3:7.2f} ms  p99 {percentile(base, 99) * 1e3:7.2f} ms"
    )
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    print(
        f"fan-out (publish->client) p50 {p50 * 1e3:7.2f} ms  p99 {p99 * 1e3:7.2f} ms  max {max(latencies) * 1e3:.1f} ms"
    )
    print(f"ratio to baseline          p50 {p50 / percentile(base, 50):.1f}x  p99 {p99 / percentile(base, 99):.1f}x")
    cores = (cpu1 - cpu0) / args.seconds
    print(f"gateway: {cpu1 - cpu0:.1f} CPU s over the run ({cores:.2f} cores), peak RSS {rss / 2**20:.0f} MiB")
    print(f"messages/s out: {got / args.seconds:,.0f}; mean latency {statistics.fmean(latencies) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
