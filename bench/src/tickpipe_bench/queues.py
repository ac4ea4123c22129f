"""Benchmark: classic vs quorum queue for tickpipe's messages (publish with confirms, then consume).

uv run python -m tickpipe_bench.queues --messages 400 --ticks-per-message 500
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

import aio_pika

from tickpipe_bench.workers import make_messages


async def run(amqp_url: str, queue_type: str, bodies: list[bytes]) -> tuple[float, float]:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        name = f"bench-{queue_type}-{uuid.uuid4().hex[:8]}"
        queue = await channel.declare_queue(name, durable=True, arguments={"x-queue-type": queue_type})
        start = time.perf_counter()
        for i in range(0, len(bodies), 16):  # 16 in flight, like the ingestion publisher's pipelining
            await asyncio.gather(
                *(
                    channel.default_exchange.publish(
                        aio_pika.Message(b, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=name
                    )
                    for b in bodies[i : i + 16]
                )
            )
        published = time.perf_counter() - start
        await channel.set_qos(prefetch_count=100)
        done = asyncio.Event()
        received = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal received
            received += 1
            if received % 10 == 0 or received == len(bodies):
                await message.ack(multiple=True)
            if received == len(bodies):
                done.set()

        start = time.perf_counter()
        await queue.consume(on_message)
        await done.wait()
        consumed = time.perf_counter() - start
        await queue.delete(if_unused=False, if_empty=False)
        return published, consumed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--ticks-per-message", type=int, default=500)
    parser.add_argument("--amqp", default=os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"))
    args = parser.parse_args()
    bodies = make_messages(args.messages * args.ticks_per_message, args.ticks_per_message)
    ticks = args.messages * args.ticks_per_message
    results = {qt: asyncio.run(run(args.amqp, qt, bodies)) for qt in ("classic", "quorum")}
    base_pub, base_con = results["classic"]
    for qt, (pub, con) in results.items():
        print(
            f"{qt:8} publish {ticks / pub:,.0f} ticks/s ({base_pub / pub:.2f}x classic)  "
            f"consume {ticks / con:,.0f} ticks/s ({base_con / con:.2f}x classic)"
        )


if __name__ == "__main__":
    main()
