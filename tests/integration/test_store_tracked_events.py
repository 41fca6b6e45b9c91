"""Incoming events in the store (0013), on both back ends: ingested keys written with the
saga write they caused, held events kept and applied, expired ones moved to anomalies,
a key ingested twice refused without half-writes, one instance per correlation when two
writers race."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

import pytest

from orchestrator.core.clock import utc_now
from orchestrator.core.errors import StaleSagaVersion
from orchestrator.core.ingested import (
    AnomalyFilter,
    AnomalyPosition,
    EventAnomaly,
    HeldEvent,
    IngestedEvent,
    IngestedRows,
    InstanceGuard,
)
from orchestrator.core.records import NewSaga, SagaCommit, SagaFilter
from orchestrator.engine.retention import sweep
from orchestrator.store import Store, open_store
from tests.integration.test_store import (
    T0,
    first_step_completed,
    pending_steps,
    saga_record,
    saga_started,
)

pytestmark = pytest.mark.integration


def ingested(event_id: str, saga_id: str | None, verdict: str = "RECORDED") -> IngestedEvent:
    return IngestedEvent("svc/flight", event_id, verdict, T0, saga_id)


def held(event_id: str, correlation: str, *, expire_in: float = 3600) -> HeldEvent:
    return HeldEvent(
        source="svc/flight",
        event_id=event_id,
        saga_type="trip",
        namespace="default",
        correlation=correlation,
        event_type="com.example.flight_booked",
        payload={"id": event_id, "data": {"booking_id": correlation, "seat": "12A"}},
        received_time=utc_now(),
        expire_time=utc_now() + timedelta(seconds=expire_in),
    )


def tracked_saga(saga_id: str, correlation: str, rows: IngestedRows) -> NewSaga:
    saga = dataclasses.replace(
        saga_record(saga_id, key=f"default/tracked:trip:{correlation}"),
        correlation_id=correlation,
    )
    return NewSaga(saga, pending_steps(saga_id), (saga_started(saga_id),), ingested=rows)


async def test_a_new_saga_and_a_commit_write_their_ingested_keys(store: Store):
    start = IngestedRows(ingested=(ingested("e-start", "s1"),))
    [created] = await store.write([tracked_saga("s1", "b-1", start)], ())
    assert created.created
    step = first_step_completed(created.saga, seq=2)
    rows = IngestedRows(ingested=(ingested("e-1", "s1"), ingested("e-2", "s1", "ANOMALY")))
    await store.commit([dataclasses.replace(step, ingested=rows)])

    verdicts = await store.ingested_verdicts(
        [("svc/flight", "e-start"), ("svc/flight", "e-1"), ("svc/flight", "e-2"), ("x", "e-1")]
    )
    assert verdicts == {
        ("svc/flight", "e-start"): "RECORDED",
        ("svc/flight", "e-1"): "RECORDED",
        ("svc/flight", "e-2"): "ANOMALY",
    }


async def test_a_key_ingested_twice_refuses_the_commit_without_half_writes(store: Store):
    [created] = await store.write(
        [tracked_saga("s1", "b-1", IngestedRows(ingested=(ingested("e-1", "s1"),)))], ()
    )
    again = dataclasses.replace(
        first_step_completed(created.saga, seq=2),
        ingested=IngestedRows(
            ingested=(ingested("e-2", "s1"), ingested("e-1", "s1")),
            held=(held("e-9", "b-1"),),
        ),
    )
    with pytest.raises(StaleSagaVersion, match="ingested by another writer"):
        await store.write((), [again])

    [stored] = await store.load_sagas(["s1"])
    assert stored.saga.version == created.saga.version
    assert stored.last_seq == 1
    assert await store.ingested_verdicts([("svc/flight", "e-2")]) == {}
    assert await store.held_events("trip", "default", ["b-1"]) == []


async def test_loose_rows_with_a_key_ingested_are_refused_whole(store: Store):
    await store.record_ingested(
        IngestedRows(ingested=(ingested("e-1", None, "HELD"),), held=(held("e-1", "b-1"),))
    )
    with pytest.raises(StaleSagaVersion):
        await store.record_ingested(
            IngestedRows(
                ingested=(ingested("e-2", None, "HELD"), ingested("e-1", None, "HELD")),
                held=(held("e-2", "b-1"),),
            )
        )
    assert [event.event_id for event in await store.held_events("trip", "default", ["b-1"])] == [
        "e-1"
    ]
    assert await store.ingested_verdicts([("svc/flight", "e-2")]) == {}


async def test_held_events_are_read_by_instance_and_deleted_by_the_commit_applying_them(
    store: Store,
):
    early = held("e-early", "b-1")
    await store.record_ingested(
        IngestedRows(
            ingested=(
                ingested("e-early", None, "HELD"),
                ingested("e-other", None, "HELD"),
            ),
            held=(early, held("e-other", "b-2")),
        )
    )
    found = await store.held_events("trip", "default", ["b-1", "b-3"])
    assert found == [early]
    assert await store.held_events("trip", "other-namespace", ["b-1"]) == []

    start = IngestedRows(ingested=(ingested("e-start", "s1"),), applied=((early.key, "s1"),))
    [created] = await store.write([tracked_saga("s1", "b-1", start)], ())
    assert created.created
    remaining = await store.held_events("trip", "default", ["b-1", "b-2"])
    assert [event.event_id for event in remaining] == ["e-other"]
    assert await store.ingested_verdicts([early.key]) == {early.key: "RECORDED"}


async def test_a_new_saga_skipped_for_its_taken_key_writes_none_of_its_rows(store: Store):
    first = tracked_saga("s1", "b-1", IngestedRows(ingested=(ingested("e-a", "s1"),)))
    second = tracked_saga(
        "s2",
        "b-1",
        IngestedRows(ingested=(ingested("e-b", "s2"),), held=(held("e-c", "b-1"),)),
    )
    results = await store.write([first, second], ())
    assert [result.created for result in results] == [True, False]
    assert results[1].saga.saga_id == "s1"
    assert await store.ingested_verdicts([("svc/flight", "e-b")]) == {}
    assert await store.held_events("trip", "default", ["b-1"]) == []


async def start_instance(store: Store, writer: str, round_no: int, correlation: str) -> bool:
    """One writer's start of the instance; whether its saga was the one created."""
    saga_id = f"{writer}-{round_no}"
    rows = IngestedRows(ingested=(ingested(f"start-{round_no}-{writer}", saga_id),))
    [outcome] = await store.create_sagas([tracked_saga(saga_id, correlation, rows)])
    assert not isinstance(outcome, Exception)
    return outcome.created


