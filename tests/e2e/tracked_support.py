"""Real `saga serve` processes tracking a choreography on RabbitMQ, for tests/e2e/test_tracked_*.

A `Choreography` is one test's uniquely named topic exchange and queues on a broker (the
machine's, or a private node), deleted afterwards. The test plays the choreographed
services: it publishes their CloudEvents (structured JSON, persistent, confirmed) and,
when a rescue publishes a compensation event, reads it from a queue of its own. The
trackers are `saga serve` processes on PostgreSQL loading `tests.e2e.tracked_definitions`;
what they recorded is read straight from the test's schema.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import aio_pika
import psycopg

from orchestrator.core.incoming import IncomingEvent
from orchestrator.core.tracking import TrackedTypes
from tests.e2e.tracked_definitions import CAR_WITHIN_ENV, DEFINITIONS, ON_STUCK_ENV, WITHIN_ENV
from tools.processes import ChildProcess, orchestrator_process

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFINITIONS_MODULE = "tests.e2e.tracked_definitions"
SAGA_TYPE = "travel_choreography"
TRACKED_TYPES = tuple(sorted(TrackedTypes(DEFINITIONS).event_types))
"""Every event type the tracked travel type declares (the tracker's queue bindings)."""

COMPLETED_RUN = [
    ("SAGA_STARTED", ""),
    ("STEP_WAITING", "book_flight"),
    ("STEP_COMPLETED", "book_flight"),
    ("STEP_WAITING", "book_hotel"),
    ("STEP_COMPLETED", "book_hotel"),
    ("STEP_WAITING", "rent_car"),
    ("STEP_COMPLETED", "rent_car"),
    ("SAGA_COMPLETED", ""),
]
"""A completed booking's log as one replica alone records it, anomaly rows left out."""

UNCALLED = "127.0.0.1:0"
"""The hotel participant's address where no rescue runs: the channel is never used."""
WAIT_SECONDS = 60.0
T_ = TypeVar("T_")


def cloudevent_json(event: IncomingEvent) -> bytes:
    """A service's event in the structured JSON format."""
    document = {
        "specversion": "1.0",
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "datacontenttype": "application/json",
        "data": dict(event.data or {}),
    }
    return json.dumps(document).encode()


async def connect(url: str, attempts: int = 60) -> aio_pika.abc.AbstractConnection:
    """A connection, retried while a (restarting) node does not listen yet."""
    for attempt in range(attempts):
        try:
            return await aio_pika.connect(url, timeout=5)
        except (OSError, aio_pika.exceptions.AMQPConnectionError):
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.5)
    raise AssertionError("unreachable")


