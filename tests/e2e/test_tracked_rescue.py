"""A tracked saga's rescue compensations are performed once across a replica's SIGKILL.

The car never comes: the saga (on_stuck COMPENSATE) times out, or an operator aborts it
while it waits, and the orchestrator undoes the booking itself: the hotel through a real
gRPC participant's CancelHotel, the flight by publishing cancel_flight (the flight
service is played by the test, from a queue of its own). A replica dies (failpoint) once
a compensation's start is committed and before it goes out, or once it went out (the
reply came, the broker confirmed) and before its outcome is committed; a second replica
takes the saga over when the lease runs out and sends again with the same idempotency
key (the same event id). The hotel records one CancelHotel, the flight service sees one
distinct event id, and the saga ends FAILED, compensated.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from orchestrator.failpoints import ENV_VAR, EXIT_CODE
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.e2e.tracked_support import (
    Choreography,
    Recorded,
    moves,
    participant_commands,
    wait_exit,
    wait_for,
)
from tests.support.tracked_sagas import T, travel_event
from tools.processes import ChildProcess, participants_process

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.slow]

LEASE = ["--lease-seconds", "2"]
BOOKING = "rescued"


@pytest.fixture(scope="module")
def hotel_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChildProcess]:
    process = participants_process(tmp_path_factory.mktemp("hotel"), ["hotel"])
    try:
        yield process.start()
    finally:
        process.stop()


async def abort_when_the_car_is_awaited(tracker: ChildProcess, recorded: Recorded) -> None:
    """An operator aborts the saga while it waits for the car (a rescue from where it
    stands). The replica may die before it answers: the abort is committed before it
    acts, which the log shows."""

    async def car_awaited():
        logs = await recorded.logs()
        return next(
            (
                saga_id
                for saga_id, log in logs.items()
                if ("STEP_WAITING", "rent_car") in moves(log)
            ),
            None,
        )

    saga_id = await wait_for(car_awaited, "rent_car waiting")
    async with grpc.aio.insecure_channel(tracker.address) as channel:
        try:
            await pb_grpc.SagaOrchestratorStub(channel).AbortSaga(
                pb.AbortSagaRequest(
                    saga_id=saga_id, reason="car rental silent", requested_by="olga"
                ),
                timeout=10,
            )
        except grpc.aio.AioRpcError as error:
            assert error.code() is grpc.StatusCode.UNAVAILABLE, error
    log = (await recorded.logs())[saga_id]
    assert any(row.event == "SAGA_ABORTED" and row.actor == "operator:olga" for row in log), [
        (r.event, r.step, r.actor) for r in log
    ]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("rescue", "point", "hotel_cancelled_before", "flight_sends"),
    [
        ("on_stuck", "compensation_started:1", 0, 1),  # the hotel's cancel committed, not sent
        ("on_stuck", "compensation_replied:1", 1, 1),  # hotel cancelled, outcome not committed
        ("on_stuck", "compensation_started:2", 1, 1),  # cancel_flight committed, not published
        ("on_stuck", "compensation_replied:2", 1, 2),  # cancel_flight confirmed, not committed
        ("abort", "compensation_replied:1", 1, 1),  # an operator's abort of the running saga
    ],
)
async def test_a_rescue_compensation_is_performed_once_across_a_replica_kill(
    rescue, point, hotel_cancelled_before, flight_sends, tmp_path, postgres_url, hotel_service
):
    choreography = Choreography()
    recorded = Recorded(postgres_url)
    hotel_state = Path(hotel_service.workdir) / "participants" / "hotel.sqlite3"
    addresses = {"hotel": hotel_service.info["services"]["hotel"]}
    options: dict[str, Any] = {"participants": addresses}
    if rescue == "on_stuck":  # the car's window runs out: the orchestrator rescues
        options.update(car_within=1.0, on_stuck="COMPENSATE")
    first = choreography.tracker(
        tmp_path, postgres_url, "first", env={ENV_VAR: point}, extra_args=LEASE, **options
    )
    second = choreography.tracker(tmp_path, postgres_url, "second", extra_args=LEASE, **options)
    try:
        flight_inbox = await choreography.listen(
            f"{choreography.exchange}.flight", T + "cancel_flight"
        )
        await choreography.declare()
        first.start()
        await choreography.publish(
            [
                travel_event("booking_started", BOOKING, traveller="Ada"),
                travel_event("flight_booked", BOOKING, pnr="PNR-1"),
                travel_event("hotel_booked", BOOKING, reservation_id="R-1"),
            ]
        )  # ... and no car_rented
        if rescue == "abort":
            await abort_when_the_car_is_awaited(first, recorded)
        assert await wait_exit(first) == EXIT_CODE
        assert f"failpoint {point.split(':')[0]} hit" in first.log_tail()
        [saga] = await recorded.sagas()
        before = participant_commands(hotel_state, "CancelHotel", saga.saga_id)
        assert len(before) == hotel_cancelled_before
        second.start()

        cancels: list[dict] = []

        async def flight_told():
            cancels.extend(await choreography.received(flight_inbox))
            return cancels if len(cancels) >= flight_sends else None

        await wait_for(flight_told, "cancel_flight published")
        assert {event["id"] for event in cancels} == {f"{saga.saga_id}:book_flight:compensate"}
        assert len(cancels) == flight_sends  # a resend carries the same event id
        # The flight service obeys once and says so.
        await choreography.publish([travel_event("flight_cancelled", BOOKING)])

        async def ended():
            [now] = await recorded.sagas()
            return now if now.status == "FAILED" else None

        ended_saga = await wait_for(ended, "the rescued saga FAILED")
        assert not ended_saga.needs_intervention
        cancelled = participant_commands(hotel_state, "CancelHotel", saga.saga_id)
        assert len(cancelled) == 1, cancelled  # one idempotency key, one effect
        assert before in ([], cancelled)
        log = (await recorded.logs())[saga.saga_id]
        started = [row.step for row in log if row.event == "COMPENSATION_STARTED"]
        assert started == ["book_hotel", "book_flight"]  # each started once, in reverse
        # The replica that took over logs its resend ("resent after a restart"), once.
        hotel = [row.event for row in log if row.step == "book_hotel"]
        assert hotel.count("COMPENSATION_COMPLETED") == 1
    finally:
        first.stop()
        second.stop()
        await choreography.delete()