async def test_two_writers_starting_one_instance_make_one_saga(store_url: str):
    """Two stores (two replicas' pools) race the same start, round after round."""
    one, two = open_store(store_url), open_store(store_url)
    await one.open()
    await two.open()
    try:
        for round_no in range(20):
            correlation = f"b-{round_no}"
            created = await asyncio.gather(
                start_instance(one, "a", round_no, correlation),
                start_instance(two, "b", round_no, correlation),
            )
            assert sorted(created) == [False, True]
            sagas = await one.list_sagas(SagaFilter(correlation_id=correlation), limit=10)
            assert len(sagas) == 1
            winner = sagas[0].saga_id.split("-")[0]
            loser = "b" if winner == "a" else "a"
            keys = [("svc/flight", f"start-{round_no}-{name}") for name in (winner, loser)]
            assert set(await one.ingested_verdicts(keys)) == {keys[0]}
    finally:
        await one.close()
        await two.close()


async def test_two_writers_applying_one_event_to_one_instance_apply_it_once(store_url: str):
    """Both loaded the saga at one version and took the event for new: the second commit
    is refused (stale, or the key taken), and nothing of it is written."""
    one, two = open_store(store_url), open_store(store_url)
    await one.open()
    await two.open()
    try:
        [created] = await one.write(
            [tracked_saga("s1", "b-1", IngestedRows(ingested=(ingested("e-0", "s1"),)))], ()
        )
        rows = IngestedRows(ingested=(ingested("e-1", "s1"),))
        commit = dataclasses.replace(first_step_completed(created.saga, seq=2), ingested=rows)
        outcomes = await asyncio.gather(
            one.commit([commit]), two.commit([commit]), return_exceptions=True
        )
        refused = [o for o in outcomes if isinstance(o, Exception)]
        assert len(refused) == 1 and isinstance(refused[0], StaleSagaVersion)
        [stored] = await one.load_sagas(["s1"])
        assert (stored.saga.version, stored.last_seq) == (created.saga.version + 1, 2)
    finally:
        await one.close()
        await two.close()


async def test_expired_held_events_become_anomalies_listed_newest_first(store: Store):
    await store.write(
        [tracked_saga("s1", "b-started", IngestedRows(ingested=(ingested("e-s", "s1"),)))], ()
    )
    rows = [
        held("e-never", "b-never", expire_in=-30),
        held("e-late", "b-started", expire_in=-20),
        held("e-kept", "b-never", expire_in=3600),
    ]
    await store.record_ingested(
        IngestedRows(
            ingested=tuple(ingested(row.event_id, None, "HELD") for row in rows), held=tuple(rows)
        )
    )
    moved = await store.expire_held_events(utc_now(), limit=10)
    assert sorted(anomaly.event_id for anomaly in moved) == ["e-late", "e-never"]
    assert await store.expire_held_events(utc_now(), limit=10) == []
    assert [e.event_id for e in await store.held_events("trip", "default", ["b-never"])] == [
        "e-kept"
    ]

    listed = await store.list_event_anomalies(AnomalyFilter(), limit=10)
    assert [anomaly.event_id for anomaly in listed] == ["e-late", "e-never"]
    reasons = {anomaly.event_id: anomaly.reason for anomaly in listed}
    assert "did not start" in reasons["e-never"]
    assert "step was never expected" in reasons["e-late"]
    assert listed[1].payload == rows[0].payload
    assert listed[1].time == rows[0].expire_time

    only = await store.list_event_anomalies(AnomalyFilter(correlation="b-never"), limit=10)
    assert [anomaly.event_id for anomaly in only] == ["e-never"]
    first = await store.list_event_anomalies(AnomalyFilter(), limit=1)
    position = AnomalyPosition(first[0].time, first[0].source, first[0].event_id)
    rest = await store.list_event_anomalies(AnomalyFilter(), limit=10, after=position)
    assert [anomaly.event_id for anomaly in rest] == ["e-never"]