@dataclass
class Choreography:
    """One test's exchange and queues, and the trackers consuming them."""

    url: str = RABBITMQ_URL
    prefix: str = "tracked-e2e"
    token: str = field(default_factory=lambda: secrets.token_hex(4))
    queues: list[str] = field(default_factory=list)

    @property
    def exchange(self) -> str:
        return f"{self.prefix}-{self.token}"

    @property
    def tracker_queue(self) -> str:
        return f"{self.exchange}.tracker"

    def tracker(
        self,
        workdir: Path,
        database_url: str,
        name: str,
        *,
        within: float = 60.0,
        car_within: float | None = None,
        on_stuck: str = "NEEDS_INTERVENTION",
        env: Mapping[str, str] | None = None,
        participants: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
    ) -> ChildProcess:
        """An unstarted `saga serve` tracking this choreography (metrics on port 0)."""
        return orchestrator_process(
            workdir,
            database_url,
            participants or {"hotel": UNCALLED},
            env={
                WITHIN_ENV: str(within),
                CAR_WITHIN_ENV: str(within if car_within is None else car_within),
                ON_STUCK_ENV: on_stuck,
                **(env or {}),
            },
            name=name,
            extra_args=[
                *("--definitions", DEFINITIONS_MODULE),
                *("--track-rabbitmq-url", self.url),
                *("--track-rabbitmq-exchange", self.exchange),
                *("--track-rabbitmq-queue", self.tracker_queue),
                *("--metrics-listen", "127.0.0.1:0"),
                *("--replica-id", name),
                *extra_args,
            ],
        )

    async def declare(self) -> None:
        """The exchange and the tracker's queue, bound as the trackers bind it, so events
        published before any tracker runs wait in the queue."""
        await self.listen(self.tracker_queue, *TRACKED_TYPES)

    async def listen(self, queue: str, *event_types: str) -> str:
        """A durable queue of this test bound to `event_types` (a service's inbox)."""
        connection = await connect(self.url)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.declare_exchange(
                self.exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
            declared = await channel.declare_queue(queue, durable=True)
            for event_type in event_types:
                await declared.bind(exchange, routing_key=event_type)
        if queue not in self.queues:
            self.queues.append(queue)
        return queue

    async def publish(
        self, events: Sequence[IncomingEvent], attempts: int = 60, *, in_order: bool = True
    ) -> None:
        """Publish the services' events, persistent, each confirmed by the broker
        (connecting is tried `attempts` times, 0.5 s apart). `in_order`: one after another,
        so the broker keeps their order; otherwise all at once, faster, in no set order."""
        connection = await connect(self.url, attempts)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(self.exchange)
            sends = (
                exchange.publish(
                    aio_pika.Message(
                        cloudevent_json(event),
                        content_type="application/cloudevents+json",
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        message_id=event.id,
                    ),
                    routing_key=event.type,
                )
                for event in events
            )
            if in_order:
                for send in sends:
                    await send
            else:
                await asyncio.gather(*sends)

    async def received(self, queue: str) -> list[dict[str, Any]]:
        """Every message now in `queue`, taken off it (the CloudEvents, as JSON)."""
        connection = await connect(self.url)
        taken = []
        async with connection:
            channel = await connection.channel()
            declared = await channel.declare_queue(queue, durable=True, passive=True)
            while (message := await declared.get(no_ack=True, fail=False)) is not None:
                taken.append(json.loads(message.body))
        return taken

    async def delete(self) -> None:
        """Delete the queues (the tracker's too) and the exchange."""
        connection = await connect(self.url, attempts=5)
        async with connection:
            channel = await connection.channel()
            for queue in {*self.queues, self.tracker_queue}:
                await channel.queue_delete(queue)
            await channel.exchange_delete(self.exchange)


@dataclass(frozen=True)
class TrackedSaga:
    """One instance as the store holds it."""

    saga_id: str
    correlation: str
    status: str
    needs_intervention: bool


class Row(NamedTuple):
    """One transition of a saga's log."""

    event: str
    step: str
    actor: str
    error: str
    reason: str


class Recorded:
    """What the trackers committed, read from the test's schema."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    async def _rows(self, query: str, *params: object) -> list[tuple[Any, ...]]:
        async with await psycopg.AsyncConnection.connect(self.database_url) as connection:
            cursor = await connection.execute(query, params)
            return list(await cursor.fetchall())

    async def sagas(self) -> list[TrackedSaga]:
        rows = await self._rows(
            "SELECT saga_id, correlation_id, status, needs_intervention FROM sagas"
            " WHERE saga_type = %s ORDER BY correlation_id",
            SAGA_TYPE,
        )
        return [TrackedSaga(*row) for row in rows]

    async def logs(self) -> dict[str, list[Row]]:
        """Per saga id, its transitions in order."""
        rows = await self._rows(
            "SELECT saga_id, event, step, actor, error, reason FROM saga_transitions"
            " ORDER BY saga_id, seq"
        )
        logs: dict[str, list[Row]] = {}
        for saga_id, *row in rows:
            logs.setdefault(saga_id, []).append(Row(*row))
        return logs

    async def ingested(self) -> dict[tuple[str, str], str]:
        """(source, event id) -> verdict of every event recorded as ingested."""
        rows = await self._rows("SELECT source, event_id, verdict FROM ingested_events")
        return {(source, event_id): verdict for source, event_id, verdict in rows}


def participant_commands(state_file: Path, method: str, saga_id: str) -> list[str]:
    """The idempotency keys of the `method` commands a kit participant recorded for
    `saga_id` (a resend with the same key is answered from its record, adding none)."""
    with contextlib.closing(sqlite3.connect(state_file)) as db:
        rows = db.execute(
            "SELECT idempotency_key, method FROM kit_commands WHERE saga_id = ?", (saga_id,)
        ).fetchall()
    return [str(key) for key, recorded in rows if str(recorded).endswith(method)]


def moves(log: Sequence[Row]) -> list[tuple[str, str]]:
    """A log's (event, step) rows, anomalies left out."""
    return [(row.event, row.step) for row in log if row.event != "EVENT_ANOMALY"]


async def wait_for(
    check: Callable[[], Awaitable[T_ | None]], what: str, timeout: float = WAIT_SECONDS
) -> T_:
    """`check()`'s first non-None answer, polled every 0.1 s; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found is not None:
            return found
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        await asyncio.sleep(0.1)


async def wait_exit(process: ChildProcess, timeout: float = WAIT_SECONDS) -> int:
    """The exit code of a process expected to end on its own (a failpoint)."""
    code = await asyncio.to_thread(process.wait, timeout)
    assert code is not None, f"{process.name} did not exit:\n{process.log_tail()}"
    return code
