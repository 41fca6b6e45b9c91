"""Shared by the events guarantee tests: a consumer on a test-owned exchange and queue,
`saga serve` with a RabbitMQ sink, and waits on what can be observed (a failpoint's line
in a log, the outbox drained, messages at the consumer)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import grpc

from orchestrator.core.events import LIFECYCLE_EVENTS, event_id
from orchestrator.core.records import TransitionEvent
from orchestrator.events.config import RABBITMQ_SINK
from orchestrator.events.rabbitmq import RabbitMQPublisher, RabbitMQSettings
from orchestrator.store import open_store
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.e2e.conftest import wait_terminal
from tools.processes import ChildProcess, orchestrator_process

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
WAIT_SECONDS = 60.0
"""The bound on every wait for something to happen; generous for a loaded machine."""
SHORT_LEASE = "1"
ALL_EVENTS: frozenset[TransitionEvent] = frozenset(TransitionEvent)


@dataclass
class Consumer:
    """A durable queue bound to every key of a test-owned exchange (declared as the relay
    declares it). Each read connects afresh, so it works across a broker restart."""

    url: str
    exchange: str
    queue: str
    received: list[tuple[str, bytes]] = field(default_factory=list)

    @property
    def settings(self) -> RabbitMQSettings:
        return RabbitMQSettings(url=self.url, exchange=self.exchange)

    async def declare(self) -> None:
        declaring = RabbitMQPublisher(self.settings)
        await declaring.connect()
        await declaring.close()
        connection = await aio_pika.connect(self.url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(self.queue, durable=True)
            await queue.bind(self.exchange, "#")

    async def messages(self) -> list[tuple[str, bytes]]:
        """(message id, body) of everything received so far, in arrival order."""
        connection = await aio_pika.connect(self.url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.get_queue(self.queue, ensure=False)
            while (message := await queue.get(no_ack=True, fail=False)) is not None:
                self.received.append((str(message.message_id), message.body))
        return self.received

    async def delete(self) -> None:
        with contextlib.suppress(Exception):
            connection = await aio_pika.connect(self.url)
            async with connection:
                channel = await connection.channel()
                for queue in (self.queue, self.settings.unrouted):
                    with contextlib.suppress(Exception):
                        await channel.queue_delete(queue)
                for exchange in (self.exchange, self.settings.unrouted):
                    with contextlib.suppress(Exception):
                        await channel.exchange_delete(exchange)


def unique_consumer(url: str = RABBITMQ_URL) -> Consumer:
    """A consumer of a unique exchange and queue, not declared yet."""
    token = secrets.token_hex(4)
    return Consumer(url, f"test-guarantees-{token}", f"test-guarantees-{token}")


@contextlib.asynccontextmanager
async def consuming(url: str = RABBITMQ_URL) -> AsyncIterator[Consumer]:
    """A consumer on a unique exchange and queue, both deleted afterwards."""
    consumer = unique_consumer(url)
    await consumer.declare()
    try:
        yield consumer
    finally:
        await consumer.delete()


def serve(
    tmp_path: Path,
    database_url: str,
    services: Mapping[str, str],
    consumer: Consumer,
    name: str,
    *,
    failpoint: str = "",
    env: Mapping[str, str] | None = None,
    url: str | None = None,
    extra: Collection[str] = (),
) -> ChildProcess:
    """An unstarted `saga serve` publishing to the consumer's exchange on one partition
    (so one batch holds every pending event), with short leases."""
    environment = {"SAGA_LEASE_SECONDS": SHORT_LEASE, **(env or {})}
    if failpoint:
        environment["SAGA_FAILPOINT"] = failpoint
    return orchestrator_process(
        tmp_path,
        database_url,
        services,
        env=environment,
        name=name,
        extra_args=[
            "--events-rabbitmq",
            url or consumer.url,
            "--events-rabbitmq-exchange",
            consumer.exchange,
            "--events-partitions",
            "1",
            *extra,
        ],
    )


@contextlib.contextmanager
def running(process: ChildProcess) -> Iterator[ChildProcess]:
    """Started, and stopped on exit, also when frozen (SIGCONT first) or already dead."""
    try:
        yield process.start()
    finally:
        if process.process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)
        process.stop()


async def wait_until(
    check: Callable[[], Awaitable[bool]], what: str, timeout: float = WAIT_SECONDS
) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"not within {timeout:.0f}s: {what}"
        await asyncio.sleep(0.05)


async def wait_for_line(process: ChildProcess, text: str, timeout: float = WAIT_SECONDS) -> None:
    """Until `text` appears in the process's log (its stderr)."""

    async def seen() -> bool:
        try:
            return text in process.log_file.read_text(errors="replace")
        except OSError:
            return False

    try:
        await wait_until(seen, f"{text!r} in {process.name}'s log", timeout)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{process.log_tail()}") from None


async def wait_exit(process: ChildProcess, timeout: float = WAIT_SECONDS) -> int:
    async def exited() -> bool:
        return process.returncode is not None

    await wait_until(exited, f"{process.name} exits", timeout)
    code = process.returncode
    assert code is not None
    return code


async def wait_all_terminal(address: str, saga_ids: Collection[str]) -> set[int]:
    """Each saga's final status (COMPLETED or FAILED), followed on WatchSaga."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.SagaOrchestratorStub(channel)
        return {
            (await wait_terminal(stub, saga_id, timeout=WAIT_SECONDS)).status
            for saga_id in saga_ids
        }


async def pending_event_ids(database_url: str) -> list[str]:
    """The undelivered events' ids, in outbox order (one partition)."""
    store = open_store(database_url)
    await store.open()
    try:
        rows = await store.pending_events(RABBITMQ_SINK, 0, 100_000)
        return [row.event_id for row in rows]
    finally:
        await store.close()


async def expected_events(
    database_url: str,
    saga_ids: Collection[str],
    selected: Collection[TransitionEvent] = LIFECYCLE_EVENTS,
) -> dict[str, list[str]]:
    """Each saga's selected transitions as event ids, in its log's order, once the
    outbox is empty (bounded wait): every event is then confirmed by the broker."""
    store = open_store(database_url)
    await store.open()
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while backlog := await store.event_backlog():
            assert time.monotonic() < deadline, f"the outbox was not drained: {backlog}"
            await asyncio.sleep(0.1)
        return {
            saga_id: [
                event_id(saga_id, t.seq)
                for t in await store.get_transitions(saga_id)
                if t.event in selected
            ]
            for saga_id in saga_ids
        }
    finally:
        await store.close()


def per_saga(messages: list[tuple[str, bytes]]) -> dict[str, list[str]]:
    """Each saga's event ids as received, deduplicated by id (the consumer's rule), in
    arrival order; each message's id is its CloudEvent's."""
    seen: set[str] = set()
    order: dict[str, list[str]] = {}
    for message_id, body in messages:
        event = json.loads(body)
        assert event["id"] == message_id
        if message_id in seen:
            continue
        seen.add(message_id)
        order.setdefault(event["subject"], []).append(message_id)
    return order


def duplicated(messages: list[tuple[str, bytes]]) -> set[str]:
    ids = [message_id for message_id, _ in messages]
    return {message_id for message_id in ids if ids.count(message_id) > 1}


COMPLETED = pb.SAGA_STATUS_COMPLETED
FAILED = pb.SAGA_STATUS_FAILED