async def test_anomalies_written_with_a_write_are_listed_and_never_doubled(store: Store):
    anomaly = EventAnomaly(
        "svc/car", "e-x", "com.example.car_rented", "", "trip", "no correlation", {}, T0
    )
    rows = IngestedRows(ingested=(ingested("e-x", None, "ANOMALY"),), anomalies=(anomaly,))
    await store.record_ingested(rows)
    await store.record_ingested(IngestedRows(anomalies=(anomaly,)))
    assert await store.list_event_anomalies(AnomalyFilter(saga_type="trip"), limit=5) == [anomaly]


async def test_retention_takes_a_sagas_keys_with_it_and_loose_keys_by_time(store: Store):
    [created] = await store.write(
        [tracked_saga("s1", "b-1", IngestedRows(ingested=(ingested("e-1", "s1"),)))], ()
    )
    await store.record_ingested(IngestedRows(ingested=(ingested("e-loose", None, "HELD"),)))
    done = dataclasses.replace(
        created.saga,
        status=created.saga.status.COMPLETED,
        version=created.saga.version + 1,
        update_time=T0,
    )
    await store.commit([SagaCommit(done, created.saga.version)])
    assert await store.delete_finished(T0 + timedelta(days=1), limit=10) == 1
    assert await store.delete_loose_ingested(T0 + timedelta(days=1), limit=10) == 1
    assert await store.ingested_verdicts([("svc/flight", "e-1"), ("svc/flight", "e-loose")]) == {}


async def test_the_retention_sweep_deletes_the_keys_of_no_saga_older_than_the_cut(
    store: Store,
):
    old, recent = utc_now() - timedelta(days=40), utc_now() - timedelta(days=1)
    keys = [
        IngestedEvent("svc/flight", f"{age}-{n}", "HELD", when)
        for age, when in (("old", old), ("recent", recent))
        for n in range(3)
    ]
    await store.record_ingested(IngestedRows(ingested=tuple(keys)))
    await sweep(store, timedelta(days=30), batch=2)
    left = await store.ingested_verdicts([key.key for key in keys])
    assert sorted(event_id for _, event_id in left) == ["recent-0", "recent-1", "recent-2"]


def guard(correlation: str, *known: str) -> InstanceGuard:
    return InstanceGuard(
        "trip",
        "default",
        correlation,
        f"default/tracked:trip:{correlation}",
        tuple(("svc/flight", event_id) for event_id in known),
    )


async def test_a_start_that_missed_an_event_held_meanwhile_is_refused_whole(store: Store):
    await store.record_ingested(
        IngestedRows(
            ingested=(ingested("e-held", None, "HELD"),),
            held=(held("e-held", "b-1"),),
            guards=(guard("b-1"),),
        )
    )
    blind = IngestedRows(ingested=(ingested("e-start", "s1"),), guards=(guard("b-1"),))
    with pytest.raises(StaleSagaVersion, match="held"):
        await store.write([tracked_saga("s1", "b-1", blind)], ())
    assert await store.get_saga("s1") is None
    assert await store.ingested_verdicts([("svc/flight", "e-start")]) == {}

    seeing = IngestedRows(
        ingested=(ingested("e-start", "s1"),),
        applied=((("svc/flight", "e-held"), "s1"),),
        guards=(guard("b-1", "e-held"),),
    )
    [created] = await store.write([tracked_saga("s1", "b-1", seeing)], ())
    assert created.created
    assert await store.held_events("trip", "default", ["b-1"]) == []


async def test_events_held_for_an_instance_that_started_meanwhile_are_refused(store: Store):
    await store.write(
        [tracked_saga("s1", "b-1", IngestedRows(ingested=(ingested("e-start", "s1"),)))], ()
    )
    late = IngestedRows(
        ingested=(ingested("e-1", None, "HELD"),),
        held=(held("e-1", "b-1"),),
        guards=(guard("b-1"),),
    )
    with pytest.raises(StaleSagaVersion, match="started"):
        await store.record_ingested(late)
    assert await store.held_events("trip", "default", ["b-1"]) == []
    assert await store.ingested_verdicts([("svc/flight", "e-1")]) == {}
