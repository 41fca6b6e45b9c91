"""Events across outages of what the orchestrator depends on: RabbitMQ stopped while
sagas go on (a private node: the machine's broker serves other tests), and PostgreSQL
crashing under a running orchestrator (a private cluster). Sagas finish, and once the
broker or the database is back every event reaches the consumer, in order per saga."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from orchestrator.events.config import RABBITMQ_SINK
from orchestrator.store import open_store
from tests.conftest import url_with_search_path
from tests.e2e.events_support import (
    COMPLETED,
    consuming,
    expected_events,
    per_saga,
    running,
    serve,
    wait_all_terminal,
    wait_until,
)
from tests.e2e.pgserver import PrivatePostgres, private_postgres
from tests.support.payloads import travel
from tests.support.starting import start_saga_at
from tools import rabbitmq_node
from tools.processes import PARTICIPANT_SERVICES, ChildProcess, participants_process

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def participants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChildProcess]:
    """Each action takes a while, so sagas are mid-flight when something goes away."""
    process = participants_process(
        tmp_path_factory.mktemp("participants"),
        PARTICIPANT_SERVICES,
        ["--capacity", "100000", "--latency-ms", "100"],
    )
    try:
        yield process.start()
    finally:
        process.stop()


@pytest.fixture(scope="module")
def broker_node() -> Iterator[rabbitmq_node.PrivateRabbitMQ]:
    missing = rabbitmq_node.missing_tools()
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{missing}; a private RabbitMQ node is required under CI=true")
        pytest.skip(missing)
    with rabbitmq_node.private_rabbitmq() as node:
        yield node


async def start(address: str, prefix: str, count: int) -> list[str]:
    return await asyncio.gather(
        *(start_saga_at(address, travel(f"{prefix}-{n}"), f"{prefix}-{n}") for n in range(count))
    )


async def backlog(database_url: str) -> int:
    store = open_store(database_url)
    await store.open()
    try:
        found = (await store.event_backlog()).get(RABBITMQ_SINK)
        return 0 if found is None else found.pending
    finally:
        await store.close()


@pytest.mark.timeout(300)
async def test_a_rabbitmq_outage_fails_no_saga_and_its_backlog_drains_once_back(
    tmp_path, database_url, participants, broker_node
):
    services = participants.info["services"]
    async with consuming(broker_node.url) as consumer:
        with running(serve(tmp_path, database_url, services, consumer, "relaying")) as serving:
            before = await start(serving.address, "before", 4)
            assert await wait_all_terminal(serving.address, before) == {COMPLETED}

            async def flowing() -> bool:
                return bool(await consumer.messages())

            await wait_until(flowing, "events reach the consumer")

            broker_node.stop_app()
            during = await start(serving.address, "during", 6)
            assert await wait_all_terminal(serving.address, during) == {COMPLETED}
            assert await backlog(database_url) >= 2 * len(during)  # started, completed

            broker_node.start_app()
            after = await start(serving.address, "after", 2)
            saga_ids = [*before, *during, *after]
            assert await wait_all_terminal(serving.address, saga_ids) == {COMPLETED}
            expected = await expected_events(database_url, saga_ids)
        messages = await consumer.messages()
    assert per_saga(messages) == expected


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PrivatePostgres]:
    with private_postgres() as server:
        yield server


@pytest.fixture
def private_url(postgres_server: PrivatePostgres) -> Iterator[str]:
    schema = f"events_{secrets.token_hex(4)}"
    with psycopg.connect(postgres_server.url, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield url_with_search_path(postgres_server.url, schema)
    finally:
        if not postgres_server.running():
            postgres_server.start()
        with psycopg.connect(postgres_server.url, autocommit=True) as connection:
            connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.mark.postgres
@pytest.mark.timeout(300)
async def test_a_postgres_crash_loses_no_committed_event(
    tmp_path, private_url, postgres_server, participants
):
    """`pg_ctl stop -m immediate` (no shutdown checkpoint: crash recovery on restart)
    while sagas run and the relay publishes; after the restart every saga finishes and
    every event of its log reaches the consumer."""
    services = participants.info["services"]
    async with consuming() as consumer:
        with running(serve(tmp_path, private_url, services, consumer, "relaying")) as serving:
            saga_ids = await start(serving.address, "crash", 8)

            async def flowing() -> bool:
                return bool(await consumer.messages())

            await wait_until(flowing, "events reach the consumer")
            postgres_server.stop("immediate")
            postgres_server.start()
            assert await wait_all_terminal(serving.address, saga_ids) == {COMPLETED}
            expected = await expected_events(private_url, saga_ids)
        messages = await consumer.messages()
    assert per_saga(messages) == expected
