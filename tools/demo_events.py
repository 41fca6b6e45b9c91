"""`make demo-events`: saga events consumed from the local RabbitMQ as they happen.

Starts the example participants and `saga serve` (embedded SQLite) with its RabbitMQ
sink on the demo's own topic exchange, binds a queue of the demo's own to every routing
key, runs a few travel bookings (one whose car rental fails, so it compensates) and
prints each event as it is consumed: its type, saga id and sequence. Deduplicates by
event id, as a consumer should. Exits 0 once every saga's final event arrived; deletes
its exchange and queues and stops every process it started either way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import aio_pika
from google.protobuf import json_format

from orchestrator.core.events import TYPE_PREFIX
from orchestrator.events.rabbitmq import RabbitMQPublisher, RabbitMQSettings
from saga.examples.v1.inputs_pb2 import TravelBookingInput
from tools.demo import travel_payload
from tools.demo_security import DemoSecurity
from tools.processes import PARTICIPANT_SERVICES, orchestrator_process, participants_process

FAILING_CAR_CLASS = "demo-no-such-car"
"""The participants refuse this car class: that booking compensates."""
FINAL_TYPES = frozenset(
    f"{TYPE_PREFIX}saga.{name}.v1" for name in ("completed", "failed", "needs_intervention")
)
WAIT_SECONDS = 60.0


def bookings(count: int) -> list[dict[str, Any]]:
    """`count` bookings; the second one's car cannot be rented."""
    payloads = [
        travel_payload(n) | {"amount": {"currency_code": "EUR", "amount_minor": 90_000}}
        for n in range(count)
    ]
    payloads[1]["car_class"] = FAILING_CAR_CLASS
    return payloads


def describe(body: bytes) -> tuple[str, str, str, int]:
    """(event id, short type, saga id, sequence) of a CloudEvent."""
    event = json.loads(body)
    short = str(event["type"]).removeprefix(TYPE_PREFIX).removesuffix(".v1")
    return str(event["id"]), short, str(event["subject"]), int(event["sequence"])


async def consume(
    url: str, exchange: str, address: str, payloads: list[dict[str, Any]], wait_seconds: float
) -> bool:
    """Bind a queue, start the sagas, print their events until each saga's final one."""
    settings = RabbitMQSettings(url=url, exchange=exchange)
    declaring = RabbitMQPublisher(settings)
    await declaring.connect()  # the exchange exactly as the relay declares it
    await declaring.close()
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(exchange, exclusive=True)
        await queue.bind(exchange, "#")
        async with DemoSecurity().saga_client(address, "client") as client:
            saga_ids = {
                (
                    await client.start(
                        json_format.ParseDict(payload, TravelBookingInput()),
                        correlation_id=f"demo-events-{n}",
                    )
                ).saga_id
                for n, payload in enumerate(payloads)
            }
        print(f"demo-events: started {len(saga_ids)} sagas; consuming from exchange {exchange}")
        print(f"{'event':<28} {'saga id':<38} sequence")
        seen: set[str] = set()
        finished: set[str] = set()
        deadline = time.monotonic() + wait_seconds
        while finished != saga_ids and time.monotonic() < deadline:
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                await asyncio.sleep(0.05)
                continue
            event_id, short, saga_id, sequence = describe(message.body)
            await message.ack()
            if event_id in seen:
                continue  # a redelivery: consumers deduplicate by event id
            seen.add(event_id)
            print(f"{short:<28} {saga_id:<38} {sequence}")
            if f"{TYPE_PREFIX}{short}.v1" in FINAL_TYPES:
                finished.add(saga_id)
        await queue.delete(if_unused=False, if_empty=False)
        for name in (exchange, settings.unrouted):
            await channel.exchange_delete(name)
        await channel.queue_delete(settings.unrouted)
        return finished == saga_ids
    finally:
        await connection.close()


async def delete_leftovers(url: str, exchange: str) -> None:
    """After a failure: the demo's exchanges and queues, whatever exists of them."""
    unrouted = RabbitMQSettings(url=url, exchange=exchange).unrouted
    with contextlib.suppress(Exception):
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            for queue in (exchange, unrouted):
                with contextlib.suppress(Exception):
                    await channel.queue_delete(queue)
            for name in (exchange, unrouted):
                with contextlib.suppress(Exception):
                    await channel.exchange_delete(name)


def run(url: str, workdir: Path, count: int, timeout: float = WAIT_SECONDS) -> int:
    exchange = f"demo-events-{secrets.token_hex(4)}"
    participants = participants_process(
        workdir, PARTICIPANT_SERVICES, ["--fail-ids", FAILING_CAR_CLASS], name="participants"
    )
    orchestrator = orchestrator_process(
        workdir,
        f"sqlite:///{workdir / 'saga.sqlite3'}",
        {},
        extra_args=["--events-rabbitmq", url, "--events-rabbitmq-exchange", exchange],
    )
    try:
        services = participants.start().info["services"]
        for participant, address in sorted(services.items()):
            orchestrator.argv += ["--participant", f"{participant}={address}"]
        orchestrator.start()
        ok = asyncio.run(consume(url, exchange, orchestrator.address, bookings(count), timeout))
    finally:
        orchestrator.stop()
        participants.stop()
        asyncio.run(delete_leftovers(url, exchange))
    print("demo-events: every saga's final event consumed" if ok else "demo-events: timed out")
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.demo_events", description=__doc__)
    parser.add_argument("--rabbitmq", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--bookings", type=int, default=4)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(".demo") / f"events-{datetime.now():%Y%m%d-%H%M%S}"
    print(f"demo-events: state and logs in {workdir}")
    return run(args.rabbitmq, workdir, max(2, args.bookings))


if __name__ == "__main__":
    sys.exit(main())
