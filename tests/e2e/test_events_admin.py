"""Operating the sinks end to end: `saga serve --events-rabbitmq` runs a saga, a real
RabbitMQ queue receives its events, `saga events replay` queues them again and the queue
receives them a second time with the same ids and the same bodies; `saga events sinks`
shows the sink (no password in its target) and the metrics endpoint exports the relay's
series, the dead-letter gauge included, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import grpc
import pytest

from orchestrator.core.events import DeadEvent, OutboxEvent, partition_of
from orchestrator.core.records import Lease
from orchestrator.store import open_store
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.e2e.conftest import wait_terminal
from tests.e2e.test_cli import saga_cli
from tests.e2e.test_events_relay import (  # noqa: F401  (fixtures)
    Broker,
    lifecycle_ids,
    participants,
    rabbitmq,
    serving,
)
from tests.e2e.test_telemetry import scrape, value
from tests.support.payloads import travel
from tests.support.starting import start_saga_at

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


async def received_of(broker: Broker, saga_id: str, count: int) -> list[tuple[str, bytes]]:
    """The saga's messages once the queue has `count` of them (waits, bounded)."""
    deadline = time.monotonic() + 60
    while True:
        mine = [
            (message_id, body)
            for message_id, body in await broker.messages()
            if message_id.startswith(f"{saga_id}:")
        ]
        if len(mine) >= count:
            return mine
        assert time.monotonic() < deadline, f"{len(mine)} of {count} events arrived"
        await asyncio.sleep(0.05)


async def settled_metrics(address: str, published: int) -> dict:
    """The metrics once the relay counted `published` events and its backlog gauge (read
    every few seconds) shows the outbox empty (waits, bounded)."""
    deadline = time.monotonic() + 60
    while True:
        samples = scrape(address)
        if (
            value(samples, "saga_events_published_total", sink="rabbitmq") == published
            and value(samples, "saga_events_pending", sink="rabbitmq") == 0
        ):
            return samples
        assert time.monotonic() < deadline, samples
        await asyncio.sleep(0.2)


async def log_length(database_url: str, saga_id: str) -> int:
    store = open_store(database_url)
    await store.open()
    try:
        return len(await store.get_transitions(saga_id))
    finally:
        await store.close()


async def test_a_replayed_saga_reaches_rabbitmq_again_with_the_same_ids_and_bodies(
    tmp_path,
    database_url,
    participants,  # noqa: F811
    rabbitmq,  # noqa: F811
):
    with serving(tmp_path, database_url, participants, rabbitmq, "operated") as orchestrator:
        address = orchestrator.address
        saga_id = await start_saga_at(address, travel("replayed"), "replay-1")
        async with grpc.aio.insecure_channel(address) as channel:
            await wait_terminal(pb_grpc.SagaOrchestratorStub(channel), saga_id)
        expected = (await lifecycle_ids(database_url, [saga_id]))[saga_id]
        originals = await received_of(rabbitmq, saga_id, len(expected))
        assert [message_id for message_id, _ in originals] == expected

        replay = saga_cli("events", "replay", "--saga", saga_id, "--address", address, "--json")

        assert replay.returncode == 0, replay.stderr
        assert json.loads(replay.stdout) == {
            "queued": str(len(expected)),
            "transitions": str(await log_length(database_url, saga_id)),
        }
        both = await received_of(rabbitmq, saga_id, 2 * len(expected))
        assert both[len(expected) :] == originals

        listed = saga_cli("events", "sinks", "--address", address, "--json")
        assert listed.returncode == 0, listed.stderr
        answer = json.loads(listed.stdout)
        [sink] = answer["sinks"]
        assert (sink["name"], sink["configured"], sink["kind"]) == (
            "rabbitmq",
            True,
            "EVENT_SINK_KIND_RABBITMQ",
        )
        assert "guest:guest" not in sink["target"] and "guest:***" in sink["target"]
        assert len(sink["partition_owners"]) == 4
        assert {p["owner"] for p in sink["partition_owners"]} == {answer["replica_id"]}
        assert answer["relay_replicas"] == [answer["replica_id"]]

        samples = await settled_metrics(orchestrator.info["metrics_address"], 2 * len(expected))

    assert value(samples, "saga_events_dead_letters", sink="rabbitmq") == 0
    assert value(samples, "saga_events_oldest_pending_seconds", sink="rabbitmq") == 0
    assert value(samples, "saga_events_republished_total", sink="rabbitmq") == 0


