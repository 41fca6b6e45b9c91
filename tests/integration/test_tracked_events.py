"""`TrackedEvents` with a real store (SQLite and PostgreSQL), driven with IncomingEvent
batches as a broker consumer delivers them: a full run, a refused run unwinding through
events, early, late and repeated events, events before their start (the start within
and beyond the wait), a missed window flagged, rescues by a Call to a real participant
and by a published event."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import pytest

from orchestrator.core.definition import SagaDefinition
from orchestrator.core.incoming import CommandEvent, IncomingEvent, IngestVerdict
from orchestrator.core.ingested import AnomalyFilter
from orchestrator.core.records import (
    Lease,
    SagaFilter,
    SagaRecord,
    SagaStatus,
    StepStatus,
    TransitionEvent,
    TransitionRecord,
)
from orchestrator.core.registry import Registry
from orchestrator.core.tracking import OnStuck
from orchestrator.engine.commands import ParticipantClient
from orchestrator.engine.executor import Executor
from orchestrator.engine.leases import unique_replica_id
from orchestrator.engine.tracking import TrackedEvents
from orchestrator.store import Store, open_store
from tests.support.tracked_sagas import full_run, tracked_travel, travel_event
from tools.processes import ChildProcess, participants_process

pytestmark = pytest.mark.integration

R, H, A, D = (
    IngestVerdict.RECORDED,
    IngestVerdict.HELD,
    IngestVerdict.ANOMALY,
    IngestVerdict.DUPLICATE,
)


class RecordingPublisher:
    """A CommandEventPublisher that keeps what it was asked to publish; the first
    `refusals` attempts are refused, as a broker that did not confirm them."""

    def __init__(self, refusals: int = 0) -> None:
        self.published: list[CommandEvent] = []
        self.refused: list[CommandEvent] = []
        self.arrived = asyncio.Event()
        self._refusals = refusals

    async def publish(self, event: CommandEvent) -> None:
        if len(self.refused) < self._refusals:
            self.refused.append(event)
            raise ConnectionError("the broker did not confirm the message")
        self.published.append(event)
        self.arrived.set()


@dataclass
class Tracker:
    """One replica's executor and ingestor over the test's store."""

    store: Store
    executor: Executor
    events: TrackedEvents
    publisher: RecordingPublisher
    participants: ParticipantClient
    stopped: list[Callable[[], object]] = field(default_factory=list)

    async def ingest(self, *events: IncomingEvent) -> list[IngestVerdict]:
        return await self.events.ingest(list(events))

    async def saga_of(self, booking: str) -> SagaRecord:
        [saga] = await self.store.list_sagas(SagaFilter(correlation_id=booking), limit=2)
        return saga

    async def until(
        self,
        booking: str,
        reached: Callable[[SagaRecord], bool],
        timeout: float = 20.0,
        subscribed: asyncio.Event | None = None,
    ) -> SagaRecord:
        """The booking's saga once `reached` holds, woken by each of its commits
        (`subscribed` is set once a commit would wake it)."""
        saga = await self.saga_of(booking)
        async with asyncio.timeout(timeout):
            with self.executor.watchers.subscription(saga.saga_id) as committed:
                if subscribed is not None:
                    subscribed.set()
                while True:
                    committed.clear()
                    saga = await self.saga_of(booking)
                    if reached(saga):
                        return saga
                    await self.executor.watchers.wait(committed)

    async def log(self, booking: str) -> list[TransitionRecord]:
        return await self.store.get_transitions((await self.saga_of(booking)).saga_id)


async def open_tracker(
    store: Store,
    definitions: Sequence[SagaDefinition],
    *,
    addresses: dict[str, str] | None = None,
    wait_for_start: float = 60.0,
    lease_seconds: float = 3.0,
    publisher: RecordingPublisher | None = None,
) -> Tracker:
    registry = Registry(definitions)
    participants = ParticipantClient(addresses or {})
    publisher = publisher or RecordingPublisher()
    executor = Executor(
        store,
        registry,
        participants,
        lease=Lease(unique_replica_id(), lease_seconds),
        command_events=publisher,
    )
    executor.resume_unfinished()
    events = TrackedEvents(store, registry, executor, wait_for_start=wait_for_start)
    events.start()
    return Tracker(store, executor, events, publisher, participants)


async def close_tracker(tracker: Tracker) -> None:
    await tracker.events.stop()
    await tracker.executor.stop()
    await tracker.participants.close()


@contextlib.asynccontextmanager
async def tracking(
    store: Store, *definitions: SagaDefinition, **options: object
) -> AsyncIterator[Tracker]:
    tracker = await open_tracker(store, definitions or (tracked_travel(),), **options)
    try:
        yield tracker
    finally:
        await close_tracker(tracker)


def moves(log: Sequence[TransitionRecord]) -> list[tuple[str, str]]:
    """The log without its times: (event, step) per row, anomalies left out."""
    return [(t.event.value, t.step) for t in log if t.event is not TransitionEvent.EVENT_ANOMALY]


COMPLETED_RUN = [
    ("SAGA_STARTED", ""),
    ("STEP_WAITING", "book_flight"),
    ("STEP_COMPLETED", "book_flight"),
    ("STEP_WAITING", "book_hotel"),
    ("STEP_COMPLETED", "book_hotel"),
    ("STEP_WAITING", "rent_car"),
    ("STEP_COMPLETED", "rent_car"),
    ("SAGA_COMPLETED", ""),
]


async def test_a_full_run_completes_with_each_event_recorded_by_its_source(store: Store):
    async with tracking(store) as tracker:
        assert await tracker.ingest(*full_run("B1")) == [R, R, R, R]
        saga = await tracker.saga_of("B1")
        assert saga.status is SagaStatus.COMPLETED
        log = await tracker.log("B1")
        assert moves(log) == COMPLETED_RUN
        assert log[0].actor == "event:/booking"
        assert {t.actor for t in log if t.event is TransitionEvent.STEP_COMPLETED} == {
            "event:/flight",
            "event:/hotel",
            "event:/car",
        }
        steps = await store.get_steps(saga.saga_id)
        assert all(step.status is StepStatus.COMPLETED for step in steps)
        assert saga.payload == {"booking_id": "B1", "traveller": "Ada"}


async def test_events_in_separate_batches_wake_a_watcher_at_each_commit(store: Store):
    async with tracking(store) as tracker:
        start, *rest = full_run("B2")
        await tracker.ingest(start)
        for event, waiting_on in zip(rest, ("book_hotel", "rent_car", ""), strict=True):
            before = (await tracker.saga_of("B2")).version
            subscribed = asyncio.Event()
            watcher = asyncio.create_task(
                tracker.until("B2", lambda s, v=before: s.version > v, subscribed=subscribed)
            )
            await subscribed.wait()  # from now on only a commit's notice wakes it in time
            await tracker.ingest(event)
            await watcher
            steps = await store.get_steps((await tracker.saga_of("B2")).saga_id)
            waiting = [s.name for s in steps if s.status is StepStatus.WAITING]
            assert waiting == ([waiting_on] if waiting_on else [])
        assert (await tracker.saga_of("B2")).status is SagaStatus.COMPLETED


async def test_a_refused_run_unwinds_through_the_services_undo_events(store: Store):
    async with tracking(store) as tracker:
        verdicts = await tracker.ingest(
            travel_event("booking_started", "B3"),
            travel_event("flight_booked", "B3"),
            travel_event("hotel_booked", "B3"),
            travel_event("car_rental_failed", "B3"),
        )
        assert verdicts == [R, R, R, R]
        assert (await tracker.saga_of("B3")).status is SagaStatus.COMPENSATING
        # The services unwind: the hotel first, then the flight; an early flight
        # cancellation is held until the hotel's is in.
        assert await tracker.ingest(travel_event("flight_cancelled", "B3")) == [H]
        assert await tracker.ingest(travel_event("hotel_cancelled", "B3")) == [R]
        saga = await tracker.saga_of("B3")
        assert saga.status is SagaStatus.FAILED and not saga.needs_intervention
        steps = {s.name: s.status for s in await store.get_steps(saga.saga_id)}
        assert steps["book_flight"] is StepStatus.COMPENSATED
        assert steps["book_hotel"] is StepStatus.COMPENSATED
        assert steps["rent_car"] is StepStatus.FAILED
        assert "refused by car_rental" in saga.failure_reason
        assert await store.held_events("travel_choreography", "default", ["B3"]) == []


async def test_early_and_repeated_events_make_the_log_of_the_ordered_run(store: Store):
    async with tracking(store) as tracker:
        start, flight, hotel, car = full_run("B4")
        # The car before the hotel before the flight, each delivered twice.
        assert await tracker.ingest(start, car, car) == [R, H, D]
        assert await tracker.ingest(hotel) == [H]
        assert await tracker.ingest(hotel, flight) == [D, R]
        log = await tracker.log("B4")
        assert moves(log) == COMPLETED_RUN
        anomalies = [t.reason for t in log if t.event is TransitionEvent.EVENT_ANOMALY]
        assert len(anomalies) == 2 and all("early" in reason for reason in anomalies)
        assert await tracker.ingest(car, flight) == [D, D]
        assert len(await tracker.log("B4")) == len(log)


async def test_an_event_after_the_end_is_an_anomaly_in_the_sagas_log(store: Store):
    async with tracking(store) as tracker:
        await tracker.ingest(*full_run("B5"))
        late = travel_event("flight_booked", "B5", id="flight-again")
        assert await tracker.ingest(late) == [A]
        log = await tracker.log("B5")
        assert log[-1].event is TransitionEvent.EVENT_ANOMALY
        assert "after the saga ended" in log[-1].reason
        assert log[-1].actor == "event:/flight"


async def test_events_before_their_start_are_applied_when_it_comes_within_the_wait(
    store: Store,
):
    async with tracking(store) as tracker:
        start, flight, hotel, car = full_run("B6")
        assert await tracker.ingest(flight, hotel) == [H, H]
        held = await store.held_events("travel_choreography", "default", ["B6"])
        assert [event.event_id for event in held] == [flight.id, hotel.id]
        assert await tracker.ingest(start) == [R]
        assert moves(await tracker.log("B6"))[:5] == COMPLETED_RUN[:5]
        assert await store.held_events("travel_choreography", "default", ["B6"]) == []
        assert await tracker.ingest(car, flight) == [R, D]
        assert (await tracker.saga_of("B6")).status is SagaStatus.COMPLETED


async def test_events_whose_start_never_comes_within_the_wait_become_anomalies(store: Store):
    async with tracking(store, wait_for_start=0.2) as tracker:
        start, flight, *_ = full_run("B7")
        assert await tracker.ingest(flight) == [H]
        async with asyncio.timeout(20):
            while not await store.list_event_anomalies(AnomalyFilter(correlation="B7"), 5):
                await tracker.events.expire_held()
                await asyncio.sleep(0.05)
        [anomaly] = await store.list_event_anomalies(AnomalyFilter(correlation="B7"), limit=5)
        assert anomaly.event_id == flight.id and "did not start" in anomaly.reason
        # The start comes after all: the instance runs, its flight event is not replayed.
        assert await tracker.ingest(start, flight) == [R, D]
        steps = await store.get_steps((await tracker.saga_of("B7")).saga_id)
        assert steps[0].status is StepStatus.WAITING


async def test_an_event_with_no_correlation_value_is_an_anomaly_row(store: Store):
    async with tracking(store) as tracker:
        lost = IncomingEvent("/flight", "x-1", travel_event("flight_booked").type, data={})
        other = IncomingEvent("/elsewhere", "x-2", "com.example.unrelated")
        assert await tracker.ingest(lost, other) == [A, IngestVerdict.IGNORED]
        [anomaly] = await store.list_event_anomalies(AnomalyFilter(), limit=5)
        assert "no correlation value" in anomaly.reason and anomaly.event_id == "x-1"
        assert await tracker.ingest(lost) == [D]


async def test_a_missed_window_flags_the_saga_for_an_operator(store: Store):
    async with tracking(store, tracked_travel(within=0.5)) as tracker:
        start, flight, *_ = full_run("B8")
        await tracker.ingest(start, flight)
        saga = await tracker.until("B8", lambda s: s.needs_intervention)
        assert saga.status is SagaStatus.FAILED and saga.failed_step == "book_hotel"
        log = await tracker.log("B8")
        assert [t.event for t in log][-2:] == [
            TransitionEvent.STEP_TIMED_OUT,
            TransitionEvent.SAGA_HALTED,
        ]


async def test_a_rescue_publishes_the_flights_cancel_and_waits_for_its_undo_event(
    store: Store,
):
    rescued = tracked_travel(within=0.5, on_stuck=OnStuck.COMPENSATE)
    async with tracking(store, rescued) as tracker:
        start, *_ = full_run("B9")
        await tracker.ingest(start)  # the flight never says whether it booked
        async with asyncio.timeout(20):
            await tracker.publisher.arrived.wait()
        [sent] = tracker.publisher.published
        saga = await tracker.saga_of("B9")
        assert sent.id == f"{saga.saga_id}:book_flight:compensate"
        assert sent.type.endswith("cancel_flight")
        assert sent.data["correlation"] == "B9" and sent.data["result"] is None
        assert await tracker.ingest(travel_event("flight_cancelled", "B9")) == [R]
        saga = await tracker.until("B9", lambda s: s.status.is_terminal)
        assert saga.status is SagaStatus.FAILED
        steps = {s.name: s.status for s in await store.get_steps(saga.saga_id)}
        assert steps["book_flight"] is StepStatus.COMPENSATED


@pytest.fixture(scope="module")
def hotel_service(tmp_path_factory: pytest.TempPathFactory):
    process = participants_process(tmp_path_factory.mktemp("hotel"), ["hotel"])
    try:
        yield process.start()
    finally:
        process.stop()


async def test_a_rescue_calls_the_hotels_cancel_on_the_real_service(
    store: Store, hotel_service: ChildProcess
):
    rescued = tracked_travel(within=30.0, car_within=0.5, on_stuck=OnStuck.COMPENSATE)
    addresses = {"hotel": hotel_service.info["services"]["hotel"]}
    async with tracking(store, rescued, addresses=addresses) as tracker:
        start, flight, hotel, _ = full_run("B10")
        await tracker.ingest(start, flight, hotel)
        async with asyncio.timeout(20):
            await tracker.publisher.arrived.wait()  # the hotel was undone first
        saga = await tracker.saga_of("B10")
        log = await store.get_transitions(saga.saga_id)
        hotel_undone = [
            t
            for t in log
            if t.step == "book_hotel" and t.event is TransitionEvent.COMPENSATION_COMPLETED
        ]
        assert len(hotel_undone) == 1
        assert [t.step for t in log if t.event is TransitionEvent.COMPENSATION_STARTED] == [
            "book_hotel",
            "book_flight",
        ]
        [sent] = tracker.publisher.published
        assert sent.data["result"] == {"booking_id": "B10", "pnr": "PNR-1"}
        await tracker.ingest(travel_event("flight_cancelled", "B10"))
        saga = await tracker.until("B10", lambda s: s.status.is_terminal)
        assert saga.status is SagaStatus.FAILED


@pytest.mark.postgres
async def test_two_replicas_applying_one_flows_events_at_once_record_it_once(postgres_url: str):
    """Both replicas get every event of 20 bookings (competing consumers and
    redeliveries), in different batches and orders, at once: fencing serialises each
    instance, so each log is the ordered run's and each event is recorded once."""
    stores = [open_store(postgres_url), open_store(postgres_url)]
    for opened in stores:
        await opened.open()
    trackers = [await open_tracker(opened, [tracked_travel()]) for opened in stores]
    one, two = trackers
    bookings = [f"P{n}" for n in range(20)]
    try:

        async def deliver(tracker: Tracker, batches: list[list[IncomingEvent]]) -> None:
            for batch in batches:
                await tracker.ingest(*batch)

        deliveries = []
        for booking in bookings:
            start, flight, hotel, car = full_run(booking)
            deliveries.append(deliver(one, [[start, flight], [hotel, car]]))
            deliveries.append(deliver(two, [[car, hotel], [flight], [start, car]]))
        await asyncio.gather(*deliveries)
        for booking in bookings:
            saga = await one.saga_of(booking)
            assert saga.status is SagaStatus.COMPLETED, booking
            log = await stores[0].get_transitions(saga.saga_id)
            assert moves(log) == COMPLETED_RUN, booking
            recorded = [t for t in log if t.event is TransitionEvent.STEP_COMPLETED]
            assert len(recorded) == 3
            keys = [event.key for event in full_run(booking)]
            assert len(await stores[1].ingested_verdicts(keys)) == 4
    finally:
        for tracker in trackers:
            await close_tracker(tracker)
        for opened in stores:
            await opened.close()


