"""`make demo-choreography`: a choreographed saga on RabbitMQ, tracked and rescued.

Three services (participants/choreography/: flight, hotel, car rental, each a process with
its own SQLite file and queue) book a trip by reacting to each other's events on a topic
exchange of this run's own; nobody commands them. `saga serve` tracks them as the
`travel_choreography` type (orchestrator/examples/travel_choreography.py, loaded with
`--definitions`, each step due within WINDOW_SECONDS), consuming the same events from a
queue of its own. Three bookings:

1. trip-1 completes: flight_booked, hotel_booked, car_rented;
2. trip-2 asks for a car class the rental lacks: car_rental_failed, and the services
   unwind themselves (hotel_cancelled, flight_cancelled): the saga FAILED;
3. trip-3 stalls: the hotel service is stopped, so no hotel_booked comes; the saga is
   flagged (needs_intervention) after the window; an operator aborts it (`saga abort`),
   and the rescue publishes cancel_hotel (the hotel's outcome is unknown), which waits in
   the stopped hotel's queue: no hotel_cancelled comes and that undo is flagged in turn.
   The operator, having checked the hotel's own records hold nothing for trip-3, resolves
   the step (`saga resolve --step book_hotel`); the rescue goes on with cancel_flight,
   which the flight service obeys: FAILED, nothing booked.

It prints the events as they passed, the sagas' histories (`saga history`), checks that
the services' SQLite files agree with the sagas' outcomes (trip-1 booked everywhere, the
others holding nothing), and exits 0 only if every check holds. Every process it started
is stopped and its exchange and queues deleted, also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aio_pika

from orchestrator.client import SagaClient
from participants.choreography import events as ev
from participants.choreography.services import SERVICES
from participants.choreography.state import read_bookings, read_inventory
from saga.v1 import orchestrator_pb2 as pb
from tools.processes import ChildProcess, orchestrator_process

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
SAGA_TYPE = "travel_choreography"
DEFINITIONS_MODULE = "orchestrator.examples.travel_choreography"
WINDOW_SECONDS = 3.0
"""Each step's window in the demo: short, so the stalled trip is flagged soon."""
WAIT_SECONDS = 60.0
CLI_TIMEOUT_SECONDS = 30.0
FRONT_END = "/travel/front-end"
OPERATOR = "operator-olga"
REFUSED_CAR = "limousine"
"""A car class the rental does not have: trip-2's refusal."""


def service_process(
    workdir: Path,
    name: str,
    url: str,
    exchange: str,
    *,
    capacity: int = 10,
    env: Mapping[str, str] | None = None,
) -> ChildProcess:
    """An unstarted choreographed service: queue `<exchange>.<name>`, file `<name>.sqlite3`."""
    argv = [
        sys.executable,
        "-m",
        "participants.choreography",
        *("--service", name, "--amqp", url, "--exchange", exchange),
        *("--queue", f"{exchange}.{name}", "--db", str(workdir / f"{name}.sqlite3")),
        *("--capacity", str(capacity)),
    ]
    return ChildProcess(name, argv, workdir, env=env)


def trip(booking_id: str, car_class: str = "compact") -> dict[str, Any]:
    """A booking_started event's data: one seat, one room, one car."""
    return {
        "booking_id": booking_id,
        "flight": "LH400",
        "hotel": "berlin-central",
        "car_class": car_class,
    }


@dataclass
class Run:
    """One run's names, processes and connections."""

    url: str
    workdir: Path
    exchange: str = field(default_factory=lambda: f"demo-choreography-{secrets.token_hex(4)}")
    services: dict[str, ChildProcess] = field(default_factory=dict)
    orchestrator: ChildProcess | None = None

    @property
    def tracker_queue(self) -> str:
        return f"{self.exchange}.tracker"

    @property
    def observer_queue(self) -> str:
        return f"{self.exchange}.observer"

    @property
    def queues(self) -> list[str]:
        return [
            *(f"{self.exchange}.{name}" for name in SERVICES),
            self.tracker_queue,
            self.observer_queue,
        ]

    def saga(self, args: Sequence[str]) -> str:
        """Run `saga ARGS` against the orchestrator as an operator would; print both."""
        assert self.orchestrator is not None
        print(f"  $ saga {shlex.join(args)}")
        done = subprocess.run(
            [sys.executable, "-m", "orchestrator", *args, "--address", self.orchestrator.address],
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_SECONDS,
            env={**os.environ, "COLUMNS": "250"},
        )
        for line in (done.stdout + done.stderr).splitlines():
            print(f"    {line}")
        if done.returncode != 0:
            raise DemoFailed(f"`saga {args[0]}` exited {done.returncode}")
        return done.stdout


