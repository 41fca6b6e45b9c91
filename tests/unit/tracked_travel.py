"""A tracked travel saga for the unit tests: flight, hotel and car rental booked by
services reacting to each other's events (the demo's real definition lives in
orchestrator/examples/travel_choreography.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from google.protobuf.message import Message

from orchestrator import Call, Correlation, OnStuck, StepContext, TrackedStep, tracked_saga
from orchestrator.core.definition import SagaDefinition
from orchestrator.core.incoming import IncomingEvent, IngestVerdict
from orchestrator.core.machine import SagaRun
from orchestrator.core.observing import EventOutcome, apply_event, feed_held, start_instance
from orchestrator.core.records import SagaCommit, TransitionEvent, TransitionRecord
from orchestrator.core.tracking import EventRole, correlation_of, event_roles
from saga.participants.hotel.v1 import hotel_pb2 as hotel

T = "com.example.travel."
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def build_cancel_hotel(ctx: StepContext) -> Message:
    reservation = ""
    if ctx.result is not None:
        reservation = str(dict(ctx.result.items()).get("reservation_id", ""))  # type: ignore[attr-defined]
    return hotel.CancelHotelRequest(reservation_id=reservation)


def travel(on_stuck: OnStuck = OnStuck.NEEDS_INTERVENTION) -> SagaDefinition:
    return tracked_saga(
        "travel_choreography",
        version=1,
        started_by=(T + "booking_started",),
        correlation=Correlation(data_path="booking_id"),
        on_stuck=on_stuck,
        description="Flight, hotel and car booked by services reacting to each other's events",
        steps=(
            TrackedStep(
                "book_flight",
                participant="flight",
                completes_on=(T + "flight_booked",),
                fails_on=(T + "flight_booking_failed",),
                within=30.0,
                compensated_on=(T + "flight_cancelled",),
                compensation_event=T + "cancel_flight",
            ),
            TrackedStep(
                "book_hotel",
                participant="hotel",
                completes_on=T + "hotel_booked",
                fails_on=T + "hotel_booking_failed",
                within=30.0,
                compensated_on=T + "hotel_cancelled",
                compensation=Call(
                    "saga.participants.hotel.v1.HotelService", "CancelHotel", build_cancel_hotel
                ),
            ),
            TrackedStep(
                "rent_car",
                participant="car_rental",
                completes_on=T + "car_rented",
                fails_on=T + "car_rental_failed",
                within=60.0,
            ),
        ),
    )


TRAVEL = travel()
RESCUED_TRAVEL = travel(OnStuck.COMPENSATE)


def event(
    kind: str, booking: str = "B1", *, id: str = "", source: str = "", **data: object
) -> IncomingEvent:
    """An event of the travel flow: `kind` is the type's last part ("flight_booked")."""
    service = source or kind.split("_")[0]
    return IncomingEvent(
        source=f"/{service}",
        id=id or f"{kind}-{booking}",
        type=T + kind,
        data={"booking_id": booking, **data},
    )


class Tracker:
    """The ingestor's pure half as engine/tracking.py runs it, in memory: drop repeated
    (source, id) pairs, start an instance or apply the event, hold early events and
    feed them back when due, commit, and rebuild each instance from what it committed
    (so nothing survives that a store would not keep)."""

    def __init__(self, definition: SagaDefinition = TRAVEL) -> None:
        self.definition = definition
        self.runs: dict[str, SagaRun] = {}
        self.log: dict[str, list[TransitionRecord]] = {}
        self.held: dict[str, list[IncomingEvent]] = {}
        self.seen: set[tuple[str, str]] = set()
        self.outcomes: list[EventOutcome] = []

    def ingest(self, incoming: IncomingEvent, now: datetime = T0) -> IngestVerdict:
        if incoming.key in self.seen:
            return IngestVerdict.DUPLICATE
        self.seen.add(incoming.key)
        correlation = correlation_of(self.definition, incoming)
        assert correlation is not None
        held = self.held.setdefault(correlation, [])
        run = self.runs.get(correlation)
        if run is None:
            declared = event_roles(self.definition)[incoming.type]
            if declared.role is not EventRole.START:
                held.append(incoming)
                return IngestVerdict.HELD
            run = start_instance(self.definition, incoming, now, f"saga-{correlation}")
            verdict = IngestVerdict.RECORDED
        else:
            outcome = apply_event(run, incoming, now)
            self.outcomes.append(outcome)
            verdict = outcome.verdict
            if verdict is IngestVerdict.HELD:
                held.append(incoming)
        for applied, _ in feed_held(run, held, now):
            held.remove(applied)
        self.commit(correlation, run)
        return verdict

    def commit(self, correlation: str, run: SagaRun) -> SagaCommit:
        commit = run.take_commit()
        log = self.log.setdefault(correlation, [])
        log.extend(commit.transitions)
        self.runs[correlation] = SagaRun(
            self.definition, run.saga, list(run.steps), last_seq=len(log)
        )
        return commit

    def run(self, booking: str = "B1") -> SagaRun:
        return self.runs[booking]

    def act(
        self, do: Callable[[SagaRun], object], booking: str = "B1"
    ) -> tuple[object, SagaCommit]:
        """Do something to the instance (a timer, an operator, the driver), then commit."""
        run = self.runs[booking]
        answer = do(run)
        return answer, self.commit(booking, run)

    def events(self, booking: str = "B1") -> list[TransitionEvent]:
        return [row.event for row in self.log.get(booking, [])]
