"""The lock-release listener: a replica listens for releases only when some registered
definition takes locks, so a deployment without locks keeps no listening connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orchestrator.core.definition import SagaDefinition
from orchestrator.core.registry import Registry
from orchestrator.engine.commands import ParticipantClient
from orchestrator.engine.executor import Executor
from orchestrator.store.sqlite import SqliteStore
from tests.support.lock_sagas import LOCKED_TRIP
from tests.support.policy_sagas import RETRY_PROBE

pytestmark = pytest.mark.integration


class ListenCountingStore(SqliteStore):
    """A store that counts the release listeners it is asked for (each one waits forever)."""

    listeners = 0

    def lock_releases(self) -> AsyncIterator[str]:
        self.listeners += 1
        return self._never_released()

    async def _never_released(self) -> AsyncIterator[str]:
        await asyncio.Event().wait()
        yield ""


@pytest.mark.parametrize(
    ("definitions", "listeners"),
    [([RETRY_PROBE], 0), ([RETRY_PROBE, LOCKED_TRIP], 1)],
    ids=["no-lock-definitions", "a-lock-definition"],
)
async def test_releases_are_listened_for_only_when_a_definition_takes_locks(
    tmp_path: Path, definitions: list[SagaDefinition], listeners: int
):
    store = ListenCountingStore(str(tmp_path / "sagas.db"))
    await store.open()
    client = ParticipantClient({})
    executor = Executor(store, Registry(definitions), client)
    try:
        assert Registry(definitions).takes_locks is bool(listeners)
        executor.resume_unfinished()
        for _ in range(20):  # let the upkeep tasks start
            await asyncio.sleep(0)
        assert store.listeners == listeners
    finally:
        await executor.stop()
        await client.close()
        await store.close()
