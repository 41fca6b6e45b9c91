"""SagaEvents over a real gRPC server on 127.0.0.1, on both back ends, behind the auth
interceptor: the sinks' health (configured ones and those only the database knows),
replay from the transition log with the original ids and bodies, dead letters listed a
page at a time and requeued with their event ids, and every refusal (unknown sink, bad
saga id, another namespace, a reader replaying) answered with its code, writing nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry

from orchestrator.api.events_admin import SagaEventsService
from orchestrator.core.events import DeadEvent, EventSet, EventSink, OutboxEvent, PendingEvent
from orchestrator.core.records import Lease, NewSaga, SagaRecord
from orchestrator.events.brokers import BrokerUnavailable, OutgoingEvent
from orchestrator.events.config import ConfiguredSink
from orchestrator.events.relay import Relay, RelayMetrics, RelaySettings
from orchestrator.security.auth import AuthInterceptor, AuthPolicy, events_rules, token_digest
from orchestrator.store import Store, open_store
from saga.v1 import events_admin_pb2 as pb
from saga.v1 import events_admin_pb2_grpc as pb_grpc
from tests.integration.test_outbox import completed
from tests.integration.test_store import first_step_completed, new_saga

pytestmark = pytest.mark.integration

LIFECYCLE = EventSink("rabbitmq", partitions=4)
EVERYTHING = EventSink("every", events=EventSet.ALL, include_payload=True, partitions=2)
CONFIGURED = [
    ConfiguredSink(LIFECYCLE, "rabbitmq", "amqp://guest:***@127.0.0.1:5672/ exchange saga.events"),
    ConfiguredSink(EVERYTHING, "nats", "nats://127.0.0.1:4222 stream SAGA_EVENTS"),
]
CALLERS = {
    "operator": ('["operator"]', '"*"'),
    "reader": ('["reader"]', '"*"'),
    "client": ('["client"]', '"*"'),
    "alpha-operator": ('["operator"]', '["alpha"]'),
}
TOKENS = {name: secrets.token_urlsafe(16) for name in CALLERS}


@dataclass
class Served:
    store: Store
    address: str

    async def call(self, method: str, request: Any, who: str = "operator") -> Any:
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = pb_grpc.SagaEventsStub(channel)
            metadata = (("authorization", f"Bearer {TOKENS[who]}"),)
            return await getattr(stub, method)(request, metadata=metadata, timeout=10)

    async def refused(self, method: str, request: Any, who: str = "operator") -> Any:
        with pytest.raises(grpc.aio.AioRpcError) as refusal:
            await self.call(method, request, who)
        return refusal.value


@pytest.fixture
async def served(store_url: str, tmp_path: Path) -> AsyncIterator[Served]:
    auth_file = tmp_path / "auth.toml"
    auth_file.write_text(
        "\n".join(
            f'[[caller]]\nname = "{name}"\nroles = {roles}\nnamespaces = {namespaces}\n'
            f'token_sha256 = "{token_digest(TOKENS[name])}"\n'
            for name, (roles, namespaces) in CALLERS.items()
        )
    )
    policy = AuthPolicy(
        auth_file, events_rules(pb.DESCRIPTOR.services_by_name["SagaEvents"]), reflection=False
    )
    store = open_store(store_url, event_sinks=(LIFECYCLE, EVERYTHING))
    await store.open()
    server = grpc.aio.server(interceptors=[AuthInterceptor(policy)])
    pb_grpc.add_SagaEventsServicer_to_server(
        SagaEventsService(store, CONFIGURED, "replica-here"), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield Served(store, f"127.0.0.1:{port}")
    finally:
        await server.stop(None)
        await store.close()


def in_namespace(new: NewSaga, namespace: str) -> NewSaga:
    saga = dataclasses.replace(new.saga, namespace=namespace)
    return dataclasses.replace(new, saga=saga)


async def finished_saga(store: Store, namespace: str = "default") -> SagaRecord:
    """A saga started, its first step done, then completed: four log rows."""
    new = in_namespace(new_saga(str(uuid.uuid4())), namespace)
    await store.create_sagas([new])
    step = first_step_completed(new.saga, seq=2)
    await store.commit([step])
    done = completed(step.saga, seq=3)
    await store.commit([done])
    return done.saga


async def outbox(store: Store) -> list[PendingEvent]:
    rows = [
        row
        for sink in (LIFECYCLE, EVERYTHING, EventSink("retired", partitions=1))
        for partition in range(sink.partitions)
        for row in await store.pending_events(sink.name, partition, limit=1000)
    ]
    return sorted(rows, key=lambda row: row.id)


def contents(rows: list[PendingEvent]) -> list[tuple[str, int, str, bytes]]:
    """What a consumer sees of outbox rows: sink, partition, event id and body."""
    return sorted((row.sink, row.partition, row.event_id, row.body) for row in rows)


async def drain(store: Store) -> list[PendingEvent]:
    rows = await outbox(store)
    await store.delete_events([row.id for row in rows])
    return rows


async def make_dead(store: Store, sink: EventSink, count: int) -> None:
    """Bury `count` pending events of `sink` through the relay's own path (a claim, then
    a settle that dead-letters), as repeated broker refusals would."""
    lease = Lease("replica-a", 30.0)
    claims = await store.claim_event_partitions(sink.name, sink.partitions, lease, sink.partitions)
    buried = 0
    for claim in claims:
        for row in await store.pending_events(sink.name, claim.partition, limit=100):
            if buried == count:
                return
            assert await store.settle_events(claim, lease, [], DeadEvent(row.id, 5, "too large"))
            buried += 1
    assert buried == count


async def test_sinks_show_backlog_dead_letters_owners_and_database_only_sinks(served: Served):
    store = served.store
    await finished_saga(store)
    saga_id = str(uuid.uuid4())
    await store.enqueue_events([OutboxEvent("retired", 0, saga_id, 1, "x.saga.started.v1", b"{}")])
    await make_dead(store, LIFECYCLE, 1)
    await store.event_relays(Lease("replica-a", 30.0))

    answer = await served.call("ListEventSinks", pb.ListEventSinksRequest(), who="reader")

    sinks = {sink.name: sink for sink in answer.sinks}
    assert list(sinks) == ["every", "rabbitmq", "retired"]
    rabbit = sinks["rabbitmq"]
    assert rabbit.configured and rabbit.kind == pb.EVENT_SINK_KIND_RABBITMQ
    assert "guest:guest" not in rabbit.target and "***" in rabbit.target
    assert (rabbit.event_set, rabbit.partitions, rabbit.pending, rabbit.dead) == (
        "lifecycle",
        4,
        1,
        1,
    )
    assert rabbit.HasField("oldest_pending_time")
    assert [p.partition for p in rabbit.partition_owners] == [0, 1, 2, 3]
    assert {p.owner for p in rabbit.partition_owners} == {"replica-a"}
    every = sinks["every"]
    assert (every.kind, every.event_set, every.include_payload, every.pending) == (
        pb.EVENT_SINK_KIND_NATS,
        "all",
        True,
        4,
    )
    assert not every.partition_owners
    retired = sinks["retired"]
    assert not retired.configured and retired.kind == pb.EVENT_SINK_KIND_UNSPECIFIED
    assert retired.pending == 1 and retired.target == ""
    assert list(answer.relay_replicas) == ["replica-a"] and answer.replica_id == "replica-here"


async def test_replaying_a_saga_queues_its_events_again_with_the_same_ids_and_bodies(
    served: Served,
):
    store = served.store
    saga = await finished_saga(store)
    await finished_saga(store)  # another saga: not replayed
    originals = [row for row in await drain(store) if row.saga_id == saga.saga_id]
    assert len(originals) == 2 + 4  # lifecycle: started, completed; every: all four

    answer = await served.call("ReplayEvents", pb.ReplayEventsRequest(saga_id=saga.saga_id))

    assert (answer.queued, answer.transitions, answer.next_page_token) == (6, 4, "")
    assert contents(await outbox(store)) == contents(originals)

    # One sink only, a page of two transitions at a time.
    await drain(store)
    request = pb.ReplayEventsRequest(saga_id=saga.saga_id, sink="rabbitmq", limit=2)
    first = await served.call("ReplayEvents", request)
    assert (first.queued, first.transitions) == (1, 2) and first.next_page_token
    request.page_token = first.next_page_token
    second = await served.call("ReplayEvents", request)
    assert (second.queued, second.transitions, second.next_page_token) == (1, 2, "")
    assert contents(await outbox(store)) == contents(
        [row for row in originals if row.sink == "rabbitmq"]
    )


async def test_replaying_since_a_time_pages_through_every_saga_of_the_callers_namespaces(
    served: Served,
):
    store = served.store
    sagas = [await finished_saga(store) for _ in range(3)]
    alpha = await finished_saga(store, namespace="alpha")
    originals = await drain(store)

    request = pb.ReplayEventsRequest(limit=5)
    request.since_time.FromDatetime(sagas[0].create_time)
    queued, transitions = 0, 0
    while True:
        answer = await served.call("ReplayEvents", request)
        queued, transitions = queued + answer.queued, transitions + answer.transitions
        if not answer.next_page_token:
            break
        request.page_token = answer.next_page_token
    assert (queued, transitions) == (len(originals), 16)
    assert contents(await outbox(store)) == contents(originals)

    await drain(store)
    request = pb.ReplayEventsRequest()
    request.since_time.FromDatetime(sagas[0].create_time)
    answer = await served.call("ReplayEvents", request, who="alpha-operator")
    assert (answer.queued, answer.transitions) == (6, 4)
    assert contents(await outbox(store)) == contents(
        [row for row in originals if row.saga_id == alpha.saga_id]
    )


async def test_dead_events_page_and_requeue_keeps_their_event_ids(served: Served):
    store = served.store
    for _ in range(3):
        await finished_saga(store)
    await make_dead(store, LIFECYCLE, 3)

    first = await served.call("ListDeadEvents", pb.ListDeadEventsRequest(page_size=2), "reader")
    assert len(first.events) == 2 and first.next_page_token
    rest = await served.call(
        "ListDeadEvents", pb.ListDeadEventsRequest(page_size=2, page_token=first.next_page_token)
    )
    assert len(rest.events) == 1 and not rest.next_page_token
    dead = [*first.events, *rest.events]
    assert [event.id for event in dead] == sorted(event.id for event in dead)
    assert {(event.sink, event.attempts, event.error) for event in dead} == {
        ("rabbitmq", 5, "too large")
    }
    pending_before = {row.event_id for row in await outbox(store) if row.sink == "rabbitmq"}
    assert not pending_before & {event.event_id for event in dead}

    one = await served.call(
        "RequeueDeadEvents", pb.RequeueDeadEventsRequest(sink="rabbitmq", ids=[dead[0].id])
    )
    assert one.requeued == 1
    requeued = [
        row
        for row in await outbox(store)
        if row.sink == "rabbitmq" and row.event_id == dead[0].event_id
    ]
    assert [(row.sink, row.seq) for row in requeued] == [("rabbitmq", dead[0].seq)]
    assert await store.dead_event_counts() == {"rabbitmq": 2}

    every = await served.call(
        "RequeueDeadEvents", pb.RequeueDeadEventsRequest(sink="rabbitmq", all=True)
    )
    assert every.requeued == 2 and await store.dead_event_counts() == {}
    pending = {row.event_id for row in await outbox(store) if row.sink == "rabbitmq"}
    assert pending == pending_before | {event.event_id for event in dead}


async def test_refusals_answer_their_code_and_write_nothing(served: Served):
    store = served.store
    saga = await finished_saga(store)
    alpha = await finished_saga(store, namespace="alpha")
    await make_dead(store, LIFECYCLE, 1)
    await store.enqueue_events([OutboxEvent("retired", 0, saga.saga_id, 1, "x", b"{}")])
    before = contents(await outbox(store))
    code = grpc.StatusCode
    cases: list[tuple[str, Any, str, grpc.StatusCode, str]] = [
        (
            "ReplayEvents",
            pb.ReplayEventsRequest(saga_id=saga.saga_id, sink="kafka"),
            "operator",
            code.NOT_FOUND,
            "configured here: every, rabbitmq",
        ),
        (
            "ReplayEvents",
            pb.ReplayEventsRequest(saga_id=saga.saga_id, sink="retired"),
            "operator",
            code.FAILED_PRECONDITION,
            "not configured on this replica",
        ),
        (
            "ReplayEvents",
            pb.ReplayEventsRequest(saga_id="not-a-uuid"),
            "operator",
            code.INVALID_ARGUMENT,
            "saga_id must be a UUID",
        ),
        (
            "ReplayEvents",
            pb.ReplayEventsRequest(saga_id=str(uuid.uuid4())),
            "operator",
            code.NOT_FOUND,
            "no saga",
        ),
        (
            "ReplayEvents",
            pb.ReplayEventsRequest(saga_id=saga.saga_id),
            "alpha-operator",
            code.NOT_FOUND,
            "no saga",
        ),
        (
            "ReplayEvents",
            pb.ReplayEventsRequest(saga_id=alpha.saga_id, namespace="beta"),
            "alpha-operator",
            code.PERMISSION_DENIED,
            "may not use namespace",
        ),
        (
            "ReplayEvents",
            pb.ReplayEventsRequest(saga_id=saga.saga_id),
            "reader",
            code.PERMISSION_DENIED,
            "",
        ),
        (
            "ReplayEvents",
            pb.ReplayEventsRequest(),
            "operator",
            code.INVALID_ARGUMENT,
            "exactly one of saga_id and since_time",
        ),
        (
            "ReplayEvents",
            pb.ReplayEventsRequest(saga_id=saga.saga_id, limit=-1),
            "operator",
            code.INVALID_ARGUMENT,
            "limit",
        ),
        (
            "ReplayEvents",
            pb.ReplayEventsRequest(saga_id=saga.saga_id, page_token="forged"),
            "operator",
            code.INVALID_ARGUMENT,
            "page_token",
        ),
        (
            "ReplayEvents",
            pb.ReplayEventsRequest(saga_id=saga.saga_id, sink="bad\x00"),
            "operator",
            code.INVALID_ARGUMENT,
            "",
        ),
        (
            "ListDeadEvents",
            pb.ListDeadEventsRequest(sink="kafka"),
            "operator",
            code.NOT_FOUND,
            "configured here: every, rabbitmq",
        ),
        (
            "ListDeadEvents",
            pb.ListDeadEventsRequest(page_token="Zm9v"),
            "operator",
            code.INVALID_ARGUMENT,
            "page_token",
        ),
        (
            "ListDeadEvents",
            pb.ListDeadEventsRequest(),
            "alpha-operator",
            code.PERMISSION_DENIED,
            "dead events span every namespace",
        ),
        ("ListDeadEvents", pb.ListDeadEventsRequest(), "client", code.PERMISSION_DENIED, ""),
        (
            "RequeueDeadEvents",
            pb.RequeueDeadEventsRequest(sink="kafka", all=True),
            "operator",
            code.NOT_FOUND,
            "configured here: every, rabbitmq",
        ),
        (
            "RequeueDeadEvents",
            pb.RequeueDeadEventsRequest(sink="rabbitmq"),
            "operator",
            code.INVALID_ARGUMENT,
            "ids",
        ),
        (
            "RequeueDeadEvents",
            pb.RequeueDeadEventsRequest(sink="rabbitmq", ids=[1], all=True),
            "operator",
            code.INVALID_ARGUMENT,
            "not both",
        ),
        (
            "RequeueDeadEvents",
            pb.RequeueDeadEventsRequest(sink="rabbitmq", ids=[-4]),
            "operator",
            code.INVALID_ARGUMENT,
            "positive",
        ),
        (
            "RequeueDeadEvents",
            pb.RequeueDeadEventsRequest(sink="rabbitmq", all=True),
            "reader",
            code.PERMISSION_DENIED,
            "",
        ),
    ]
    for method, request, who, expected, message in cases:
        refusal = await served.refused(method, request, who)
        assert refusal.code() == expected, (method, request, who, refusal.details())
        assert message in (refusal.details() or ""), (method, request, refusal.details())
    assert contents(await outbox(store)) == before
    assert await store.dead_event_counts() == {"rabbitmq": 1}
    # And the server still serves.
    answer = await served.call("ListEventSinks", pb.ListEventSinksRequest())
    assert [sink.name for sink in answer.sinks] == ["every", "rabbitmq", "retired"]


class Unreachable:
    """A broker that is never there: the relay keeps its rows (and its gauges) waiting."""

    async def connect(self) -> None:
        raise BrokerUnavailable("no broker in this test")

    async def publish(self, batch: Sequence[OutgoingEvent]) -> None:
        raise AssertionError("never connected")

    async def close(self) -> None:
        pass


async def gauge_reads(registry: CollectorRegistry, name: str, expected: float) -> None:
    """Waits (bounded) until the relay's gauge `name` of the rabbitmq sink reads `expected`."""
    deadline = asyncio.get_running_loop().time() + 30
    while registry.get_sample_value(name, {"sink": "rabbitmq"}) != expected:
        assert asyncio.get_running_loop().time() < deadline, (
            name,
            registry.get_sample_value(name, {"sink": "rabbitmq"}),
        )
        await asyncio.sleep(0.01)


async def test_the_dead_letter_gauge_follows_the_table_as_events_die_and_are_requeued(
    served: Served,
):
    store = served.store
    for _ in range(2):
        await finished_saga(store)
    await make_dead(store, LIFECYCLE, 2)
    registry = CollectorRegistry()
    settings = RelaySettings(backlog_seconds=0.02, poll_seconds=0.05)
    relay = Relay(
        store, [(LIFECYCLE, Unreachable())], "replica-b", settings, RelayMetrics(registry)
    )
    relay.start()
    try:
        await gauge_reads(registry, "saga_events_dead_letters", 2)
        await gauge_reads(registry, "saga_events_pending", 2)

        await served.call(
            "RequeueDeadEvents", pb.RequeueDeadEventsRequest(sink="rabbitmq", all=True)
        )

        await gauge_reads(registry, "saga_events_dead_letters", 0)
        await gauge_reads(registry, "saga_events_pending", 4)
    finally:
        await relay.stop()