async def bury_an_event_of_a_retired_sink(database_url: str) -> str:
    """A dead letter of a sink the running orchestrator is not configured with, buried
    through the relay's own path (claim, then a settle that dead-letters); its event id."""
    store = open_store(database_url)
    await store.open()
    try:
        saga_id = str(uuid.uuid4())
        await store.enqueue_events([OutboxEvent("retired", 0, saga_id, 1, "x.v1", b"{}")])
        lease = Lease("an-old-replica", 30.0)
        [claim] = await store.claim_event_partitions("retired", 1, lease, 1)
        [row] = await store.pending_events("retired", 0, limit=10)
        assert await store.settle_events(claim, lease, [], DeadEvent(row.id, 5, "too large"))
        return row.event_id
    finally:
        await store.close()


async def test_the_cli_lists_and_requeues_dead_events_of_a_sink_no_longer_configured(
    tmp_path,
    database_url,
    participants,  # noqa: F811
    rabbitmq,  # noqa: F811
):
    with serving(tmp_path, database_url, participants, rabbitmq, "operated") as orchestrator:
        address = orchestrator.address
        dead_id = await bury_an_event_of_a_retired_sink(database_url)

        listed = saga_cli("events", "dead", "--address", address, "--json")
        assert listed.returncode == 0, listed.stderr
        [letter] = json.loads(listed.stdout)["events"]
        assert (letter["sink"], letter["event_id"], letter["error"]) == (
            "retired",
            dead_id,
            "too large",
        )
        table = saga_cli("events", "dead", "--sink", "retired", "--address", address)
        assert dead_id in table.stdout, table.stdout

        unknown = saga_cli("events", "requeue", "--sink", "kafka", "--all", "--address", address)
        assert unknown.returncode == 1
        assert "NOT_FOUND" in unknown.stderr and "configured here: rabbitmq" in unknown.stderr

        requeued = saga_cli(
            "events", "requeue", "--sink", "retired", letter["id"], "--address", address, "--json"
        )
        assert requeued.returncode == 0, requeued.stderr
        assert json.loads(requeued.stdout) == {"requeued": "1"}

        sinks = saga_cli("events", "sinks", "--address", address, "--json")
        retired = {sink["name"]: sink for sink in json.loads(sinks.stdout)["sinks"]}["retired"]
        assert "configured" not in retired and retired["pending"] == "1"  # false: left out
        assert "dead" not in retired  # zero, left out of the JSON mapping
        shown = saga_cli("events", "sinks", "--address", address)
        assert "not configured here" in shown.stdout, shown.stdout


async def bury_a_delivered_event(database_url: str, message_id: str, body: bytes) -> None:
    """The delivered event written to the outbox again and dead-lettered through the
    relay's own path (a claim of its partition, a settle that buries it), while no
    orchestrator runs; the partition is released after, for the next one's relay."""
    event = json.loads(body)
    saga_id, seq = message_id.rsplit(":", 1)
    partition = partition_of(saga_id, 4)
    store = open_store(database_url)
    await store.open()
    try:
        row = OutboxEvent("rabbitmq", partition, saga_id, int(seq), event["type"], body)
        await store.enqueue_events([row])
        lease = Lease("a-test-burier", 30.0)
        claims = await store.claim_event_partitions("rabbitmq", 4, lease, 4)
        [claim] = [claim for claim in claims if claim.partition == partition]
        [pending] = await store.pending_events("rabbitmq", partition, limit=10)
        assert await store.settle_events(claim, lease, [], DeadEvent(pending.id, 5, "refused"))
        await store.release_event_partitions("rabbitmq", lease.owner)
    finally:
        await store.close()


async def test_a_requeued_dead_event_reaches_rabbitmq_with_its_id_and_body(
    tmp_path,
    database_url,
    participants,  # noqa: F811
    rabbitmq,  # noqa: F811
):
    with serving(tmp_path, database_url, participants, rabbitmq, "first") as orchestrator:
        saga_id = await start_saga_at(orchestrator.address, travel("requeued"), "requeue-1")
        async with grpc.aio.insecure_channel(orchestrator.address) as channel:
            await wait_terminal(pb_grpc.SagaOrchestratorStub(channel), saga_id)
        expected = (await lifecycle_ids(database_url, [saga_id]))[saga_id]
        delivered = await received_of(rabbitmq, saga_id, len(expected))
    await bury_a_delivered_event(database_url, *delivered[-1])

    with serving(tmp_path, database_url, participants, rabbitmq, "second") as orchestrator:
        address = orchestrator.address
        listed = saga_cli("events", "dead", "--sink", "rabbitmq", "--address", address, "--json")
        [letter] = json.loads(listed.stdout)["events"]
        assert letter["event_id"] == delivered[-1][0]

        requeued = saga_cli(
            "events", "requeue", "--sink", "rabbitmq", letter["id"], "--address", address
        )

        assert requeued.returncode == 0, requeued.stderr
        again = await received_of(rabbitmq, saga_id, len(expected) + 1)
        assert again[-1] == delivered[-1]
        assert (await lifecycle_ids(database_url, [saga_id]))[saga_id] == expected
