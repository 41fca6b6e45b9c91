"""Events out, end to end: `saga serve --events-rabbitmq/--events-nats` runs sagas and a
consumer on a real broker sees, per saga, exactly its lifecycle events in sequence
order under their CloudEvents ids; after a SIGKILL mid-stream and a restart nothing is
lost and, deduplicated by id, each saga's order holds; the outbox ends empty."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import aio_pika
import grpc
import nats
import nats.js.errors
import pytest

from orchestrator.core.events import LIFECYCLE_EVENTS, event_id
from orchestrator.events.jetstream import NatsSettings
from orchestrator.events.rabbitmq import RabbitMQPublisher, RabbitMQSettings
from orchestrator.store import open_store
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.e2e.conftest import wait_terminal
from tests.e2e.test_telemetry import scrape, value
from tests.support.payloads import travel
from tests.support.starting import start_saga_at
from tools.processes import (
    PARTICIPANT_SERVICES,
    ChildProcess,
    orchestrator_process,
    participants_process,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
NATS_URL = "nats://127.0.0.1:4222"
SHORT_LEASE = {"SAGA_LEASE_SECONDS": "1"}
"""A killed replica's sagas and event partitions are taken over once this runs out."""


@pytest.fixture(scope="module")
def participants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChildProcess]:
    """The example participants, with room for every booking of this module: each saga
    here must complete, whichever tests ran before it."""
    process = participants_process(
        tmp_path_factory.mktemp("participants"), PARTICIPANT_SERVICES, ["--capacity", "100000"]
    )
    try:
        yield process.start()
    finally:
        process.stop()


@dataclass
class Broker:
    """A broker sink under test: the serve flags that select it, and its consumer."""

    sink: str
    flags: list[str]
    messages: Callable[[], Awaitable[list[tuple[str, bytes]]]]
    """(event id, body) of everything the consumer received so far, in arrival order."""


@pytest.fixture
async def rabbitmq() -> AsyncIterator[Broker]:
    """A unique exchange (declared as the relay declares it) with a unique queue bound to
    every key; both deleted afterwards."""
    token = secrets.token_hex(4)
    settings = RabbitMQSettings(url=RABBITMQ_URL, exchange=f"test-relay-{token}")
    declaring = RabbitMQPublisher(settings)
    await declaring.connect()
    await declaring.close()
    connection = await aio_pika.connect(RABBITMQ_URL)
    channel = await connection.channel()
    queue = await channel.declare_queue(f"test-relay-{token}", exclusive=True)
    await queue.bind(settings.exchange, "#")
    received: list[tuple[str, bytes]] = []

    async def messages() -> list[tuple[str, bytes]]:
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            received.append((str(message.message_id), message.body))
        return received

    try:
        yield Broker(
            "rabbitmq",
            ["--events-rabbitmq", RABBITMQ_URL, "--events-rabbitmq-exchange", settings.exchange],
            messages,
        )
    finally:
        with contextlib.suppress(Exception):
            await queue.delete(if_unused=False, if_empty=False)
        for name in (settings.exchange, settings.unrouted):
            with contextlib.suppress(Exception):
                await channel.exchange_delete(name)
        with contextlib.suppress(Exception):
            await channel.queue_delete(settings.unrouted)
        await connection.close()


@pytest.fixture
async def jetstream() -> AsyncIterator[Broker]:
    """A unique stream and subject prefix (the relay creates the stream); deleted after."""
    token = secrets.token_hex(4)
    settings = NatsSettings(
        servers=NATS_URL, stream=f"TEST_RELAY_{token}", subject_prefix=f"test-relay-{token}"
    )

    async def messages() -> list[tuple[str, bytes]]:
        nc = await nats.connect(NATS_URL)
        try:
            js = nc.jetstream()
            try:
                info = await js.stream_info(settings.stream)
            except nats.js.errors.NotFoundError:
                return []
            if not info.state.messages:
                return []  # created, nothing stored yet: there is no message 0 to get
            found = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                stored = await js.get_msg(settings.stream, seq)
                assert stored.headers is not None
                found.append((stored.headers["Nats-Msg-Id"], stored.data or b""))
            return found
        finally:
            await nc.close()

    flags = [
        "--events-nats",
        NATS_URL,
        "--events-nats-stream",
        settings.stream,
        "--events-nats-subject-prefix",
        settings.subject_prefix,
    ]
    try:
        yield Broker("nats", flags, messages)
    finally:
        nc = await nats.connect(NATS_URL)
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await nc.jetstream().delete_stream(settings.stream)
        await nc.close()


@pytest.fixture(params=["rabbitmq", "nats"])
def broker(request: pytest.FixtureRequest) -> Broker:
    return request.getfixturevalue("rabbitmq" if request.param == "rabbitmq" else "jetstream")


