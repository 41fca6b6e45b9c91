"""The tracked-saga DSL: what `tracked_saga` and `TrackedStep` build, the load-time
checks that refuse a definition the tracker could not follow, correlation values, and
the index from event types to the tracked types declaring them."""

from __future__ import annotations

import dataclasses

import pytest
from google.protobuf import struct_pb2

from orchestrator import Call, Correlation, OnStuck, Step, TrackedStep, tracked_saga
from orchestrator.core.definition import Parallel, SagaDefinition, StepContext
from orchestrator.core.errors import DefinitionError, TrackedTypeNotStartable
from orchestrator.core.incoming import IncomingEvent
from orchestrator.core.opening import SagaStart
from orchestrator.core.registry import Registry
from orchestrator.core.tracking import (
    EventRole,
    Observed,
    TrackedTypes,
    correlation_of,
    event_roles,
)
from saga.participants.hotel.v1 import hotel_pb2
from tests.unit.tracked_travel import TRAVEL, T, build_cancel_hotel, travel

pytestmark = pytest.mark.unit


def test_tracked_saga_builds_a_definition_with_struct_input_and_observed_steps():
    assert TRAVEL.input_type is struct_pb2.Struct
    assert TRAVEL.tracking is not None
    assert TRAVEL.tracking.started_by == (f"{T}booking_started",)
    assert TRAVEL.tracking.on_stuck is OnStuck.NEEDS_INTERVENTION
    hotel = TRAVEL.step_named("book_hotel")
    assert hotel.action is None
    assert hotel.observed == Observed(
        completes_on=(f"{T}hotel_booked",),
        within=30.0,
        fails_on=(f"{T}hotel_booking_failed",),
        compensated_on=(f"{T}hotel_cancelled",),
    )
    assert not hotel.is_pivot
    assert TRAVEL.pivot_stage is None


def test_a_registered_tracked_type_stores_event_data_as_each_steps_result():
    registry = Registry([TRAVEL])
    resolved = registry.resolved_step(TRAVEL, "book_hotel")
    assert resolved.action is None
    assert resolved.result_type is struct_pb2.Struct
    assert (
        resolved.call(compensating=True).path
        == "/saga.participants.hotel.v1.HotelService/CancelHotel"
    )
    with pytest.raises(DefinitionError, match="observed"):
        resolved.call(compensating=False)


def test_the_compensation_builder_reads_the_completing_events_data():
    result = struct_pb2.Struct()
    result.update({"reservation_id": "H-1"})
    context = StepContext(saga_id="s", input=struct_pb2.Struct(), results={}, result=result)
    assert build_cancel_hotel(context) == hotel_pb2.CancelHotelRequest(reservation_id="H-1")


def _with_step(step: Step, **tracking: object) -> SagaDefinition:
    definition = travel()
    steps = (*definition.steps[:2], step)
    changes = dict(tracking)
    return dataclasses.replace(definition, steps=steps, **changes)  # type: ignore[arg-type]


def _car(**changes: object) -> Step:
    base = {"completes_on": f"{T}car_rented", "within": 10.0, "fails_on": f"{T}car_failed"}
    base.update(changes)
    return TrackedStep("rent_car", "car_rental", **base)  # type: ignore[arg-type]


CANCEL = Call("saga.participants.hotel.v1.HotelService", "CancelHotel", build_cancel_hotel)


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        (_with_step(_car(completes_on=f"{T}hotel_booked")), "declared twice"),
        (_with_step(_car(fails_on=f"{T}booking_started")), "declared twice"),
        (_with_step(_car(within=0.0)), "within must be positive"),
        (
            _with_step(_car(compensation=CANCEL, compensation_event=f"{T}cancel_car")),
            "keep one",
        ),
        (_with_step(_car(completes_on=())), "completes_on names no event type"),
        (
            _with_step(Step("rent_car", "car_rental", action=CANCEL, compensation=CANCEL)),
            "do not mix",
        ),
        (
            dataclasses.replace(
                TRAVEL,
                tracking=dataclasses.replace(
                    TRAVEL.tracking,  # type: ignore[type-var]
                    correlation=Correlation(extension="bookingid", data_path="booking_id"),
                ),
            ),
            "exactly one of extension",
        ),
        (
            dataclasses.replace(
                TRAVEL,
                tracking=dataclasses.replace(TRAVEL.tracking, correlation=Correlation()),  # type: ignore[type-var]
            ),
            "exactly one of extension",
        ),
        (dataclasses.replace(TRAVEL, deadline=10.0), "no a deadline"),
        (
            dataclasses.replace(
                TRAVEL,
                steps=(Parallel("both", TRAVEL.steps[:2]), TRAVEL.steps[2]),  # type: ignore[arg-type]
            ),
            "Parallel groups",
        ),
        (
            tracked_saga(
                "bad",
                version=1,
                started_by=f"{T}go",
                correlation=Correlation(data_path="id"),
                on_stuck=OnStuck.COMPENSATE,
                steps=(_car(), TrackedStep("last", "x", completes_on=f"{T}done", within=5)),
            ),
            "on_stuck=OnStuck.COMPENSATE",
        ),
        (
            SagaDefinition(
                name="orchestrated",
                version=1,
                input_type=struct_pb2.Struct,
                steps=(_car(),),
            ),
            "not tracked",
        ),
        (
            SagaDefinition(
                name="no_action", version=1, input_type=struct_pb2.Struct, steps=(Step("a", "p"),)
            ),
            "needs an action",
        ),
    ],
)
def test_load_time_checks_refuse_what_the_tracker_could_not_follow(definition, message):
    with pytest.raises(DefinitionError, match=message):
        Registry([definition])


