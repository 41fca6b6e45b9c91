"""A property of the relay, end to end: for any mix of sagas that complete and sagas
that compensate, per saga, the deduplicated events a real RabbitMQ consumer saw are
exactly the transitions of the saga's log the sink selects (`--events-set all`: every
one), in the log's order."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.conftest import FAIL_CAR_CLASS
from tests.e2e.events_support import (
    ALL_EVENTS,
    COMPLETED,
    FAILED,
    expected_events,
    per_saga,
    serve,
    unique_consumer,
    wait_all_terminal,
)
from tests.support.payloads import travel
from tests.support.starting import start_saga_at
from tools.processes import PARTICIPANT_SERVICES, ChildProcess, participants_process

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


class Relaying:
    """One orchestrator (SQLite) with its participants and a consumer, for the module."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.database_url = f"sqlite:///{workdir / 'saga.sqlite3'}"
        self.participants = participants_process(
            workdir, PARTICIPANT_SERVICES, ["--capacity", "100000", "--fail-ids", FAIL_CAR_CLASS]
        )
        self.consumer = unique_consumer()
        self.orchestrator: ChildProcess | None = None

    def start(self) -> None:
        asyncio.run(self.consumer.declare())
        services = self.participants.start().info["services"]
        self.orchestrator = serve(
            self.workdir,
            self.database_url,
            services,
            self.consumer,
            "orchestrator",
            extra=["--events-set", "all"],
        ).start()

    def stop(self) -> None:
        if self.orchestrator is not None:
            self.orchestrator.stop()
        self.participants.stop()
        asyncio.run(self.consumer.delete())


@pytest.fixture(scope="module")
def relaying(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Relaying]:
    setup = Relaying(tmp_path_factory.mktemp("relaying"))
    try:
        setup.start()
        yield setup
    finally:
        setup.stop()


async def run_mix(setup: Relaying, compensates: list[bool]) -> None:
    assert setup.orchestrator is not None
    address = setup.orchestrator.address
    token = secrets.token_hex(3)
    saga_ids = await asyncio.gather(
        *(
            start_saga_at(
                address,
                travel(f"{token}-{n}", car_class=FAIL_CAR_CLASS if fails else "compact"),
                f"{token}-{n}",
            )
            for n, fails in enumerate(compensates)
        )
    )
    statuses = await wait_all_terminal(address, saga_ids)
    assert statuses == {FAILED if fails else COMPLETED for fails in compensates}
    expected = await expected_events(setup.database_url, saga_ids, ALL_EVENTS)
    received = per_saga(await setup.consumer.messages())
    assert {saga_id: received.get(saga_id) for saga_id in saga_ids} == expected
    assert all(len(ids) >= 4 for ids in expected.values())


@settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(compensates=st.lists(st.booleans(), min_size=1, max_size=5))
def test_each_sagas_deduplicated_events_are_its_selected_transitions_in_order(
    relaying: Relaying, compensates: list[bool]
) -> None:
    asyncio.run(run_mix(relaying, compensates))