@contextlib.contextmanager
def serving(
    tmp_path, database_url, participants, broker: Broker, name: str
) -> Iterator[ChildProcess]:
    process = orchestrator_process(
        tmp_path,
        database_url,
        participants.info["services"],
        env=SHORT_LEASE,
        name=name,
        extra_args=[
            *broker.flags,
            "--events-partitions",
            "4",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    )
    try:
        yield process.start()
    finally:
        process.stop()


async def lifecycle_ids(database_url: str, saga_ids: list[str]) -> dict[str, list[str]]:
    """Each saga's lifecycle events' ids, in its log's order, read from its log; waits
    (bounded) until the outbox is empty: every event is then confirmed by the broker."""
    store = open_store(database_url)
    await store.open()
    try:
        deadline = time.monotonic() + 60
        while backlog := await store.event_backlog():
            assert time.monotonic() < deadline, f"the outbox was not drained: {backlog}"
            await asyncio.sleep(0.1)
        expected = {}
        for saga_id in saga_ids:
            log = await store.get_transitions(saga_id)
            expected[saga_id] = [
                event_id(saga_id, t.seq) for t in log if t.event in LIFECYCLE_EVENTS
            ]
        return expected
    finally:
        await store.close()


def per_saga(messages: list[tuple[str, bytes]], *, deduplicate: bool) -> dict[str, list[str]]:
    seen: set[str] = set()
    order: dict[str, list[str]] = {}
    for message_id, body in messages:
        event = json.loads(body)
        assert event["id"] == message_id
        if deduplicate and message_id in seen:
            continue
        seen.add(message_id)
        order.setdefault(event["subject"], []).append(message_id)
    return order


async def test_a_consumer_sees_each_sagas_lifecycle_events_in_order(
    tmp_path, database_url, participants, broker
):
    with serving(tmp_path, database_url, participants, broker, "relaying") as orchestrator:
        saga_ids = [
            await start_saga_at(orchestrator.address, travel(f"customer-{n}"), f"relay-{n}")
            for n in range(6)
        ]
        async with grpc.aio.insecure_channel(orchestrator.address) as channel:
            stub = pb_grpc.SagaOrchestratorStub(channel)
            for saga_id in saga_ids:
                await wait_terminal(stub, saga_id)
        expected = await lifecycle_ids(database_url, saga_ids)
        samples = scrape(orchestrator.info["metrics_address"])

    received = per_saga(await broker.messages(), deduplicate=False)
    assert received == expected
    published = sum(len(ids) for ids in expected.values())
    assert value(samples, "saga_events_published_total", sink=broker.sink) == published
    assert value(samples, "saga_events_dead_total", sink=broker.sink) in (None, 0)
    assert all(len(ids) >= 2 for ids in expected.values())


async def test_events_survive_a_sigkill_mid_stream(tmp_path, database_url, participants, broker):
    keys = [f"kill-{n}" for n in range(20)]
    with serving(tmp_path, database_url, participants, broker, "doomed") as doomed:
        started = await asyncio.gather(
            *(start_saga_at(doomed.address, travel(key), key, idempotency_key=key) for key in keys)
        )
        # Killed once the stream is flowing: some events published, others not yet.
        deadline = time.monotonic() + 30
        while not await broker.messages():
            assert time.monotonic() < deadline, doomed.log_tail()
            await asyncio.sleep(0.02)
        doomed.kill()
    with serving(tmp_path, database_url, participants, broker, "survivor") as survivor:
        saga_ids = [
            await start_saga_at(survivor.address, travel(key), key, idempotency_key=key)
            for key in keys
        ]
        assert saga_ids == list(started)
        async with grpc.aio.insecure_channel(survivor.address) as channel:
            stub = pb_grpc.SagaOrchestratorStub(channel)
            for saga_id in saga_ids:
                await wait_terminal(stub, saga_id)
        expected = await lifecycle_ids(database_url, saga_ids)

    received = per_saga(await broker.messages(), deduplicate=True)
    assert received == expected


def dead_port() -> int:
    """A port nothing listens on (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_broker_outage_neither_fails_sagas_nor_loses_their_events(
    tmp_path, database_url, participants, rabbitmq
):
    unreachable = Broker(
        "rabbitmq",
        [
            "--events-rabbitmq",
            f"amqp://guest:guest@127.0.0.1:{dead_port()}/",
            *rabbitmq.flags[2:],
        ],
        rabbitmq.messages,
    )
    with serving(tmp_path, database_url, participants, unreachable, "cut-off") as orchestrator:
        saga_ids = [
            await start_saga_at(orchestrator.address, travel(f"customer-{n}"), f"outage-{n}")
            for n in range(4)
        ]
        async with grpc.aio.insecure_channel(orchestrator.address) as channel:
            stub = pb_grpc.SagaOrchestratorStub(channel)
            statuses = {(await wait_terminal(stub, saga_id)).status for saga_id in saga_ids}
    assert statuses == {pb.SAGA_STATUS_COMPLETED}
    store = open_store(database_url)
    await store.open()
    try:
        backlog = await store.event_backlog()
    finally:
        await store.close()
    assert backlog["rabbitmq"].pending == 2 * len(saga_ids)  # started, completed

    # The broker is back: the next replica publishes what waited.
    with serving(tmp_path, database_url, participants, rabbitmq, "reconnected"):
        expected = await lifecycle_ids(database_url, saga_ids)
    assert per_saga(await rabbitmq.messages(), deduplicate=False) == expected