def test_compensate_accepts_a_last_step_that_cannot_be_undone():
    Registry([travel(OnStuck.COMPENSATE)])


def _event(data=None, **extensions: str) -> IncomingEvent:
    return IncomingEvent(source="/s", id="1", type="t", data=data, extensions=extensions)


@pytest.mark.parametrize(
    ("correlation", "incoming", "value"),
    [
        (Correlation(data_path="booking_id"), _event({"booking_id": "B7"}), "B7"),
        (Correlation(data_path="booking.id"), _event({"booking": {"id": 42}}), "42"),
        (Correlation(data_path="booking.id"), _event({"booking": {"id": 42.0}}), "42"),
        (Correlation(data_path="booking.id"), _event({"booking": {}}), None),
        (Correlation(data_path="booking_id"), _event({"booking_id": ""}), None),
        (Correlation(data_path="booking_id"), _event({"booking_id": True}), None),
        (Correlation(data_path="booking_id"), _event([1, 2]), None),
        (Correlation(data_path="booking_id"), _event(None), None),
        (Correlation(extension="bookingid"), _event(bookingid="B9"), "B9"),
        (Correlation(extension="bookingid"), _event({"bookingid": "B9"}), None),
    ],
)
def test_correlation_of_reads_the_extension_or_the_data_path(correlation, incoming, value):
    definition = dataclasses.replace(
        TRAVEL,
        tracking=dataclasses.replace(TRAVEL.tracking, correlation=correlation),  # type: ignore[type-var]
    )
    assert correlation_of(definition, incoming) == value


def test_event_roles_name_each_declared_type_once():
    roles = event_roles(TRAVEL)
    assert roles[f"{T}booking_started"].role is EventRole.START
    assert roles[f"{T}hotel_booked"].role is EventRole.COMPLETES
    assert roles[f"{T}hotel_booked"].step == "book_hotel"
    assert roles[f"{T}car_rental_failed"].role is EventRole.FAILS
    assert roles[f"{T}flight_cancelled"].role is EventRole.UNDOES
    assert roles[f"{T}flight_cancelled"].index == 0
    assert f"{T}cancel_flight" not in roles  # what the orchestrator sends, not follows


def test_tracked_types_route_event_types_to_the_newest_version_declaring_them():
    newer = dataclasses.replace(TRAVEL, version=2, description="v2")
    orchestrated = SagaDefinition(
        name="plain",
        version=1,
        input_type=struct_pb2.Struct,
        steps=(Step("s", "hotel", action=CANCEL),),
    )
    index = TrackedTypes(Registry([TRAVEL, newer, orchestrated]))
    assert index
    assert len(index.definitions) == 2
    (role,) = index.roles(f"{T}hotel_booked")
    assert (role.definition.version, role.role, role.step) == (2, EventRole.COMPLETES, "book_hotel")
    assert index.roles("something.else") == ()
    assert f"{T}booking_started" in index.event_types
    assert f"{T}cancel_flight" not in index.event_types
    assert not TrackedTypes([orchestrated])


def test_start_saga_refuses_a_tracked_type_naming_its_start_events():
    with pytest.raises(TrackedTypeNotStartable, match=f"start events \\({T}booking_started\\)"):
        SagaStart(TRAVEL, "B1", {}, None)
    assert TrackedTypeNotStartable.code.name == "FAILED_PRECONDITION"
