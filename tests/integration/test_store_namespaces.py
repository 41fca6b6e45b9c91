"""Namespaces in the store, on SQLite and PostgreSQL: migration 0007 puts the sagas stored
before it in `default` with their keys qualified, and idempotency keys and lock keys are
unique per namespace."""

from __future__ import annotations

import dataclasses
import sqlite3
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from orchestrator.core.records import LockHolding, NewSaga, SagaFilter, SagaRecord, SagaStatus
from orchestrator.store import Store, open_store
from orchestrator.store import migrations as migrations_module
from orchestrator.store import sqlite as sqlite_module
from orchestrator.store.postgres import connection as postgres_connection
from tests.integration.test_store import pending_steps, saga_record, saga_started

pytestmark = pytest.mark.integration

BEFORE_NAMESPACES = 6
NOW = datetime(2024, 5, 1, 12, tzinfo=UTC)


def _rows_before_namespaces(store_url: str) -> None:
    """Sagas as a version-6 orchestrator stored them: A holds cust:1 (and used key k-1),
    B queues for it."""
    sagas = [
        ("A", "k-1", '["cust:1"]', True),
        ("B", None, '["cust:1"]', False),
    ]
    insert = (
        "INSERT INTO sagas (saga_id, saga_type, definition_version, correlation_id,"
        " idempotency_key, payload, status, create_time, update_time, version, lock_keys,"
        " locks_held) VALUES ({p}, 'trip', 1, 'c', {p}, {p}, 'RUNNING', {p}, {p}, 1, {p}, {p})"
    )
    held = "INSERT INTO saga_locks (lock_key, saga_id, acquire_time) VALUES ('cust:1', 'A', {p})"
    queued = (
        "INSERT INTO saga_lock_queue (lock_key, saga_id, ticket, enqueue_time)"
        " VALUES ('cust:1', 'B', 1, {p})"
    )
    if store_url.startswith("sqlite"):
        now: Any = NOW.isoformat(timespec="microseconds")
        with sqlite3.connect(store_url.removeprefix("sqlite:///")) as connection:
            for saga_id, key, keys, holds in sagas:
                params = (saga_id, key, "{}", now, now, keys, holds)
                connection.execute(insert.format(p="?"), params)
            connection.execute(held.format(p="?"), (now,))
            connection.execute(queued.format(p="?"), (now,))
        return
    with psycopg.connect(store_url, autocommit=True) as connection:
        for saga_id, key, keys, holds in sagas:
            params = (saga_id, key, "{}", NOW, NOW, keys, holds)
            connection.execute(insert.format(p="%s"), params)  # type: ignore[arg-type]
        connection.execute(held.format(p="%s"), (NOW,))  # type: ignore[arg-type]
        connection.execute(queued.format(p="%s"), (NOW,))  # type: ignore[arg-type]


async def test_migration_puts_earlier_sagas_in_default_with_their_keys_qualified(
    store_url: str, monkeypatch: pytest.MonkeyPatch
):
    def up_to_six(backend: str) -> list[migrations_module.Migration]:
        return migrations_module.load_migrations(backend)[:BEFORE_NAMESPACES]

    with monkeypatch.context() as patch:
        patch.setattr(sqlite_module, "load_migrations", up_to_six)
        patch.setattr(postgres_connection, "load_migrations", up_to_six)
        old = open_store(store_url)
        await old.open()
        assert await old.schema_version() == BEFORE_NAMESPACES
        await old.close()
    _rows_before_namespaces(store_url)

    store = open_store(store_url)
    await store.open()
    try:
        assert await store.schema_version() > BEFORE_NAMESPACES
        a, b = await store.get_saga("A"), await store.get_saga("B")
        assert a is not None and b is not None
        assert (a.namespace, a.idempotency_key, a.lock_keys) == (
            "default",
            "default/k-1",
            ("default/cust:1",),
        )
        assert (b.namespace, b.idempotency_key, b.lock_keys) == (
            "default",
            None,
            ("default/cust:1",),
        )
        assert await store.lock_holdings("A") == [LockHolding("default/cust:1", holds=True)]
        assert await store.lock_holdings("B") == [LockHolding("default/cust:1", holds=False)]
        for scope in (None, ("default",), ("default", "beta")):
            listed = await store.list_sagas(SagaFilter(lock_key="cust:1", namespaces=scope), 10)
            assert {saga.saga_id for saga in listed} == {"A", "B"}, scope
        assert await store.list_sagas(SagaFilter(lock_key="cust:1", namespaces=("beta",)), 10) == []
        # The key k-1 is default's: beta may use it for a saga of its own.
        assert not (await _create(store, saga_record("C", key="default/k-1"))).created
        beta = dataclasses.replace(saga_record("D", key="beta/k-1"), namespace="beta")
        assert (await _create(store, beta)).created
    finally:
        await store.close()


async def _create(store: Store, saga: SagaRecord) -> Any:
    return await store.create_saga(saga, pending_steps(saga.saga_id), [saga_started(saga.saga_id)])


async def test_listing_keeps_to_the_namespaces_asked_for(store: Store):
    for saga_id, namespace in (("a1", "alpha"), ("a2", "alpha"), ("b1", "beta"), ("d1", "default")):
        saga = dataclasses.replace(saga_record(saga_id), namespace=namespace)
        await _create(store, saga)

    async def listed(namespaces: tuple[str, ...] | None) -> set[str]:
        found = await store.list_sagas(SagaFilter(namespaces=namespaces), limit=10)
        return {saga.saga_id for saga in found}

    assert await listed(None) == {"a1", "a2", "b1", "d1"}
    assert await listed(("alpha",)) == {"a1", "a2"}
    assert await listed(("alpha", "default")) == {"a1", "a2", "d1"}
    assert await listed(()) == set()
    stored = await store.get_saga("b1")
    assert stored is not None and stored.namespace == "beta" and stored.status is SagaStatus.RUNNING


async def test_new_sagas_of_two_namespaces_share_a_client_key_and_a_batch(store: Store):
    same = [
        dataclasses.replace(saga_record(saga_id, key=f"{ns}/order-7"), namespace=ns)
        for saga_id, ns in (("x", "alpha"), ("y", "beta"), ("z", "alpha"))
    ]
    results = await store.create_sagas(
        [NewSaga(s, pending_steps(s.saga_id), (saga_started(s.saga_id),)) for s in same]
    )
    assert [(r.saga.saga_id, r.created) for r in results] == [
        ("x", True),
        ("y", True),
        ("x", False),
    ]
