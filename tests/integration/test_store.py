"""The Store contract, proven once per back end (SQLite file and PostgreSQL schema)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from orchestrator.core.errors import (
    ConfigurationError,
    DataRefused,
    StaleSagaVersion,
    StoreUnavailable,
)
from orchestrator.core.records import (
    Lease,
    NewSaga,
    PagePosition,
    SagaCommit,
    SagaFilter,
    SagaRecord,
    SagaStatus,
    StepRecord,
    StepStatus,
    TransitionEvent,
    TransitionRecord,
)
from orchestrator.store import PostgresStore, SqliteStore, Store, open_store
from orchestrator.store._statements import SAGA_COLUMNS, STEP_COLUMNS, TRANSITION_COLUMNS
from orchestrator.store.migrations import load_migrations
from orchestrator.store.postgres import sql as postgres_sql
from orchestrator.telemetry.metrics import SagaMetrics

pytestmark = pytest.mark.integration

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
STEP_NAMES = ("reserve_flight", "book_hotel", "charge_card")


def saga_record(
    saga_id: str,
    *,
    key: str | None = None,
    status: SagaStatus = SagaStatus.RUNNING,
    create_time: datetime = T0,
    deadline_time: datetime | None = None,
) -> SagaRecord:
    return SagaRecord(
        saga_id=saga_id,
        saga_type="trip",
        definition_version=1,
        correlation_id=f"order-{saga_id}",
        payload={"traveller": "Ada", "nights": 2},
        status=status,
        create_time=create_time,
        update_time=create_time,
        idempotency_key=key,
        deadline_time=deadline_time,
    )


def pending_steps(saga_id: str) -> tuple[StepRecord, ...]:
    return tuple(StepRecord(saga_id, index, name) for index, name in enumerate(STEP_NAMES))


def saga_started(saga_id: str) -> TransitionRecord:
    return TransitionRecord(saga_id, 1, TransitionEvent.SAGA_STARTED, T0, SagaStatus.RUNNING)


async def create(store: Store, saga_id: str, **fields: object) -> SagaRecord:
    saga = saga_record(saga_id, **fields)
    result = await store.create_saga(saga, pending_steps(saga_id), [saga_started(saga_id)])
    assert result.created
    return saga


def first_step_completed(saga: SagaRecord, *, seq: int, result: bytes = b"PNR-1") -> SagaCommit:
    """The commit recording that the first step completed: version +1, one step, one log row."""
    moment = saga.update_time + timedelta(seconds=1)
    return SagaCommit(
        saga=dataclasses.replace(saga, update_time=moment, version=saga.version + 1),
        expected_version=saga.version,
        steps=(
            StepRecord(
                saga.saga_id,
                0,
                STEP_NAMES[0],
                StepStatus.COMPLETED,
                attempts=1,
                result=result,
                start_time=saga.update_time,
                update_time=moment,
            ),
        ),
        transitions=(
            TransitionRecord(
                saga.saga_id,
                seq,
                TransitionEvent.STEP_COMPLETED,
                moment,
                SagaStatus.RUNNING,
                step=STEP_NAMES[0],
                step_status=StepStatus.COMPLETED,
                attempt=1,
            ),
        ),
    )


def backend_of(store_url: str) -> str:
    return "sqlite" if store_url.startswith("sqlite") else "postgres"


async def test_open_creates_schema_and_records_latest_version(store: Store, store_url: str):
    latest = load_migrations(backend_of(store_url))[-1].version

    assert await store.schema_version() == latest
    assert await store.list_sagas(SagaFilter(), limit=10) == []


async def test_reopening_keeps_data_and_applies_no_migration_again(store: Store, store_url: str):
    saga = await create(store, "saga-1")
    version = await store.schema_version()

    # 0001 creates its tables without IF NOT EXISTS: applying it twice would fail open().
    reopened = open_store(store_url)
    await reopened.open()
    try:
        assert await reopened.schema_version() == version
        assert await reopened.get_saga("saga-1") == saga
    finally:
        await reopened.close()


async def test_concurrent_first_opens_migrate_once(store_url: str):
    stores = [open_store(store_url) for _ in range(4)]
    try:
        await asyncio.gather(*(store.open() for store in stores))
        versions = {await store.schema_version() for store in stores}
    finally:
        await asyncio.gather(*(store.close() for store in stores))

    assert versions == {load_migrations(backend_of(store_url))[-1].version}


async def test_create_then_get_round_trips_every_field(store: Store):
    plus_two = timezone(timedelta(hours=2))
    saga = SagaRecord(
        saga_id="saga-every-field",
        saga_type="trip",
        definition_version=7,
        correlation_id="order-42",
        payload={
            "city": "Zürich ✈",
            "nights": 2**53,
            "price": 0.1,
            "paid": False,
            "note": None,
            "rooms": [{"beds": 2}, {"beds": 1}],
        },
        status=SagaStatus.COMPENSATING,
        create_time=datetime(2024, 5, 1, 14, 0, 0, 1, tzinfo=plus_two),
        update_time=datetime(2024, 5, 1, 12, 30, 0, 999999, tzinfo=UTC),
        idempotency_key="request-42",
        request_fingerprint="sha256:abc",
        failure_reason="hotel full",
        failed_step="book_hotel",
        needs_intervention=True,
        version=3,
    )
    steps = [
        StepRecord(
            saga.saga_id,
            1,
            "book_hotel",
            StepStatus.FAILED,
            attempts=3,
            error="no rooms",
            result=b"",
            start_time=T0,
            update_time=T0 + timedelta(microseconds=1),
        ),
        StepRecord(
            saga.saga_id,
            0,
            "reserve_flight",
            StepStatus.COMPENSATING,
            attempts=1,
            compensation_attempts=2,
            result=bytes(range(256)),
            start_time=datetime(2024, 5, 1, 8, 0, tzinfo=timezone(timedelta(hours=-4))),
        ),
        StepRecord(saga.saga_id, 2, "charge_card"),
    ]
    transitions = [
        TransitionRecord(saga.saga_id, 1, TransitionEvent.SAGA_STARTED, T0, SagaStatus.RUNNING),
        TransitionRecord(
            saga.saga_id,
            2,
            TransitionEvent.STEP_FAILED,
            T0 + timedelta(seconds=1),
            SagaStatus.COMPENSATING,
            step="book_hotel",
            step_status=StepStatus.FAILED,
            attempt=3,
            error="no rooms",
            actor="operator:grace",
        ),
    ]

    result = await store.create_saga(saga, steps, transitions)
    stored = await store.get_saga(saga.saga_id)
    stored_steps = await store.get_steps(saga.saga_id)
    stored_transitions = await store.get_transitions(saga.saga_id)

    assert result.created
    assert result.saga == saga
    assert stored == saga
    assert stored_steps == sorted(steps, key=lambda step: step.index)
    assert stored_transitions == transitions
    assert stored is not None
    assert type(stored.status) is SagaStatus
    assert type(stored_steps[0].status) is StepStatus
    assert type(stored_transitions[0].event) is TransitionEvent
    times = [stored.create_time, stored.update_time, stored_transitions[1].time]
    times += [step.start_time for step in stored_steps if step.start_time is not None]
    assert all(moment.utcoffset() == timedelta(0) for moment in times)
    assert stored.create_time == datetime(2024, 5, 1, 12, 0, 0, 1, tzinfo=UTC)


async def test_naive_datetime_is_refused(store: Store):
    naive = saga_record("saga-naive", create_time=datetime(2024, 5, 1, 12, 0))

    with pytest.raises(ValueError, match="naive"):
        await store.create_saga(naive, [], [])

    assert await store.get_saga("saga-naive") is None


async def test_idempotency_key_returns_existing_saga_and_writes_nothing(store: Store):
    first = await create(store, "saga-1", key="request-1")
    retry = saga_record("saga-2", key="request-1")

    result = await store.create_saga(retry, pending_steps("saga-2"), [saga_started("saga-2")])

    assert not result.created
    assert result.saga == first
    assert await store.get_saga("saga-2") is None
    assert await store.get_steps("saga-2") == []
    assert await store.get_transitions("saga-2") == []
    assert len(await store.get_transitions("saga-1")) == 1


def new_saga(saga_id: str, key: str | None = None) -> NewSaga:
    return NewSaga(saga_record(saga_id, key=key), pending_steps(saga_id), (saga_started(saga_id),))


async def test_a_batch_of_creates_is_one_transaction_a_key_twice_answers_the_first(store: Store):
    known = await create(store, "saga-0", key="known")
    batch = [
        new_saga("saga-1", key="k-1"),
        new_saga("saga-2"),
        new_saga("saga-3", key="k-1"),  # the key of an earlier saga of the batch
        new_saga("saga-4", key="known"),  # the key of a stored saga
    ]

    results = await store.create_sagas(batch)

    assert [result.created for result in results] == [True, True, False, False]
    assert results[2].saga.saga_id == "saga-1" and results[3].saga == known
    for new in batch[:2]:  # stored as they were given
        assert await store.get_saga(new.saga.saga_id) == new.saga
        assert await store.get_steps(new.saga.saga_id) == list(new.steps)
        assert await store.get_transitions(new.saga.saga_id) == list(new.transitions)
    for saga_id in ("saga-3", "saga-4"):
        assert await store.get_saga(saga_id) is None
        assert await store.get_steps(saga_id) == []


async def test_a_saga_of_a_batch_the_store_refuses_fails_alone(store: Store):
    broken = new_saga("saga-2")
    broken = dataclasses.replace(broken, transitions=(saga_started("saga-2"),) * 2)

    # Two log rows with one seq: StaleSagaVersion on PostgreSQL, refused data on SQLite.
    results = await store.create_sagas([new_saga("saga-1"), broken])

    assert results[0].created  # type: ignore[union-attr]
    assert isinstance(results[1], StaleSagaVersion | DataRefused)
    assert await store.get_saga("saga-1") is not None and await store.get_saga("saga-2") is None
    assert await store.get_steps("saga-2") == []


async def test_concurrent_creates_with_one_key_create_exactly_one(store: Store):
    sagas = [saga_record(f"saga-{n}", key="request-1") for n in range(20)]

    results = await asyncio.gather(
        *(
            store.create_saga(saga, pending_steps(saga.saga_id), [saga_started(saga.saga_id)])
            for saga in sagas
        )
    )

    winners = [result.saga for result in results if result.created]
    assert len(winners) == 1
    assert all(result.saga == winners[0] for result in results)
    stored = [await store.get_saga(saga.saga_id) for saga in sagas]
    assert [saga for saga in stored if saga is not None] == winners


async def test_commit_updates_saga_steps_and_log(store: Store):
    saga = await create(store, "saga-1")
    commit = first_step_completed(saga, seq=2)

    await store.commit([commit])

    assert await store.get_saga("saga-1") == commit.saga
    steps = await store.get_steps("saga-1")
    assert steps[0] == commit.steps[0]
    assert steps[1:] == list(pending_steps("saga-1")[1:])
    assert await store.get_transitions("saga-1") == [saga_started("saga-1"), *commit.transitions]


async def test_two_commits_of_one_saga_in_one_batch_apply_in_order(store: Store):
    saga = await create(store, "saga-1")
    first = first_step_completed(saga, seq=2, result=b"first")
    second = first_step_completed(first.saga, seq=3, result=b"second")

    await store.commit([first, second])

    assert await store.get_saga("saga-1") == second.saga
    assert (await store.get_steps("saga-1"))[0].result == b"second"
    assert [t.seq for t in await store.get_transitions("saga-1")] == [1, 2, 3]


async def test_stale_expected_version_rolls_back_the_whole_batch(store: Store):
    fresh = await create(store, "saga-fresh")
    moved_on = await create(store, "saga-moved-on")
    await store.commit([first_step_completed(moved_on, seq=2)])

    with pytest.raises(StaleSagaVersion, match=r"saga-moved-on.*version 1.*version 2"):
        await store.commit(
            [first_step_completed(fresh, seq=2), first_step_completed(moved_on, seq=3)]
        )

    assert await store.get_saga("saga-fresh") == fresh
    assert await store.get_steps("saga-fresh") == list(pending_steps("saga-fresh"))
    assert await store.get_transitions("saga-fresh") == [saga_started("saga-fresh")]
    assert len(await store.get_transitions("saga-moved-on")) == 2


async def test_commit_of_unknown_saga_raises_stale_version(store: Store):
    with pytest.raises(StaleSagaVersion, match="not stored"):
        await store.commit([first_step_completed(saga_record("saga-unknown"), seq=2)])


async def test_duplicate_transition_seq_fails_the_batch(store: Store):
    fresh = await create(store, "saga-fresh")
    clashing = await create(store, "saga-clashing")

    with pytest.raises(StaleSagaVersion, match="saga-clashing"):
        await store.commit(
            [first_step_completed(fresh, seq=2), first_step_completed(clashing, seq=1)]
        )

    assert await store.get_saga("saga-fresh") == fresh
    assert await store.get_saga("saga-clashing") == clashing
    assert await store.get_transitions("saga-fresh") == [saga_started("saga-fresh")]
    assert await store.get_steps("saga-clashing") == list(pending_steps("saga-clashing"))


async def test_get_transitions_after_seq_returns_only_later_rows_in_order(store: Store):
    saga = await create(store, "saga-1")
    for seq in range(2, 6):
        commit = first_step_completed(saga, seq=seq)
        await store.commit([commit])
        saga = commit.saga

    assert [t.seq for t in await store.get_transitions("saga-1", after_seq=3)] == [4, 5]
    assert [t.seq for t in await store.get_transitions("saga-1")] == [1, 2, 3, 4, 5]
    assert await store.get_transitions("saga-1", after_seq=5) == []


async def test_recovery_claims_running_and_compensating_sagas_oldest_first(store: Store):
    def at(seconds: int) -> datetime:
        return T0 + timedelta(seconds=seconds)

    newest = await create(store, "running-newest", create_time=at(30))
    await create(store, "completed", status=SagaStatus.COMPLETED, create_time=at(-50))
    compensating = await create(
        store, "compensating", status=SagaStatus.COMPENSATING, create_time=at(10)
    )
    await create(store, "failed", status=SagaStatus.FAILED, create_time=at(20))
    oldest = await create(store, "running-oldest", create_time=at(-40))
    finishing = await create(store, "running-then-completed", create_time=at(-60))
    done = first_step_completed(finishing, seq=2)
    await store.commit([done])
    await store.commit(
        [
            SagaCommit(
                saga=dataclasses.replace(
                    done.saga, status=SagaStatus.COMPLETED, version=done.saga.version + 1
                ),
                expected_version=done.saga.version,
            )
        ]
    )

    first = await store.claim_sagas(ALICE, limit=2)
    rest = await store.claim_sagas(ALICE, limit=10)

    claimed = [
        dataclasses.replace(saga, version=saga.version + 1) for saga in (oldest, compensating)
    ]
    assert first == claimed
    assert rest == [dataclasses.replace(newest, version=newest.version + 1)]
    assert await store.unfinished_definitions() == {
        (oldest.saga_type, oldest.definition_version): 3
    }


async def test_commit_of_many_sagas_in_one_call(store: Store):
    sagas = [await create(store, f"saga-{n:03}") for n in range(50)]
    commits = [first_step_completed(saga, seq=2, result=saga.saga_id.encode()) for saga in sagas]

    await store.commit(commits)

    for commit in commits:
        saga_id = commit.saga.saga_id
        assert await store.get_saga(saga_id) == commit.saga
        assert (await store.get_steps(saga_id))[0].result == saga_id.encode()
        assert [t.seq for t in await store.get_transitions(saga_id)] == [1, 2]


async def test_empty_commit_writes_nothing(store: Store):
    await store.commit([])

    assert await store.list_sagas(SagaFilter(), limit=10) == []


async def test_reads_of_unknown_saga_are_empty(store: Store):
    assert await store.get_saga("saga-unknown") is None
    assert await store.get_steps("saga-unknown") == []
    assert await store.get_transitions("saga-unknown") == []


async def test_postgres_store_on_unreachable_server_raises_store_unavailable():
    store = PostgresStore("postgresql://postgres@127.0.0.1:1/test", timeout=1.0)
    started = time.monotonic()

    with pytest.raises(StoreUnavailable):
        await store.open()

    assert time.monotonic() - started < 10


@pytest.mark.postgres
async def test_postgres_connection_lost_mid_call_raises_store_unavailable_then_recovers(
    postgres_url: str,
):
    application = f"saga_test_{secrets.token_hex(4)}"
    store = PostgresStore(f"{postgres_url}&application_name={application}", max_size=1)
    await store.open()
    try:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (application,),
            )

        with pytest.raises(StoreUnavailable):
            await store.get_saga("saga-1")
        assert await store.get_saga("saga-1") is None
    finally:
        await store.close()


@pytest.mark.postgres
async def test_postgres_idle_connections_that_died_with_the_server_are_dropped_at_once(
    postgres_url: str,
):
    application = f"saga_test_{secrets.token_hex(4)}"
    store = PostgresStore(f"{postgres_url}&application_name={application}", min_size=3, max_size=3)
    await store.open()
    try:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (application,),
            )

        with pytest.raises(StoreUnavailable):
            await store.get_saga("saga-1")
        # Two more idle connections died with the first; recovery drains them all.
        for _ in range(3):
            assert await store.get_saga("saga-1") is None
    finally:
        await store.close()


@pytest.mark.postgres
async def test_postgres_pool_is_exported_as_prometheus_series_while_open(postgres_url: str):
    store = PostgresStore(postgres_url, min_size=1, max_size=3)
    metrics = SagaMetrics(process_collectors=False)
    metrics.watch_store_pool(store.pool_stats)
    assert metrics.registry.get_sample_value("saga_store_pool_pool_size") is None

    await store.open()
    try:
        await store.get_saga("saga-1")
        await store.get_saga("saga-2")

        def sample(name: str) -> float | None:
            return metrics.registry.get_sample_value(f"saga_store_pool_{name}")

        assert sample("pool_max") == 3 and sample("pool_min") == 1
        assert 1 <= (sample("pool_size") or 0) <= 3
        assert sample("requests_waiting") == 0
        # open() migrated through the pool too.
        assert (sample("requests_total") or 0) >= 2
        assert (sample("connections_total") or 0) >= 1
        assert sample("connection_errors_total") == 0
    finally:
        await store.close()
    assert metrics.registry.get_sample_value("saga_store_pool_pool_size") is None


@pytest.mark.postgres
async def test_postgres_store_reports_its_database_unreachable_until_a_probe_reaches_it(
    postgres_url: str,
):
    application = f"saga_test_{secrets.token_hex(4)}"
    store = PostgresStore(f"{postgres_url}&application_name={application}", max_size=1)
    metrics = SagaMetrics(process_collectors=False)
    metrics.watch_store_pool(store.pool_stats)
    await store.open()
    try:
        assert metrics.registry.get_sample_value("saga_store_unreachable") == 0
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (application,),
            )
        with pytest.raises(StoreUnavailable):
            await store.get_saga("saga-1")
        assert metrics.registry.get_sample_value("saga_store_unreachable") == 1

        assert await store.get_saga("saga-1") is None  # the probe connects: back again
        assert metrics.registry.get_sample_value("saga_store_unreachable") == 0
    finally:
        await store.close()


async def test_sqlite_store_exports_no_pool_series(tmp_path: Path):
    store = SqliteStore(str(tmp_path / "sagas.db"))
    metrics = SagaMetrics(process_collectors=False)
    metrics.watch_store_pool(store.pool_stats)
    await store.open()
    try:
        await store.get_saga("saga-1")
        assert store.pool_stats() == {}
        assert metrics.registry.get_sample_value("saga_store_pool_pool_size") is None
    finally:
        await store.close()


async def test_sqlite_store_on_unusable_path_raises_store_unavailable(tmp_path: Path):
    (tmp_path / "a-file").write_text("not a directory")
    store = SqliteStore(str(tmp_path / "a-file" / "sagas.db"))

    with pytest.raises(StoreUnavailable):
        await store.open()


@pytest.mark.postgres
async def test_postgres_store_creates_the_schema_it_is_given(postgres_server_url: str):
    url = postgres_server_url
    schema = f"saga_test_{secrets.token_hex(6)}"
    store = PostgresStore(url, schema=schema)
    try:
        await store.open()
        saga = await create(store, "saga-1")
        await store.close()
        with psycopg.connect(url) as connection:
            query = sql.SQL("SELECT saga_id FROM {}.sagas").format(sql.Identifier(schema))
            row = connection.execute(query).fetchone()
        assert row == (saga.saga_id,)
    finally:
        await store.close()
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )


def test_postgres_store_refuses_a_schema_name_it_cannot_quote_safely():
    with pytest.raises(ConfigurationError, match="schema"):
        PostgresStore("postgresql://postgres@127.0.0.1/test", schema="Saga; DROP")


@pytest.mark.parametrize(
    ("relative_url", "expected_file"),
    [
        ("sqlite:///sagas.db", "sagas.db"),
        ("sqlite:///data/sagas.db", "data/sagas.db"),
    ],
)
async def test_open_store_sqlite_url_names_a_file_relative_to_cwd(
    relative_url: str, expected_file: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)
    store = open_store(relative_url)
    await store.open()
    await store.close()

    assert isinstance(store, SqliteStore)
    assert (tmp_path / expected_file).is_file()


async def test_open_store_sqlite_url_with_four_slashes_is_absolute(tmp_path: Path):
    assert os.path.isabs(tmp_path)
    store = open_store(f"sqlite:///{tmp_path}/abs/sagas.db")
    await store.open()
    await store.close()

    assert (tmp_path / "abs" / "sagas.db").is_file()


@pytest.mark.parametrize("url", ["sqlite://:memory:", "sqlite:///:memory:"])
async def test_open_store_memory_url_keeps_sagas_in_memory(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)
    store = open_store(url)
    await store.open()
    try:
        saga = await create(store, "saga-1")
        assert await store.get_saga("saga-1") == saga
    finally:
        await store.close()

    assert list(tmp_path.iterdir()) == []  # noqa: ASYNC240 (the loop has nothing else to run)


@pytest.mark.parametrize("url", ["postgresql://user@db:5432/sagas", "postgres://user@db/sagas"])
def test_open_store_postgres_url_gives_unopened_postgres_store(url: str):
    assert isinstance(open_store(url), PostgresStore)


@pytest.mark.parametrize(
    "url",
    [
        "",
        "sagas.db",
        "mysql://user:secret@db/sagas",
        "sqlite://db-host/sagas.db",
        "sqlite://",
        "sqlite:///",
        "sqlite:///data/",
        "postgresql://user:secret@db/sagas?no_such_parameter=1",
    ],
)
def test_open_store_rejects_an_unusable_url(url: str):
    with pytest.raises(ConfigurationError) as raised:
        open_store(url)

    assert "secret" not in str(raised.value)


def test_both_back_ends_have_the_same_migration_versions():
    sqlite_versions = [migration.version for migration in load_migrations("sqlite")]
    postgres_versions = [migration.version for migration in load_migrations("postgres")]

    assert sqlite_versions == postgres_versions
    assert sqlite_versions[0] == 1


# --- leases: one replica drives a saga at a time ----------------------------------------

ALICE = Lease("replica-alice", seconds=30)
BOB = Lease("replica-bob", seconds=30)


async def create_leased(store: Store, saga_id: str, lease: Lease) -> SagaRecord:
    saga = saga_record(saga_id)
    result = await store.create_saga(
        saga, pending_steps(saga_id), [saga_started(saga_id)], lease=lease
    )
    assert result.created
    return saga


async def test_a_new_saga_belongs_to_its_creator_until_the_lease_expires(store: Store):
    saga = await create_leased(store, "leased", Lease(ALICE.owner, seconds=0.3))
    assert await store.claim_sagas(BOB, limit=10) == []
    await asyncio.sleep(0.5)
    claimed = await store.claim_sagas(BOB, limit=10)
    assert [s.saga_id for s in claimed] == ["leased"]
    assert claimed[0].version == saga.version + 1


async def test_claiming_fences_off_the_previous_owner(store: Store):
    saga = await create_leased(store, "fenced", Lease(ALICE.owner, seconds=0))
    await store.claim_sagas(BOB, limit=10)
    with pytest.raises(StaleSagaVersion):
        await store.commit([first_step_completed(saga, seq=2)])
    assert await store.renew_leases(ALICE, ["fenced"]) == set()
    assert await store.renew_leases(BOB, ["fenced"]) == {"fenced"}
    assert await store.get_transitions("fenced") == [saga_started("fenced")]


async def test_unleased_unfinished_sagas_are_claimed_oldest_first_and_finished_ones_never(
    store: Store,
):
    await create(store, "young", create_time=T0 + timedelta(seconds=5))
    await create(store, "old", create_time=T0)
    await create(store, "done", status=SagaStatus.COMPLETED)
    await create(store, "failed", status=SagaStatus.FAILED)
    first = await store.claim_sagas(ALICE, limit=1)
    rest = await store.claim_sagas(ALICE, limit=10)
    assert [s.saga_id for s in first] == ["old"]
    assert [s.saga_id for s in rest] == ["young"]
    assert await store.claim_sagas(ALICE, limit=10) == [], "held leases are not claimed again"


async def test_released_sagas_can_be_claimed_at_once(store: Store):
    await create_leased(store, "handed-over", ALICE)
    await store.release_leases(ALICE.owner, ["handed-over"])
    assert [s.saga_id for s in await store.claim_sagas(BOB, limit=10)] == ["handed-over"]
    await store.release_leases(ALICE.owner, ["handed-over"])  # not Alice's any more: no-op
    assert await store.renew_leases(BOB, ["handed-over"]) == {"handed-over"}


async def test_concurrent_claimers_never_get_the_same_saga(store: Store):
    for n in range(40):
        await create(store, f"contested-{n:02}")
    owners = [Lease(f"replica-{i}", seconds=30) for i in range(4)]
    claims = await asyncio.gather(*(store.claim_sagas(owner, limit=15) for owner in owners))
    claimed = [s.saga_id for claim in claims for s in claim]
    assert len(claimed) == len(set(claimed)) == 40


async def test_retry_schedule_deadline_and_operator_reason_round_trip(store: Store):
    deadline = T0 + timedelta(minutes=5)
    saga = await create(store, "scheduled", deadline_time=deadline)
    due = T0 + timedelta(seconds=42, microseconds=7)
    commit = first_step_completed(saga, seq=2)
    step = dataclasses.replace(
        commit.steps[0], status=StepStatus.STARTED, result=None, next_attempt_time=due
    )
    note = dataclasses.replace(commit.transitions[0], actor="operator:ops", reason="ticket 7")
    await store.commit([dataclasses.replace(commit, steps=(step,), transitions=(note,))])

    assert (await store.get_saga("scheduled")).deadline_time == deadline
    assert (await store.get_steps("scheduled"))[0].next_attempt_time == due
    logged = (await store.get_transitions("scheduled", after_seq=1))[0]
    assert (logged.actor, logged.reason) == ("operator:ops", "ticket 7")


# --- listing --------------------------------------------------------------------------


async def test_listing_filters_combine_and_pages_neither_repeat_nor_skip(store: Store):
    for n in range(25):
        await create(
            store,
            f"list-{n:02}",
            status=SagaStatus.FAILED if n % 5 == 0 else SagaStatus.RUNNING,
            create_time=T0 + timedelta(seconds=n),
        )
    everything = await store.list_sagas(SagaFilter(), limit=100)
    assert [s.saga_id for s in everything] == [f"list-{n:02}" for n in reversed(range(25))]

    seen: list[str] = []
    after = None
    while True:
        page = await store.list_sagas(SagaFilter(status=SagaStatus.RUNNING), limit=7, after=after)
        if not page:
            break
        seen += [s.saga_id for s in page]
        after = PagePosition(page[-1].create_time, page[-1].saga_id)
        # A saga started while paging is newer than every page: it never shows up later.
        await create(store, f"late-{len(seen)}", create_time=T0 + timedelta(hours=1))
    assert seen == [f"list-{n:02}" for n in reversed(range(25)) if n % 5]

    window = SagaFilter(
        status=SagaStatus.FAILED,
        created_after=T0 + timedelta(seconds=5),
        created_before=T0 + timedelta(seconds=20),
    )
    assert [s.saga_id for s in await store.list_sagas(window, limit=10)] == [
        "list-15",
        "list-10",
        "list-05",
    ]
    by_type = SagaFilter(saga_type="trip", correlation_id="order-list-03")
    assert [s.saga_id for s in await store.list_sagas(by_type, limit=10)] == ["list-03"]
    assert await store.list_sagas(SagaFilter(saga_type="other"), limit=10) == []
    assert await store.list_sagas(SagaFilter(needs_intervention=True), limit=10) == []
    assert len(await store.list_sagas(SagaFilter(needs_intervention=False), limit=100)) == 25 + 3


async def test_one_saga_is_claimed_when_free_or_already_ours_never_from_a_live_owner(store: Store):
    await create_leased(store, "mine", ALICE)
    await create_leased(store, "theirs", BOB)
    await create(store, "free")
    await create(store, "finished", status=SagaStatus.COMPLETED)
    mine = await store.claim_saga(ALICE, "mine")
    assert mine is not None and mine.version == 2
    assert await store.claim_saga(ALICE, "theirs") is None
    assert (await store.claim_saga(ALICE, "free")) is not None
    assert await store.claim_saga(ALICE, "finished") is None
    assert await store.claim_saga(ALICE, "no-such-saga") is None


async def test_an_expired_lease_of_our_own_is_claimed_again(store: Store):
    await create_leased(store, "lapsed", Lease(ALICE.owner, seconds=0))
    claimed = await store.claim_sagas(ALICE, limit=10)
    assert [s.saga_id for s in claimed] == ["lapsed"]


async def test_last_seq_is_the_newest_log_row_or_zero(store: Store):
    saga = await create(store, "logged")
    assert await store.last_seq("logged") == 1
    await store.commit([first_step_completed(saga, seq=2)])
    assert await store.last_seq("logged") == 2
    assert await store.last_seq("no-such-saga") == 0


async def test_many_sagas_load_together_with_their_steps_and_newest_seq(store: Store):
    moved = await create(store, "moved-on", create_time=T0)
    fresh = await create(store, "just-started", create_time=T0 + timedelta(seconds=1))
    completed = first_step_completed(moved, seq=2)
    await store.commit([completed])

    loaded = await store.load_sagas(["just-started", "no-such-saga", "moved-on"])

    assert [stored.saga for stored in loaded] == [fresh, completed.saga]
    assert [stored.last_seq for stored in loaded] == [1, 2]
    assert loaded[0].steps == pending_steps("just-started")
    assert loaded[1].steps == (*completed.steps, *pending_steps("moved-on")[1:])
    assert [stored.steps for stored in loaded] == [
        tuple(await store.get_steps(saga_id)) for saga_id in ("just-started", "moved-on")
    ]
    assert await store.load_sagas([]) == []


@pytest.mark.postgres
async def test_postgres_a_frozen_replicas_open_transaction_cannot_block_a_takeover(
    postgres_url: str,
):
    """A replica stopped mid-transaction (SIGSTOP) holds row locks that claims skip; the
    server ends its session after the store's timeout, and another replica takes over."""
    frozen = PostgresStore(postgres_url, timeout=1.0)
    survivor = PostgresStore(postgres_url, timeout=10.0)
    await frozen.open()
    await survivor.open()
    try:
        await create_leased(frozen, "frozen", Lease(ALICE.owner, seconds=0))
        claimed: list[SagaRecord] = []
        with pytest.raises((psycopg.Error, StoreUnavailable)):
            async with frozen._connection() as connection, connection.transaction():
                await connection.execute(
                    "SELECT saga_id FROM sagas WHERE saga_id = 'frozen' FOR UPDATE"
                )
                deadline = time.monotonic() + 8
                while not claimed and time.monotonic() < deadline:
                    claimed = await survivor.claim_sagas(BOB, limit=10)
                    await asyncio.sleep(0.2)
                assert [s.saga_id for s in claimed] == ["frozen"]
                await connection.execute("SELECT 1")  # the frozen one wakes: its session is gone
    finally:
        await frozen.close()
        await survivor.close()


