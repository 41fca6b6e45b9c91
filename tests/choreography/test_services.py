"""The choreographed flight, hotel and car rental services on a real RabbitMQ: a booking
flows through their events, a refusal unwinds through events, a rescuer's commands undo
what was done, duplicates book nothing twice and answer with the same event id, and a
service SIGKILLed between its commit and its ack republishes the same outcome."""

from __future__ import annotations

import time
from pathlib import Path

import aio_pika
import pytest

from participants.choreography import events as ev
from participants.choreography.state import count_handled
from tests.choreography.conftest import (
    ORCHESTRATOR,
    Choreography,
    count,
    types_of,
)
from tools.choreography_demo import trip

pytestmark = [pytest.mark.e2e]


async def test_a_booking_flows_from_flight_to_hotel_to_car(running: Choreography):
    await running.start_booking(trip("trip-ok"))
    await running.wait_for(lambda seen: count(seen, "car_rented", "trip-ok") == 1)
    assert types_of(running.of("trip-ok")) == ["flight_booked", "hotel_booked", "car_rented"]
    car_rented = running.of("trip-ok")[-1]
    assert car_rented.source == "/travel/car-rental"
    assert dict(car_rented.data) == trip("trip-ok")
    for name, item in (("flight", "LH400"), ("hotel", "berlin-central"), ("car_rental", "compact")):
        assert running.bookings(name)["trip-ok"]["status"] == "booked"
        assert running.held(name)[item] == 1


async def test_a_car_the_rental_lacks_unwinds_the_hotel_then_the_flight(running: Choreography):
    await running.start_booking(trip("trip-limo", car_class="limousine"))
    await running.wait_for(lambda seen: count(seen, "flight_cancelled", "trip-limo") == 1)
    events = running.of("trip-limo")
    assert types_of(events) == [
        "flight_booked",
        "hotel_booked",
        "car_rental_failed",
        "hotel_cancelled",
        "flight_cancelled",
    ]
    assert events[2].data["reason"] == "no such car_class: limousine"
    assert events[3].data["because"] == "car_rental_failed"
    assert events[4].data["because"] == "hotel_cancelled"
    assert running.bookings("car_rental")["trip-limo"]["status"] == "refused"
    for name in ("flight", "hotel"):
        assert running.bookings(name)["trip-limo"]["status"] == "cancelled"
        assert set(running.held(name).values()) == {0}


async def test_a_full_hotel_makes_the_flight_cancel(choreography: Choreography):
    for name in ("flight", "hotel", "car_rental"):
        choreography.start(name)
    data = trip("trip-nohotel") | {"rooms": 6}  # capacity is 5
    await choreography.start_booking(data)
    await choreography.wait_for(lambda seen: count(seen, "flight_cancelled", "trip-nohotel") == 1)
    assert types_of(choreography.of("trip-nohotel")) == [
        "flight_booked",
        "hotel_booking_failed",
        "flight_cancelled",
    ]
    assert choreography.held("flight")["LH400"] == 0


def rescue(step: str, command: str, booking_id: str) -> ev.CloudEvent:
    """A rescue command as the orchestrator publishes it."""
    return ev.CloudEvent(
        id=f"saga-1:{step}:compensate",
        source=ORCHESTRATOR,
        type=command,
        subject=booking_id,
        data={"saga_id": "saga-1", "step": step, "correlation": booking_id, "result": {}},
        time="2026-12-06T12:00:00Z",
    )


