"""The events guarantees under real crashes (docs/events.md, "Guarantees").

Real `saga serve` processes and participants, the machine's RabbitMQ, a consumer on a
test-owned exchange and queue. Each process is killed or frozen at a named failpoint
(`SAGA_FAILPOINT`): after a commit and before the relay reads it, after a batch is read
and before it is published, after the broker confirmed a batch and before its rows are
deleted, in the middle of a batch's confirms; and a relay frozen past its lease while a
second replica takes its partition over. Every time, once a replica runs again, the
consumer has every selected transition of every saga, deduplicated by id in the log's
order, and where the crash fell between confirm and delete, the duplicate carries the
same id.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.failpoints import EXIT_CODE
from tests.e2e.events_support import (
    ALL_EVENTS,
    COMPLETED,
    Consumer,
    consuming,
    duplicated,
    expected_events,
    pending_event_ids,
    per_saga,
    running,
    serve,
    wait_all_terminal,
    wait_exit,
    wait_for_line,
    wait_until,
)
from tests.support.payloads import travel
from tests.support.starting import start_saga_at
from tools.processes import PARTICIPANT_SERVICES, ChildProcess, participants_process

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def participants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChildProcess]:
    process = participants_process(
        tmp_path_factory.mktemp("participants"), PARTICIPANT_SERVICES, ["--capacity", "100000"]
    )
    try:
        yield process.start()
    finally:
        process.stop()


async def start_sagas(address: str, keys: list[str]) -> list[str]:
    """Started (or found again) by idempotency key: the same ids on every replica."""
    return [await start_saga_at(address, travel(key), key, idempotency_key=key) for key in keys]


async def start_until_crash(address: str, keys: list[str]) -> None:
    """Start the sagas at once; the process may die before it answers them all (the
    next replica starts the rest by the same keys)."""
    await asyncio.gather(
        *(start_saga_at(address, travel(key), key, idempotency_key=key) for key in keys),
        return_exceptions=True,
    )


async def finish_elsewhere(
    tmp_path: Path, database_url: str, services: dict[str, str], consumer: Consumer, keys: list[str]
) -> tuple[list[str], dict[str, list[str]]]:
    """A fresh replica finishes the sagas; their ids and each one's expected events."""
    with running(serve(tmp_path, database_url, services, consumer, "survivor")) as survivor:
        saga_ids = await start_sagas(survivor.address, keys)
        assert await wait_all_terminal(survivor.address, saga_ids) == {COMPLETED}
        return saga_ids, await expected_events(database_url, saga_ids)


@pytest.mark.parametrize("point", ["saga_finished", "relay_read"])
async def test_a_kill_after_the_commit_and_before_the_publish_loses_no_event(
    tmp_path, database_url, participants, point
):
    """`saga_finished`: the completion is committed, the relay has not read it yet.
    `relay_read`: a batch is read, nothing of it published. Either way the rows wait in
    the outbox and the next replica publishes them."""
    services = participants.info["services"]
    keys = [f"{point}-{n}" for n in range(3)]
    async with consuming() as consumer:
        doomed = serve(tmp_path, database_url, services, consumer, "doomed", failpoint=point)
        with running(doomed):
            await start_until_crash(doomed.address, keys)
            assert await wait_exit(doomed) == EXIT_CODE
        await wait_for_line(doomed, f"failpoint {point} hit")
        stranded = await pending_event_ids(database_url)
        assert stranded, "the crash left nothing in the outbox: it fell too late"
        received = {message_id for message_id, _ in await consumer.messages()}
        assert set(stranded) - received, "every committed event was out before the crash"

        saga_ids, expected = await finish_elsewhere(
            tmp_path, database_url, services, consumer, keys
        )
        messages = await consumer.messages()
    assert per_saga(messages) == expected
    assert set(stranded) <= {message_id for message_id, _ in messages}
    assert all(len(expected[saga_id]) == 2 for saga_id in saga_ids)