class DemoFailed(RuntimeError):
    """A check of the demo did not hold; the message says which."""


async def wait_until(what: str, check: Callable[[], Any], within: float = WAIT_SECONDS) -> Any:
    """Poll the coroutine function `check` until it returns something truthy (bounded)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.1)
    raise DemoFailed(f"{what}: not within {within:.0f}s")


class Scenes:
    """The three bookings, against running services and orchestrator."""

    def __init__(self, run: Run, channel: aio_pika.abc.AbstractChannel, client: SagaClient) -> None:
        self.run = run
        self.channel = channel
        self.client = client
        self.observer: aio_pika.abc.AbstractQueue | None = None
        self.saga_ids: dict[str, str] = {}
        self.seen: list[ev.CloudEvent] = []

    async def book(self, data: Mapping[str, Any]) -> None:
        booking_id = str(data["booking_id"])
        event = ev.new_event(FRONT_END, ev.BOOKING_STARTED, data, booking_id)
        exchange = await self.channel.get_exchange(self.run.exchange)
        await exchange.publish(
            aio_pika.Message(event.body(), content_type=ev.STRUCTURED, message_id=event.id),
            routing_key=event.type,
        )
        print(f"\n{booking_id}: published booking_started {dict(data)}")

    async def saga_of(self, booking_id: str) -> pb.Saga | None:
        """The booking's saga with its steps (GetSaga), once the tracker started one."""
        if booking_id not in self.saga_ids:
            listed = self.client.list_sagas(saga_type=SAGA_TYPE, correlation_id=booking_id)
            async for saga in listed:
                self.saga_ids[booking_id] = saga.saga_id
                break
            else:
                return None
        return await self.client.handle(self.saga_ids[booking_id]).get()

    async def settle(self, booking_id: str, done: Callable[[pb.Saga], bool], what: str) -> pb.Saga:
        async def check() -> pb.Saga | None:
            saga = await self.saga_of(booking_id)
            return saga if saga is not None and done(saga) else None

        saga: pb.Saga = await wait_until(f"{booking_id} {what}", check)
        await self.print_events()
        print(f"  saga {saga.saga_id}: {describe(saga)}")
        return saga

    async def print_events(self) -> None:
        """Print the travel events that passed on the exchange since the last call."""
        assert self.observer is not None
        while (message := await self.observer.get(no_ack=True, fail=False)) is not None:
            event = ev.parse_message(message.body, message.content_type, message.headers)
            print(f"  event {event.short_type:<22} {event.subject:<8} from {event.source}")
            self.seen.append(event)

    async def wait_event(self, short_type: str, booking_id: str) -> None:
        """Until `short_type` about the booking passed (now or before; printing events)."""

        async def check() -> bool:
            await self.print_events()
            return any(e.short_type == short_type and e.subject == booking_id for e in self.seen)

        await wait_until(f"{booking_id}: {short_type}", check)

    async def play(self) -> None:
        self.observer = await self.channel.declare_queue(self.run.observer_queue)
        await self.observer.bind(self.run.exchange, routing_key=f"{ev.PREFIX}#")
        print("\n1. A booking every service accepts")
        await self.book(trip("trip-1"))
        await self.settle("trip-1", is_status(pb.SAGA_STATUS_COMPLETED), "completed")

        print(f"\n2. A car class the rental lacks ({REFUSED_CAR}): the services unwind")
        await self.book(trip("trip-2", car_class=REFUSED_CAR))
        await self.settle("trip-2", is_status(pb.SAGA_STATUS_FAILED), "failed")

        print("\n3. The hotel service is stopped: the booking stalls, is flagged, is rescued")
        await self.stall_and_rescue("trip-3")

        print("\nThe sagas' histories")
        for booking_id in ("trip-1", "trip-2", "trip-3"):
            print(f"\n{booking_id}:")
            self.run.saga(["history", self.saga_ids[booking_id]])

    async def stall_and_rescue(self, booking_id: str) -> None:
        """Stop the hotel, book, wait for the flag, abort; the rescue publishes
        cancel_hotel first (the hotel's outcome is unknown) and waits for the hotel to
        confirm it. The stopped hotel cannot: that undo is flagged in turn, and the
        operator, having checked the hotel's own records hold nothing for the booking,
        resolves the step by hand; the rescue goes on with cancel_flight."""
        hotel = self.run.services["hotel"]
        print(f"  stopping the hotel service (pid {hotel.pid})")
        hotel.stop()
        started = time.monotonic()
        await self.book(trip(booking_id))
        await self.settle(booking_id, lambda saga: saga.needs_intervention, "flagged")
        print(f"  flagged {time.monotonic() - started:.1f}s after the booking started")
        saga_id = self.saga_ids[booking_id]
        self.run.saga(
            ["abort", saga_id, "--reason", "hotel service down; undo the trip", "--by", OPERATOR]
        )
        saga = await self.settle(
            booking_id, lambda saga: rescued(saga) or undo_stuck(saga, "book_hotel"), "rescued"
        )
        if not rescued(saga):
            held = read_bookings(self.run.workdir / "hotel.sqlite3").get(booking_id)
            if held is not None:
                raise DemoFailed(f"the stopped hotel holds {booking_id}: {held}")
            print(
                f"  cancel_hotel waits in the stopped hotel's queue, so no hotel_cancelled "
                f"came; the hotel's own records hold nothing for {booking_id}:"
            )
            self.run.saga(
                [
                    *("resolve", saga_id, "--step", "book_hotel", "--by", OPERATOR),
                    *("--reason", f"the hotel never booked {booking_id}; nothing to undo"),
                ]
            )
            await self.settle(booking_id, rescued, "rescued")
        await self.wait_event("flight_cancelled", booking_id)  # the flight obeyed cancel_flight