async def test_rescue_commands_undo_every_part_and_a_second_cancel_answers_the_same(
    running: Choreography,
):
    await running.start_booking(trip("trip-rescued"))
    await running.wait_for(lambda seen: count(seen, "car_rented", "trip-rescued") == 1)
    for step, command in (
        ("rent_car", ev.CANCEL_CAR),
        ("book_hotel", ev.CANCEL_HOTEL),
        ("book_flight", ev.CANCEL_FLIGHT),
    ):
        await running.publish(rescue(step, command, "trip-rescued"))
    # The flight cancels on the hotel's hotel_cancelled and on cancel_flight: the second
    # answers with the first one's event.
    await running.wait_for(lambda seen: count(seen, "flight_cancelled", "trip-rescued") == 2)
    await running.wait_for(lambda seen: count(seen, "car_rental_cancelled", "trip-rescued") == 1)
    cancelled = [e for e in running.of("trip-rescued") if e.short_type == "flight_cancelled"]
    assert cancelled[0].id == cancelled[1].id
    for name in ("flight", "hotel", "car_rental"):
        assert running.bookings(name)["trip-rescued"]["status"] == "cancelled"
        assert set(running.held(name).values()) == {0}


@pytest.mark.parametrize("how", ["same event redelivered", "same booking under a new event id"])
async def test_a_duplicate_books_nothing_twice_and_answers_with_the_same_event(
    running: Choreography, how: str
):
    first = await running.start_booking(trip("trip-dup"))
    if how == "same event redelivered":
        await running.publish(first)
    else:
        await running.start_booking(trip("trip-dup"))
    await running.wait_for(lambda seen: count(seen, "car_rented", "trip-dup") == 2)
    for short in ("flight_booked", "hotel_booked", "car_rented"):
        ids = {e.id for e in running.of("trip-dup") if e.short_type == short}
        assert len(ids) == 1, short
    assert running.held("flight")["LH400"] == 1
    assert running.held("hotel")["berlin-central"] == 1
    assert running.held("car_rental")["compact"] == 1
    handled = count_handled(running.workdir / "flight.sqlite3")
    assert handled == (1 if how == "same event redelivered" else 2)


def wait_stopped(pid: int, timeout: float = 30.0) -> None:
    """Until the process is stopped (its failpoint SIGSTOPped it), bounded."""
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "T":
        assert time.monotonic() < deadline, f"process {pid} did not reach its failpoint"
        time.sleep(0.02)


@pytest.mark.parametrize("failpoint", ["after_commit", "after_publish"])
async def test_a_service_killed_between_commit_and_ack_republishes_the_same_outcome(
    choreography: Choreography, failpoint: str
):
    flight = choreography.start("flight", env={"CHOREOGRAPHY_FAILPOINT": failpoint})
    for name in ("hotel", "car_rental"):
        choreography.start(name)
    await choreography.start_booking(trip("trip-crash"))
    wait_stopped(flight.pid)
    flight.kill()  # SIGKILL: the booking is committed, the message never acked
    assert choreography.bookings("flight")["trip-crash"]["status"] == "booked"

    choreography.start("flight")  # the same file and queue; the broker redelivers
    await choreography.wait_for(lambda seen: count(seen, "car_rented", "trip-crash") >= 1)
    published = 2 if failpoint == "after_publish" else 1
    await choreography.wait_for(
        lambda seen: (
            count(seen, "flight_booked", "trip-crash") == published
            and count(seen, "car_rented", "trip-crash") == published
        )
    )
    assert (
        len({e.id for e in choreography.of("trip-crash") if e.short_type == "flight_booked"}) == 1
    )
    assert choreography.held("flight")["LH400"] == 1
    assert choreography.held("car_rental")["compact"] == 1
    assert count_handled(choreography.workdir / "flight.sqlite3") == 1


async def test_a_message_that_is_not_a_cloudevent_is_dropped_and_the_service_goes_on(
    running: Choreography,
):
    exchange = await running.channel.get_exchange(running.exchange)
    await exchange.publish(
        aio_pika.Message(b"<booking/>", content_type="application/xml"),
        routing_key=ev.BOOKING_STARTED,
    )
    await running.start_booking(trip("trip-after-junk"))
    await running.wait_for(lambda seen: count(seen, "car_rented", "trip-after-junk") == 1)
    flight = next(p for name, p in running.processes.items() if name.startswith("flight"))
    # Rejected once, not requeued (a requeued one would come back before the next booking).
    assert flight.log_file.read_text().count("rejected message") == 1