_WAITING_ON_HOLDER = """
SELECT count(*) FROM pg_stat_activity
WHERE pg_blocking_pids(pid) && (
    %(holder)s || ARRAY(
        SELECT pid FROM pg_stat_activity WHERE %(holder)s = ANY(pg_blocking_pids(pid))
    )
)
"""


@pytest.mark.postgres
async def test_postgres_a_lease_renewal_and_a_group_commit_lock_sagas_in_one_order(
    postgres_url: str,
):
    """A group commit of two sagas and a renewal of both leases, both queued behind a
    row lock, both go through once it is freed: neither is a deadlock victim."""
    store = PostgresStore(postgres_url, timeout=10.0)
    await store.open()
    try:
        first = await create_leased(store, "saga-a", ALICE)
        second = await create_leased(store, "saga-b", ALICE)
        async with await psycopg.AsyncConnection.connect(postgres_url) as holder:
            await holder.execute("SELECT 1 FROM sagas WHERE saga_id = 'saga-b' FOR UPDATE")
            holder_pid = holder.info.backend_pid

            async def waiting(count: int) -> None:
                async with await psycopg.AsyncConnection.connect(
                    postgres_url, autocommit=True
                ) as watcher:
                    for _ in range(200):
                        cursor = await watcher.execute(_WAITING_ON_HOLDER, {"holder": holder_pid})
                        row = await cursor.fetchone()
                        if row is not None and row[0] >= count:
                            return
                        await asyncio.sleep(0.05)
                raise AssertionError(f"{count} statement(s) never queued behind the lock")

            committing = asyncio.create_task(
                store.commit(
                    [first_step_completed(second, seq=2), first_step_completed(first, seq=2)]
                )
            )
            await waiting(1)
            renewing = asyncio.create_task(store.renew_leases(ALICE, ["saga-b", "saga-a"]))
            await waiting(2)
        await committing
        assert await renewing == {"saga-a", "saga-b"}
        assert await store.last_seq("saga-a") == await store.last_seq("saga-b") == 2
    finally:
        await store.close()