def is_status(status: int) -> Callable[[pb.Saga], bool]:
    return lambda saga: saga.status == status


def undo_stuck(saga: pb.Saga, step: str) -> bool:
    """The rescue gave up waiting for `step`'s undo event: the saga needs an operator."""
    found = next(s for s in saga.steps if s.name == step)
    return saga.needs_intervention and found.status == pb.STEP_STATUS_COMPENSATION_FAILED


def rescued(saga: pb.Saga) -> bool:
    """FAILED with its flight undone (a flagged saga may be FAILED already, halted)."""
    flight = next(s for s in saga.steps if s.name == "book_flight")
    return saga.status == pb.SAGA_STATUS_FAILED and flight.status == pb.STEP_STATUS_COMPENSATED


def describe(saga: pb.Saga) -> str:
    status = pb.SagaStatus.Name(saga.status).removeprefix("SAGA_STATUS_")
    flagged = " needs_intervention" if saga.needs_intervention else ""
    steps = "  ".join(
        f"{s.name}={pb.StepStatus.Name(s.status).removeprefix('STEP_STATUS_').lower()}"
        for s in saga.steps
    )
    return f"{status}{flagged}  {steps}"


EXPECTED: dict[str, dict[str, str | None]] = {
    "flight": {"trip-1": "booked", "trip-2": "cancelled", "trip-3": "cancelled"},
    "hotel": {"trip-1": "booked", "trip-2": "cancelled", "trip-3": None},
    "car_rental": {"trip-1": "booked", "trip-2": "refused", "trip-3": None},
}
"""Each service's booking status per trip once the demo is done (None: never heard of)."""