async def test_a_refused_publish_is_retried_with_the_same_event_id(store: Store):
    rescued = tracked_travel(within=0.5, on_stuck=OnStuck.COMPENSATE)
    publisher = RecordingPublisher(refusals=1)
    async with tracking(store, rescued, publisher=publisher) as tracker:
        await tracker.ingest(full_run("B11")[0])
        async with asyncio.timeout(30):
            await publisher.arrived.wait()
        [refused], [sent] = publisher.refused, publisher.published
        assert refused.id == sent.id
        log = await tracker.log("B11")
        failed = [t for t in log if t.event is TransitionEvent.COMPENSATION_RETRY_SCHEDULED]
        assert len(failed) == 1 and "did not confirm" in failed[0].error


async def test_a_parked_saga_is_claimed_at_its_wake_time_not_at_the_next_poll(store: Store):
    """The lease keeper polls every 100 s here: only the wake-up timer can flag the saga
    within the wait's bound."""
    async with tracking(store, tracked_travel(within=0.5), lease_seconds=300.0) as tracker:
        await tracker.ingest(full_run("B12")[0])
        saga = await tracker.until("B12", lambda s: s.needs_intervention, timeout=30.0)
        assert saga.failed_step == "book_flight"


async def test_a_flagged_steps_late_event_still_counts_and_the_flow_goes_on(store: Store):
    async with tracking(store, tracked_travel(within=0.5)) as tracker:
        start, flight, *_ = full_run("B13")
        await tracker.ingest(start)
        await tracker.until("B13", lambda s: s.needs_intervention)
        assert await tracker.ingest(flight) == [R]
        saga = await tracker.saga_of("B13")
        assert saga.status is SagaStatus.RUNNING and not saga.needs_intervention
        steps = {s.name: s.status for s in await store.get_steps(saga.saga_id)}
        assert steps["book_flight"] is StepStatus.COMPLETED
        assert steps["book_hotel"] is StepStatus.WAITING
        completed = [t for t in await tracker.log("B13") if t.step == "book_flight"][-1]
        assert "after its window" in completed.reason


async def test_two_tracked_types_following_one_flow_each_get_their_own_instance(store: Store):
    """Both types correlate on the same booking id: each has its own instance (the
    instance key names the type), and both complete."""
    audit = tracked_travel(name="travel_audit")
    async with tracking(store, tracked_travel(), audit) as tracker:
        await tracker.ingest(*full_run("B1"))
        sagas = await store.list_sagas(SagaFilter(correlation_id="B1"), limit=5)
        assert sorted(s.saga_type for s in sagas) == ["travel_audit", "travel_choreography"]
        assert {s.status for s in sagas} == {SagaStatus.COMPLETED}
        for saga in sagas:
            log = await store.get_transitions(saga.saga_id)
            assert moves(log) == COMPLETED_RUN