async def test_a_kill_between_the_confirm_and_the_delete_republishes_under_the_same_id(
    tmp_path, database_url, participants
):
    services = participants.info["services"]
    keys = [f"confirmed-{n}" for n in range(3)]
    async with consuming() as consumer:
        doomed = serve(
            tmp_path, database_url, services, consumer, "doomed", failpoint="relay_confirmed"
        )
        with running(doomed):
            await start_until_crash(doomed.address, keys)
            assert await wait_exit(doomed) == EXIT_CODE
        await wait_for_line(doomed, "failpoint relay_confirmed hit")
        confirmed = [message_id for message_id, _ in await consumer.messages()]
        assert confirmed, "the broker confirmed a batch, so the consumer has it"
        # Confirmed, yet not deleted: the outbox still holds every one of them.
        assert set(confirmed) <= set(await pending_event_ids(database_url))

        _, expected = await finish_elsewhere(tmp_path, database_url, services, consumer, keys)
        messages = await consumer.messages()
    assert per_saga(messages) == expected
    assert set(confirmed) <= duplicated(messages)


async def test_a_kill_in_the_middle_of_a_batch_loses_nothing_and_keeps_each_sagas_order(
    tmp_path, database_url, participants
):
    """A backlog of every transition of four sagas (one batch on one partition); the
    relay dies at the broker's fifth confirm, the rest of the batch in flight."""
    services = participants.info["services"]
    keys = [f"mid-batch-{n}" for n in range(4)]
    every = ["--events-set", "all"]
    async with consuming() as consumer:
        # The broker unreachable: the sagas finish, their events wait in the outbox.
        cut_off = serve(
            tmp_path,
            database_url,
            services,
            consumer,
            "cut-off",
            url="amqp://guest:guest@127.0.0.1:1/",
            extra=every,
        )
        with running(cut_off):
            saga_ids = await start_sagas(cut_off.address, keys)
            assert await wait_all_terminal(cut_off.address, saga_ids) == {COMPLETED}
        backlog = await pending_event_ids(database_url)
        assert len(backlog) > 5

        doomed = serve(
            tmp_path,
            database_url,
            services,
            consumer,
            "doomed",
            failpoint="relay_item_confirmed:5",
            extra=every,
        )
        with running(doomed):
            assert await wait_exit(doomed) == EXIT_CODE
        await wait_for_line(doomed, "failpoint relay_item_confirmed hit 5 time(s)")
        first = [message_id for message_id, _ in await consumer.messages()]
        assert len(first) >= 5
        assert first == backlog[: len(first)]  # in outbox order
        assert await pending_event_ids(database_url) == backlog  # nothing deleted

        with running(serve(tmp_path, database_url, services, consumer, "survivor", extra=every)):
            expected = await expected_events(database_url, saga_ids, ALL_EVENTS)
        messages = await consumer.messages()
    assert per_saga(messages) == expected
    assert set(first) <= duplicated(messages)


@pytest.mark.postgres
@pytest.mark.timeout(300)
async def test_a_relay_frozen_past_its_lease_deletes_nothing_once_another_took_over(
    tmp_path, postgres_url, participants
):
    """Replica a freezes (SIGSTOP) after the broker confirmed a batch, before deleting
    it. Replica b, with a long lease, takes the partition over, publishes the batch
    again and freezes at the same point. a wakes: its fenced delete is void and the
    rows are still in the outbox. b wakes, deletes them, and both go on."""
    services = participants.info["services"]
    keys = [f"frozen-{n}" for n in range(4)]
    async with consuming() as consumer:
        first = serve(
            tmp_path, postgres_url, services, consumer, "a", failpoint="stop:relay_confirmed"
        )
        second = serve(
            tmp_path,
            postgres_url,
            services,
            consumer,
            "b",
            failpoint="stop:relay_confirmed",
            env={"SAGA_LEASE_SECONDS": "30"},
        )
        with running(first) as a:
            starting = asyncio.create_task(start_until_crash(a.address, keys))
            await wait_for_line(a, "failpoint relay_confirmed hit")
            published_by_a = [message_id for message_id, _ in await consumer.messages()]
            assert published_by_a

            with running(second) as b:
                await wait_for_line(b, "failpoint relay_confirmed hit")

                async def republished() -> bool:
                    return set(published_by_a) <= duplicated(await consumer.messages())

                await wait_until(republished, "b publishes a's batch again")

                os.kill(a.pid, signal.SIGCONT)
                await wait_for_line(a, "taken over; its deletes are void")
                # a's delete touched nothing: b has not deleted yet, the rows are there.
                assert set(published_by_a) <= set(await pending_event_ids(postgres_url))

                os.kill(b.pid, signal.SIGCONT)
                await starting
                saga_ids = await start_sagas(b.address, keys)
                assert await wait_all_terminal(b.address, saga_ids) == {COMPLETED}
                expected = await expected_events(postgres_url, saga_ids)
        messages = await consumer.messages()
    assert per_saga(messages) == expected
