"""The choreographed travel services as real processes on the local RabbitMQ.

Each test gets an exchange and queues of its own (deleted after, with every process it
started stopped by PID), an observer queue bound to every travel event, and a way to
publish events as the booking front end or the orchestrator would.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from participants.choreography import events as ev
from participants.choreography.services import SERVICES
from participants.choreography.state import read_bookings, read_inventory
from tools.choreography_demo import service_process
from tools.processes import ChildProcess

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
WAIT_SECONDS = 30.0
FRONT_END = "/travel/front-end"
ORCHESTRATOR = "/saga-orchestrator"


@dataclass
class Choreography:
    """One test's services, exchange, observer and publisher."""

    workdir: Path
    exchange: str
    channel: aio_pika.abc.AbstractChannel
    observer: aio_pika.abc.AbstractQueue
    processes: dict[str, ChildProcess] = field(default_factory=dict)
    seen: list[ev.CloudEvent] = field(default_factory=list)

    def start(self, name: str, env: Mapping[str, str] | None = None) -> ChildProcess:
        """Start a service (again, on the same file and queue, if it ran before)."""
        process = service_process(
            self.workdir, name, RABBITMQ_URL, self.exchange, capacity=5, env=env
        )
        self.processes[f"{name}-{len(self.processes)}"] = process
        return process.start()

    async def publish(self, event: ev.CloudEvent) -> None:
        exchange = await self.channel.get_exchange(self.exchange)
        await exchange.publish(
            aio_pika.Message(event.body(), content_type=ev.STRUCTURED, message_id=event.id),
            routing_key=event.type,
        )

    async def start_booking(self, data: Mapping[str, Any]) -> ev.CloudEvent:
        event = ev.new_event(FRONT_END, ev.BOOKING_STARTED, data, str(data["booking_id"]))
        await self.publish(event)
        return event

    async def wait_for(
        self, until: Callable[[list[ev.CloudEvent]], bool], timeout: float = WAIT_SECONDS
    ) -> list[ev.CloudEvent]:
        """Consume the observer queue until `until(everything seen)` holds (bounded)."""
        deadline = time.monotonic() + timeout
        while not until(self.seen):
            if time.monotonic() > deadline:
                got = [f"{e.short_type}:{e.subject}" for e in self.seen]
                raise AssertionError(f"not seen within {timeout}s; seen {got}")
            message = await self.observer.get(no_ack=True, fail=False)
            if message is None:
                await asyncio.sleep(0.02)
                continue
            with contextlib.suppress(ev.MalformedEvent):  # a test's junk on purpose
                self.seen.append(
                    ev.parse_message(message.body, message.content_type, message.headers)
                )
        return self.seen

    def of(self, booking_id: str) -> list[ev.CloudEvent]:
        """What the services published about one booking, in order."""
        return [e for e in self.seen if e.subject == booking_id and e.source != FRONT_END]

    def bookings(self, name: str) -> dict[str, dict[str, Any]]:
        return read_bookings(self.workdir / f"{name}.sqlite3")

    def held(self, name: str) -> dict[str, int]:
        return read_inventory(self.workdir / f"{name}.sqlite3")


def count(events: Iterable[ev.CloudEvent], short_type: str, booking_id: str) -> int:
    return sum(1 for e in events if e.short_type == short_type and e.subject == booking_id)


def types_of(events: Iterable[ev.CloudEvent]) -> list[str]:
    return [e.short_type for e in events]


@pytest.fixture
async def choreography(tmp_path: Path) -> AsyncIterator[Choreography]:
    """An exchange and observer of this test's own; the services are started by the test
    (`choreography.start(name)`), and every process and queue is gone afterwards."""
    exchange_name = f"test-choreography-{secrets.token_hex(4)}"
    connection = await aio_pika.connect(RABBITMQ_URL)
    setup = Choreography(tmp_path, exchange_name, await connection.channel(), None)  # type: ignore[arg-type]
    try:
        exchange = await setup.channel.declare_exchange(
            exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        setup.observer = await setup.channel.declare_queue(f"{exchange_name}.observer")
        await setup.observer.bind(exchange, routing_key=f"{ev.PREFIX}#")
        yield setup
    finally:
        for process in setup.processes.values():
            process.stop()
        channel = await connection.channel()
        for queue in [*(f"{exchange_name}.{name}" for name in SERVICES), "observer"]:
            name = queue if queue.startswith(exchange_name) else f"{exchange_name}.{queue}"
            await channel.queue_delete(name)
        await channel.exchange_delete(exchange_name)
        await connection.close()


@pytest.fixture
async def running(choreography: Choreography) -> Choreography:
    """The three services started."""
    for name in SERVICES:
        choreography.start(name)
    return choreography
