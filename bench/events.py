"""`make bench-events`: what events out cost and how fast they flow (issue 25's figures).

1. Throughput at concurrency `--concurrency` (64) with events off, lifecycle events to
   RabbitMQ, and every transition (`all`); a fresh database each.
2. Latency p50 at concurrency 1, events off and lifecycle.
3. The relay alone: `--relay-events` outbox rows preloaded, then one relay (publisher
   confirms) drains them; events/s.
4. Commit-to-consumer latency, one replica: a consumer's receive time minus each event's
   `time` (the transition's commit clock), p50 and p99.
5. A RabbitMQ outage (a private node, `stop_app` for `--outage-seconds`, 60) while
   sagas keep running; then the time from `start_app` until the backlog is drained.

Closed loop: c workers each start a travel booking and wait for its end on WatchSaga.
Results are printed and saved as JSON in `--out-dir`. Run it on a quiet machine only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import grpc
from google.protobuf import json_format

from bench.pg import Admin, database_url
from orchestrator.client import SagaClient
from orchestrator.core.events import DEFAULT_PARTITIONS, EventSink
from orchestrator.core.records import (
    NewSaga,
    SagaRecord,
    SagaStatus,
    StepRecord,
    TransitionEvent,
    TransitionRecord,
)
from orchestrator.events.rabbitmq import RabbitMQPublisher, RabbitMQSettings
from orchestrator.events.relay import RelaySettings, SinkRelay
from orchestrator.store import Store, open_store
from saga.examples.v1.inputs_pb2 import TravelBookingInput
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tools import rabbitmq_node
from tools.demo import travel_payload
from tools.processes import PARTICIPANT_SERVICES, orchestrator_process
from tools.processes import participants_process as participants_of

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"


class Consumer:
    """A durable queue bound to every key of a bench-owned exchange (declared as the
    relay declares it); deleted with the exchange afterwards."""

    def __init__(self, url: str) -> None:
        token = secrets.token_hex(4)
        self.url, self.exchange, self.queue = url, f"bench-events-{token}", f"bench-events-{token}"

    async def declare(self) -> None:
        declaring = RabbitMQPublisher(RabbitMQSettings(url=self.url, exchange=self.exchange))
        await declaring.connect()
        await declaring.close()
        async with await aio_pika.connect(self.url) as connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(self.queue, durable=True)
            await queue.bind(self.exchange, "#")

    async def delete(self) -> None:
        unrouted = RabbitMQSettings(url=self.url, exchange=self.exchange).unrouted
        with contextlib.suppress(Exception):
            async with await aio_pika.connect(self.url) as connection:
                channel = await connection.channel()
                for queue in (self.queue, unrouted):
                    await channel.queue_delete(queue)
                for exchange in (self.exchange, unrouted):
                    await channel.exchange_delete(exchange)


def preloaded_saga(saga_id: str) -> NewSaga:
    """A saga row with its started transition: one outbox row per sink."""
    now = datetime.now(UTC)
    record = SagaRecord(
        saga_id=saga_id,
        saga_type="trip",
        definition_version=1,
        correlation_id=saga_id,
        payload={},
        status=SagaStatus.RUNNING,
        create_time=now,
        update_time=now,
    )
    started = TransitionRecord(saga_id, 1, TransitionEvent.SAGA_STARTED, now, SagaStatus.RUNNING)
    return NewSaga(record, (StepRecord(saga_id, 0, "only"),), (started,))


async def poll(check: Callable[[], Awaitable[bool]], limit_seconds: float = 600) -> None:
    """Until `check` holds (bounded), looking every 10 ms."""
    for _ in range(int(limit_seconds * 100)):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise TimeoutError(f"not within {limit_seconds} s")


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.out_dir)
        self.run = 0
        self.admin = Admin(args.postgres_url) if args.postgres_url else None
        self.databases: list[str] = []
        self.participants = participants_of(
            self.out, PARTICIPANT_SERVICES, ["--capacity", "10000000"]
        )

    def database(self) -> str:
        """A fresh database per run: a SQLite file, or with `--postgres-url` a throwaway
        database on that server (dropped at the end)."""
        self.run += 1
        if self.admin is None:
            return f"sqlite:///{self.out / f'events-{self.run}.sqlite3'}"
        name = self.admin.create_database()
        self.databases.append(name)
        return database_url(self.admin.server_url, name)

    def close(self) -> None:
        if self.admin is not None:
            for name in self.databases:
                self.admin.drop_database(name)
            self.admin.close()

    @contextlib.contextmanager
    def orchestrator(self, database: str, events: str, url: str, exchange: str) -> Any:
        flags = (
            []
            if events == "off"
            else [
                "--events-rabbitmq",
                url,
                "--events-rabbitmq-exchange",
                exchange,
                "--events-set",
                events,
            ]
        )
        process = orchestrator_process(
            self.out,
            database,
            self.participants.info["services"],
            name=f"orchestrator-{self.run}",
            extra_args=flags,
        )
        try:
            yield process.start()
        finally:
            process.stop()

    async def load(self, address: str, concurrency: int, seconds: float) -> tuple[int, list[float]]:
        """(sagas finished, their latencies in ms) of a closed loop for `seconds`."""
        finished: list[float] = []
        stop_at = time.monotonic() + seconds
        async with grpc.aio.insecure_channel(address) as channel:
            client = SagaClient.over(pb_grpc.SagaOrchestratorStub(channel), timeout=30)

            async def worker(n: int) -> None:
                number = 0
                while time.monotonic() < stop_at:
                    payload = travel_payload(number % 4) | {
                        "amount": {"currency_code": "EUR", "amount_minor": 1000}
                    }
                    began = time.perf_counter()
                    handle = await client.start(
                        json_format.ParseDict(payload, TravelBookingInput()),
                        correlation_id=f"bench-{n}-{number}",
                    )
                    await client.wait(handle.saga_id, 60)
                    finished.append((time.perf_counter() - began) * 1000)
                    number += 1

            await asyncio.gather(*(worker(n) for n in range(concurrency)))
        return len(finished), finished

    async def throughput(self, consumer: Consumer) -> dict[str, Any]:
        a = self.args
        result: dict[str, Any] = {}
        for events in ("off", "lifecycle", "all"):
            with self.orchestrator(self.database(), events, RABBITMQ_URL, consumer.exchange) as o:
                count, _ = await self.load(o.address, a.concurrency, a.seconds)
            result[f"c{a.concurrency}_{events}_sagas_per_s"] = round(count / a.seconds, 1)
        for events in ("off", "lifecycle"):
            with self.orchestrator(self.database(), events, RABBITMQ_URL, consumer.exchange) as o:
                _, latencies = await self.load(o.address, 1, a.seconds)
            result[f"c1_{events}_p50_ms"] = round(statistics.median(latencies), 3)
        return result

    async def relay_alone(self, consumer: Consumer) -> dict[str, Any]:
        sink = EventSink("rabbitmq", partitions=DEFAULT_PARTITIONS)
        store = open_store(self.database(), event_sinks=(sink,))
        await store.open()
        try:
            n = self.args.relay_events
            for start in range(0, n, 500):
                await store.create_sagas(
                    [preloaded_saga(f"preload-{i}") for i in range(start, min(n, start + 500))]
                )
            publisher = RabbitMQPublisher(
                RabbitMQSettings(url=RABBITMQ_URL, exchange=consumer.exchange)
            )
            relay = SinkRelay(store, sink, publisher, "bench", RelaySettings(lease_seconds=30))
            began = time.perf_counter()
            task = asyncio.create_task(relay.run())

            async def drained() -> bool:
                return not await store.event_backlog()

            await poll(drained)
            elapsed = time.perf_counter() - began
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        finally:
            await store.close()
        return {"relay_events": n, "relay_events_per_s": round(n / elapsed, 1)}

    async def commit_to_consumer(self, consumer: Consumer) -> dict[str, Any]:
        lags: list[float] = []
        connection = await aio_pika.connect(RABBITMQ_URL)
        async with connection:
            channel = await connection.channel()
            queue = await channel.get_queue(consumer.queue, ensure=False)
            await queue.purge()

            async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                received = datetime.now(UTC)
                event = json.loads(message.body)
                lags.append(
                    (received - datetime.fromisoformat(event["time"])).total_seconds() * 1000
                )
                await message.ack()

            tag = await queue.consume(on_message)
            with self.orchestrator(
                self.database(), "lifecycle", RABBITMQ_URL, consumer.exchange
            ) as o:
                count, _ = await self.load(o.address, 4, self.args.seconds)

                async def all_in() -> bool:
                    return len(lags) >= 2 * count  # started, completed

                await poll(all_in, 60)
            await queue.cancel(tag)
        return {
            "commit_to_consumer_p50_ms": round(percentile(lags, 0.5), 3),
            "commit_to_consumer_p99_ms": round(percentile(lags, 0.99), 3),
            "commit_to_consumer_events": len(lags),
        }

    @staticmethod
    async def pending_ids(store: Store) -> list[int]:
        """The outbox ids of every undelivered event of the sink."""
        return [
            row.id
            for partition in range(DEFAULT_PARTITIONS)
            for row in await store.pending_events("rabbitmq", partition, 1_000_000)
        ]

    async def outage(self) -> dict[str, Any]:
        with rabbitmq_node.private_rabbitmq() as node:
            consumer = Consumer(node.url)
            await consumer.declare()
            database = self.database()
            with self.orchestrator(database, "lifecycle", node.url, consumer.exchange) as o:
                loading = asyncio.create_task(
                    self.load(o.address, 8, 2 * self.args.outage_seconds + 30)
                )
                await asyncio.sleep(1)
                await asyncio.to_thread(node.stop_app)
                await asyncio.sleep(self.args.outage_seconds)
                await asyncio.to_thread(node.start_app)
                back = time.perf_counter()
                store = open_store(database)
                await store.open()
                at_return = await self.pending_ids(store)

                async def drained() -> bool:
                    # What waited at the return is gone (sagas go on adding more).
                    pending = await self.pending_ids(store)
                    return not pending or min(pending) > max(at_return, default=0)

                await poll(drained)
                drain_seconds = time.perf_counter() - back
                await store.close()
                loading.cancel()
                await asyncio.gather(loading, return_exceptions=True)
        return {
            "outage_seconds": self.args.outage_seconds,
            "outage_backlog_at_return": len(at_return),
            "outage_drain_seconds": round(drain_seconds, 3),
        }


@contextlib.asynccontextmanager
async def declared() -> AsyncIterator[Consumer]:
    consumer = Consumer(RABBITMQ_URL)
    await consumer.declare()
    try:
        yield consumer
    finally:
        await consumer.delete()


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    bench = Bench(args)
    bench.participants.start()
    try:
        results: dict[str, Any] = {
            "load_before": os.getloadavg()[0],
            "store": "postgresql" if args.postgres_url else "sqlite",
            "args": vars(args),
        }
        async with declared() as consumer:
            results |= await bench.throughput(consumer)
            results |= await bench.relay_alone(consumer)
            results |= await bench.commit_to_consumer(consumer)
        if args.outage_seconds > 0:
            results |= await bench.outage()
        return results
    finally:
        bench.participants.stop()
        bench.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.events", description=__doc__)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--relay-events", type=int, default=20_000)
    parser.add_argument("--outage-seconds", type=float, default=60.0)
    parser.add_argument("--out-dir", default=".bench/events")
    parser.add_argument(
        "--postgres-url", default="", help="run on PostgreSQL (a throwaway database per run)"
    )
    args = parser.parse_args(argv)
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    results = asyncio.run(measure(args))
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    saved = Path(args.out_dir) / f"events-{stamp}.json"
    saved.write_text(json.dumps(results, indent=2))
    for key, value in results.items():
        if key != "args":
            print(f"{key:<32} {value}")
    print(f"saved {saved}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