def check_states(workdir: Path) -> list[str]:
    """The services' own files against the sagas' outcomes: trip-1 holds one seat, room
    and car; the failed trips hold nothing. Prints each service's bookings."""
    problems = []
    print("\nThe services' own state")
    for name, expected in EXPECTED.items():
        path = workdir / f"{name}.sqlite3"
        bookings, held = read_bookings(path), read_inventory(path)
        print(f"  {name:<10} bookings {bookings_line(bookings)}; units held {held}")
        for booking_id, status in expected.items():
            found = bookings.get(booking_id, {}).get("status")
            if found != status:
                problems.append(f"{name}: {booking_id} is {found}, expected {status}")
        if sum(held.values()) != 1:
            problems.append(f"{name}: {sum(held.values())} units held, expected trip-1's one")
    return problems


def bookings_line(bookings: Mapping[str, Mapping[str, Any]]) -> str:
    return ", ".join(f"{b}={row['status']}" for b, row in sorted(bookings.items())) or "none"


async def declare(run: Run) -> None:
    """The run's exchange, before any process declares it."""
    connection = await aio_pika.connect(run.url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_exchange(run.exchange, aio_pika.ExchangeType.TOPIC, durable=True)


async def tracker_consuming(run: Run) -> bool:
    """True once the orchestrator consumes its queue (so its bindings are in place)."""
    connection = await aio_pika.connect(run.url)
    async with connection:
        try:
            channel = await connection.channel()
            queue = await channel.declare_queue(run.tracker_queue, passive=True)
        except aio_pika.exceptions.ChannelClosed:
            return False  # not declared yet
        declared = queue.declaration_result
        return declared is not None and (declared.consumer_count or 0) > 0


async def play(run: Run) -> None:
    assert run.orchestrator is not None
    await wait_until("the orchestrator consuming its queue", lambda: tracker_consuming(run))
    connection = await aio_pika.connect(run.url)
    async with connection, SagaClient(run.orchestrator.address) as client:
        await Scenes(run, await connection.channel(), client).play()


async def delete_everything(run: Run) -> None:
    """The run's queues and exchange, whatever exists of them."""
    with contextlib.suppress(Exception):
        connection = await aio_pika.connect(run.url)
        async with connection:
            channel = await connection.channel()
            for queue in run.queues:
                await channel.queue_delete(queue)
            await channel.exchange_delete(run.exchange)


def start_processes(run: Run) -> None:
    for name in SERVICES:
        run.services[name] = service_process(run.workdir, name, run.url, run.exchange).start()
    run.orchestrator = orchestrator_process(
        run.workdir,
        f"sqlite:///{run.workdir / 'saga.sqlite3'}",
        {},
        env={"TRAVEL_CHOREOGRAPHY_WITHIN": str(WINDOW_SECONDS)},
        extra_args=[
            *("--definitions", DEFINITIONS_MODULE),
            *("--track-rabbitmq-url", run.url),
            *("--track-rabbitmq-exchange", run.exchange),
            *("--track-rabbitmq-queue", run.tracker_queue),
        ],
    ).start()
    print(
        f"demo-choreography: services {', '.join(SERVICES)} and saga serve at "
        f"{run.orchestrator.address}, each step due within {WINDOW_SECONDS:.0f}s"
    )


def run_demo(url: str, workdir: Path) -> int:
    run = Run(url, workdir)
    print(f"demo-choreography: exchange {run.exchange}; state and logs in {workdir}")
    problems: list[str] = []
    try:
        asyncio.run(declare(run))
        start_processes(run)
        asyncio.run(play(run))
    except DemoFailed as failure:
        problems.append(str(failure))
    finally:
        for process in (run.orchestrator, *run.services.values()):
            if process is not None:
                process.stop()
        asyncio.run(delete_everything(run))
    if all((workdir / f"{name}.sqlite3").exists() for name in EXPECTED):
        problems += check_states(workdir)
    for problem in problems:
        print(f"demo-choreography: FAILED: {problem}")
    if problems:
        return 1
    print("\ndemo-choreography: every check held; exchange and queues deleted")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.choreography_demo", description=__doc__)
    parser.add_argument("--rabbitmq", default=RABBITMQ_URL)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(".demo") / f"choreography-{datetime.now():%Y%m%d-%H%M%S}"
    return run_demo(args.rabbitmq, workdir)


if __name__ == "__main__":
    sys.exit(main())