async def test_sagas_needing_intervention_are_counted_by_type_in_the_store(store: Store):
    assert await store.count_needing_intervention() == {}
    for number, needs in enumerate((True, True, False)):
        saga = await create(store, f"stuck-{number}")
        stuck = dataclasses.replace(
            saga,
            status=SagaStatus.FAILED,
            needs_intervention=needs,
            version=saga.version + 1,
            output=None,
        )
        await store.commit([SagaCommit(stuck, expected_version=saga.version)])
    assert await store.count_needing_intervention() == {"trip": 2}


async def test_a_completed_sagas_output_round_trips(store: Store):
    saga = await create(store, "with-output")
    done = dataclasses.replace(
        saga, status=SagaStatus.COMPLETED, version=saga.version + 1, output=b"\x0a\x03abc"
    )
    await store.commit([SagaCommit(done, expected_version=saga.version)])
    stored = await store.get_saga("with-output")
    assert stored is not None and stored.output == b"\x0a\x03abc"


def test_the_batch_insert_carries_every_column_of_a_new_saga():
    """A column added to the tables must reach the rows-as-JSON inserts too (or be one a
    new saga never sets, like output)."""

    def columns(text: str) -> set[str]:
        return {column.strip() for column in text.split(",")}

    def inserted(statement: str) -> set[str]:
        return columns(statement.split("(", 1)[1].split(")", 1)[0])

    lease = {"lease_owner", "lease_expires_at"}
    assert inserted(postgres_sql.INSERT_SAGAS) == columns(SAGA_COLUMNS) - {"output"} | lease
    assert inserted(postgres_sql.UPSERT_STEPS) == columns(STEP_COLUMNS)
    assert inserted(postgres_sql.INSERT_TRANSITIONS) == columns(TRANSITION_COLUMNS)
