"""`make chaos`: sagas of both example types while the orchestrator is killed with
SIGKILL and restarted at random moments; then every invariant over the sagas and the
participants' own state is checked, and printed with its numbers.

Participants run as separate processes with a card limit, limited seats, rooms and
cars, some latency (so sagas are in flight when a kill lands) and a seeded rate of
injected business failures (so the compensating path runs too). A kill is a SIGKILL:
no cleanup, no flush. A new orchestrator starts on the same port and database, and
resumes the dead one's sagas once their leases expire. Every StartSaga carries an
idempotency key and is retried on UNAVAILABLE and DEADLINE_EXCEEDED, so a start that
raced a kill lands on the next orchestrator without starting anything twice.

Exits 0 only if every saga finished and every invariant held; every process it
started is stopped either way. tests/e2e/test_chaos.py calls `main` with a small size.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc

from orchestrator.client import SagaClient
from orchestrator.core.records import TransitionEvent
from orchestrator.store import open_store
from saga.participants.car_rental.v1 import car_rental_pb2, car_rental_pb2_grpc
from saga.participants.common.v1.command_pb2 import ReservationState
from saga.participants.flight.v1 import flight_pb2, flight_pb2_grpc
from saga.participants.hotel.v1 import hotel_pb2, hotel_pb2_grpc
from saga.participants.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from saga.participants.notification.v1 import notification_pb2, notification_pb2_grpc
from saga.participants.payment.v1 import payment_pb2, payment_pb2_grpc
from saga.participants.shipping.v1 import shipping_pb2, shipping_pb2_grpc
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tools.processes import ChildProcess, orchestrator_process, participants_process

TRAVEL = "travel_booking"
ORDER = "order_fulfillment"
FLIGHTS = ("LH400", "BA900", "AF100")
HOTELS = ("berlin-central", "paris-opera", "rome-termini")
CAR_LOCATIONS = ("BER", "CDG", "FCO")
CAR_CLASSES = ("compact", "suv")
SKUS = ("sku-1", "sku-2", "sku-3", "sku-4", "sku-5")
UNSERVED_ADDRESS = "1 Nowhere Road"
"""The shipping participant refuses addresses containing "nowhere"."""

TRAVEL_CAPACITY = 50
"""Seats per flight, rooms per hotel, cars per location and class: scarce in a full run."""
ORDER_CAPACITY = 200
MAX_CHARGE_MINOR = 180_000
TRAVEL_AMOUNTS = (20_000, 200_000)
"""About one travel charge in nine is over the card limit and declined."""
ORDER_AMOUNTS = (1_000, 50_000)

SAGA_PACE_SECONDS = 0.02
KILL_SPACING_SECONDS = 1.5
"""The start phase lasts at least kills x this, so kills spread over it."""
MIN_UPTIME_SECONDS = 0.75
"""A new orchestrator serves at least this long before the next kill."""
CALL_TIMEOUT_SECONDS = 5.0
START_RETRY_SECONDS = 60.0
SLOW_START_SECONDS = 0.25
"""A StartSaga slower than this waited for a restarting orchestrator."""
SERVE_TIMEOUT_SECONDS = 30.0
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
# Reconnect quickly to an orchestrator restarted on the same port.
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]
LEFT_IN_FAILED_SAGA = frozenset(
    {pb.STEP_STATUS_PENDING, pb.STEP_STATUS_FAILED, pb.STEP_STATUS_COMPENSATED}
)
"""Step states a failed-and-compensated saga may hold: nothing done stays done."""
TRAVEL_PARTICIPANTS = ("flight", "hotel", "car_rental", "payment")
ORDER_PARTICIPANTS = ("inventory", "payment", "shipping", "notification")
ACTIVE = ReservationState.Name(ReservationState.RESERVATION_STATE_ACTIVE).removeprefix(
    "RESERVATION_STATE_"
)
SENT = "SENT"
"""The state of a notification, which cannot be undone and has no state field."""


# --- what the run does -----------------------------------------------------------------


@dataclass(frozen=True)
class PlannedSaga:
    """One saga the run starts: its type, input, charged amount and idempotency key."""

    number: int
    saga_type: str
    payload: dict[str, Any]
    amount_minor: int
    key: str


def plan_sagas(count: int, rng: random.Random, run_id: str) -> list[PlannedSaga]:
    """Alternate travel bookings and orders, with random inputs from `rng`."""
    plans = []
    for number in range(count):
        key = f"chaos-{run_id}-{number}"
        if number % 2 == 0:
            amount = rng.randint(*TRAVEL_AMOUNTS)
            payload: dict[str, Any] = {
                "customer_id": f"customer-{number}",
                "traveller_name": f"Traveller {number}",
                "flight_number": rng.choice(FLIGHTS),
                "hotel_id": rng.choice(HOTELS),
                "nights": rng.randint(1, 5),
                "car_location": rng.choice(CAR_LOCATIONS),
                "car_class": rng.choice(CAR_CLASSES),
                "car_days": rng.randint(1, 7),
                "amount": {"currency_code": "EUR", "amount_minor": amount},
            }
            plans.append(PlannedSaga(number, TRAVEL, payload, amount, key))
        else:
            amount = rng.randint(*ORDER_AMOUNTS)
            skus = rng.sample(SKUS, rng.randint(1, 3))
            address = UNSERVED_ADDRESS if rng.random() < 0.05 else f"{number} Main St, Springfield"
            payload = {
                "order_id": f"{run_id}-order-{number}",
                "customer_id": f"customer-{number}",
                "items": [{"sku": sku, "quantity": rng.randint(1, 3)} for sku in skus],
                "shipping_address": address,
                "amount": {"currency_code": "EUR", "amount_minor": amount},
            }
            plans.append(PlannedSaga(number, ORDER, payload, amount, key))
    return plans


def plan_kills(kills: int, window: float, rng: random.Random) -> list[float]:
    """One random moment in each of `kills` equal slices of the window (seconds from start)."""
    slot = window / kills if kills else 0.0
    return [slot * (index + rng.uniform(0.15, 0.85)) for index in range(kills)]


# --- processes -------------------------------------------------------------------------


class Cluster:
    """The participant processes and the orchestrators, one alive at a time, on one port."""

    def __init__(self, workdir: Path, database_url: str, lease_seconds: float) -> None:
        self.workdir = workdir
        self.database_url = database_url
        self.lease_seconds = lease_seconds
        self.participants: list[ChildProcess] = []
        self.orchestrators: list[ChildProcess] = []
        self.addresses: dict[str, str] = {}
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start_participants(self, fail_rate: float, seed: int, latency_ms: int) -> None:
        common = ["--fail-rate", str(fail_rate), "--seed", str(seed)]
        common += ["--latency-ms", str(latency_ms)]
        groups = [
            (["flight", "hotel", "car_rental"], ["--capacity", str(TRAVEL_CAPACITY)]),
            (["payment"], ["--max-charge-minor", str(MAX_CHARGE_MINOR)]),
            (["inventory", "shipping", "notification"], ["--capacity", str(ORDER_CAPACITY)]),
        ]
        for services, options in groups:
            process = participants_process(self.workdir, services, [*options, *common])
            self.participants.append(process)
            process.start()
            self.addresses.update(process.info["services"])

    def start_orchestrator(self) -> ChildProcess:
        """A new orchestrator; after the first, on the first one's port."""
        process = orchestrator_process(
            self.workdir,
            self.database_url,
            self.addresses,
            name=f"orchestrator-{len(self.orchestrators)}",
        )
        process.argv += ["--lease-seconds", str(self.lease_seconds)]
        if self.port:
            process.argv += ["--listen", self.address]
        self.orchestrators.append(process)
        process.start()
        self.port = int(process.address.rsplit(":", 1)[1])
        return process

    def stop(self) -> None:
        """Stop every process ever started here; safe after kills and failed starts."""
        for process in [*reversed(self.orchestrators), *self.participants]:
            try:
                process.stop()
            except Exception as error:  # keep stopping the others
                print(f"chaos: stopping {process.name} failed: {error}", file=sys.stderr)


@dataclass(frozen=True)
class Restart:
    """One kill: when (seconds into the run, and wall time) and how long until served."""

    number: int
    killed_at: float
    killed_wall: datetime
    ready_after: float
    served_after: float


def wait_served(address: str, timeout: float = SERVE_TIMEOUT_SECONDS) -> None:
    """Until the orchestrator answers a GetSaga (NOT_FOUND for an unknown id counts)."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        stub = pb_grpc.SagaOrchestratorStub(channel)
        while True:
            try:
                stub.GetSaga(pb.GetSagaRequest(saga_id=str(uuid.uuid4())), timeout=1.0)
                return
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.NOT_FOUND:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"orchestrator at {address} not serving: {error}") from None
            time.sleep(0.02)


class Killer(threading.Thread):
    """Kills the live orchestrator with SIGKILL at the planned moments and starts the next."""

    def __init__(self, cluster: Cluster, kill_times: Sequence[float], started_at: float) -> None:
        super().__init__(name="chaos-killer", daemon=True)
        self.restarts: list[Restart] = []
        self.error: BaseException | None = None
        self.failed = threading.Event()
        self._cluster = cluster
        self._kill_times = list(kill_times)
        self._started_at = started_at
        self._halt = threading.Event()

    def halt(self) -> None:
        self._halt.set()

    def run(self) -> None:
        served = time.monotonic()
        try:
            for moment in self._kill_times:
                due = max(self._started_at + moment, served + MIN_UPTIME_SECONDS)
                if self._halt.wait(max(0.0, due - time.monotonic())):
                    return
                restart = self._kill_and_restart(len(self.restarts) + 1)
                self.restarts.append(restart)
                served = self._started_at + restart.killed_at + restart.served_after
        except BaseException as error:
            self.error = error
            self.failed.set()

    def _kill_and_restart(self, number: int) -> Restart:
        victim = self._cluster.orchestrators[-1]
        killed = time.monotonic()
        killed_wall = datetime.now(UTC)
        victim.kill()
        self._cluster.start_orchestrator()
        ready = time.monotonic()
        wait_served(self._cluster.address)
        served = time.monotonic()
        return Restart(
            number, killed - self._started_at, killed_wall, ready - killed, served - killed
        )


# --- talking to the orchestrator -------------------------------------------------------


@dataclass
class StartTally:
    """How the starts went: calls that waited for a restarting orchestrator, calls
    retried after failing, and retries that found their saga already stored."""

    waited: int = 0
    retried: int = 0
    found_stored: int = 0


def start_saga(stub: Any, plan: PlannedSaga, tally: StartTally, give_up: threading.Event) -> str:
    """StartSaga with the plan's key, retried on UNAVAILABLE or DEADLINE_EXCEEDED
    (bounded, and not once `give_up` is set: no orchestrator is coming back)."""
    request = pb.StartSagaRequest(
        saga_type=plan.saga_type, correlation_id=plan.key, idempotency_key=plan.key
    )
    request.payload.update(plan.payload)
    began = time.monotonic()
    deadline = began + START_RETRY_SECONDS
    retried = False
    while True:
        try:
            # wait_for_ready: a call made while the orchestrator restarts waits for it.
            reply = stub.StartSaga(request, timeout=CALL_TIMEOUT_SECONDS, wait_for_ready=True)
        except grpc.RpcError as error:
            if error.code() not in RETRYABLE or time.monotonic() > deadline or give_up.is_set():
                raise
            if not retried:
                tally.retried += 1
                retried = True
            time.sleep(0.05)
            continue
        if time.monotonic() - began > SLOW_START_SECONDS:
            tally.waited += 1
        if not reply.created:
            tally.found_stored += 1
        return str(reply.saga_id)


def start_all(
    stub: Any, plans: Sequence[PlannedSaga], pace: float, started_at: float, killer: Killer
) -> tuple[dict[int, str], StartTally]:
    """Start the planned sagas `pace` seconds apart (catching up after a restart)."""
    saga_ids: dict[int, str] = {}
    tally = StartTally()
    for plan in plans:
        delay = started_at + plan.number * pace - time.monotonic()
        if killer.failed.wait(max(0.0, delay)):
            break
        saga_ids[plan.number] = start_saga(stub, plan, tally, killer.failed)
    return saga_ids, tally


def wait_terminal(
    address: str, saga_ids: Iterable[str], within: float
) -> tuple[dict[str, pb.Saga], bool]:
    """Follow every saga on its WatchSaga stream until it is COMPLETED or FAILED, or
    `within` seconds pass. Returns the last answer for each saga and whether all ended."""

    async def follow_all() -> tuple[dict[str, pb.Saga], bool]:
        async with SagaClient(address, CALL_TIMEOUT_SECONDS) as client:
            return await client.wait_all(saga_ids, within)

    return asyncio.run(follow_all())


# --- what the participants hold --------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """One thing a participant made: a booking, a charge, a shipment, a notification."""

    participant: str
    saga_id: str
    key: str
    state: str
    units: int = 1
    amount_minor: int = 0


@dataclass
class ParticipantState:
    records: list[Record] = field(default_factory=list)
    capacity: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Per resource (flight seats, hotel rooms, cars): (total, available), summed."""
    stock: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Per SKU: (total, available)."""
    reserved: Counter[str] = field(default_factory=Counter)
    """Per SKU: units held by ACTIVE inventory reservations."""


def _state(value: int) -> str:
    return ReservationState.Name(value).removeprefix("RESERVATION_STATE_")


def read_participants(addresses: Mapping[str, str]) -> ParticipantState:
    """Every participant's records and inventories, through their read RPCs."""
    state = ParticipantState()

    def call(name: str, stub_type: Any, method: str, request: Any) -> Any:
        with grpc.insecure_channel(addresses[name]) as channel:
            return getattr(stub_type(channel), method)(request, timeout=CALL_TIMEOUT_SECONDS)

    flights = call(
        "flight",
        flight_pb2_grpc.FlightServiceStub,
        "GetFlightInventory",
        flight_pb2.GetFlightInventoryRequest(),
    )
    state.capacity["flight seats"] = (
        sum(f.seats_total for f in flights.flights),
        sum(f.seats_available for f in flights.flights),
    )
    for b in flights.bookings:
        state.records.append(
            Record("flight", b.saga_id, b.idempotency_key, _state(b.state), b.seats)
        )
    hotels = call(
        "hotel",
        hotel_pb2_grpc.HotelServiceStub,
        "GetHotelInventory",
        hotel_pb2.GetHotelInventoryRequest(),
    )
    state.capacity["hotel rooms"] = (
        sum(h.rooms_total for h in hotels.hotels),
        sum(h.rooms_available for h in hotels.hotels),
    )
    for r in hotels.reservations:
        state.records.append(
            Record("hotel", r.saga_id, r.idempotency_key, _state(r.state), r.rooms)
        )
    cars = call(
        "car_rental",
        car_rental_pb2_grpc.CarRentalServiceStub,
        "GetCarInventory",
        car_rental_pb2.GetCarInventoryRequest(),
    )
    state.capacity["cars"] = (
        sum(c.cars_total for c in cars.cars),
        sum(c.cars_available for c in cars.cars),
    )
    for c in cars.rentals:
        state.records.append(Record("car_rental", c.saga_id, c.idempotency_key, _state(c.state)))
    ledger = call(
        "payment",
        payment_pb2_grpc.PaymentServiceStub,
        "GetPaymentLedger",
        payment_pb2.GetPaymentLedgerRequest(),
    )
    for p in ledger.payments:
        state.records.append(
            Record(
                "payment",
                p.saga_id,
                p.idempotency_key,
                _state(p.state),
                amount_minor=p.amount.amount_minor,
            )
        )
    stock = call(
        "inventory",
        inventory_pb2_grpc.InventoryServiceStub,
        "GetInventoryStock",
        inventory_pb2.GetInventoryStockRequest(),
    )
    state.stock = {s.sku: (s.total, s.available) for s in stock.stock}
    for r in stock.reservations:
        state.records.append(Record("inventory", r.saga_id, r.idempotency_key, _state(r.state)))
        if _state(r.state) == ACTIVE:
            for item in r.items:
                state.reserved[item.sku] += item.quantity
    shipments = call(
        "shipping",
        shipping_pb2_grpc.ShippingServiceStub,
        "GetShipments",
        shipping_pb2.GetShipmentsRequest(),
    )
    for s in shipments.shipments:
        state.records.append(Record("shipping", s.saga_id, s.idempotency_key, _state(s.state)))
    notifications = call(
        "notification",
        notification_pb2_grpc.NotificationServiceStub,
        "ListNotifications",
        notification_pb2.ListNotificationsRequest(),
    )
    for n in notifications.notifications:
        state.records.append(Record("notification", n.saga_id, n.idempotency_key, SENT))
    return state


# --- what the orchestrator's log says --------------------------------------------------


@dataclass
class LogAudit:
    """Per saga, what is wrong with its transition log (empty when nothing is)."""

    transitions: int = 0
    problems: dict[str, str] = field(default_factory=dict)


async def audit_transition_logs(database_url: str, saga_ids: Iterable[str]) -> LogAudit:
    """Each log numbered 1..n, one terminal row, no step completed or compensated twice."""
    store = open_store(database_url)
    await store.open()
    audit = LogAudit()
    try:
        for saga_id in saga_ids:
            log = await store.get_transitions(saga_id)
            audit.transitions += len(log)
            events = Counter(t.event for t in log)
            per_step = Counter((t.event, t.step) for t in log)
            terminal = events[TransitionEvent.SAGA_COMPLETED] + events[TransitionEvent.SAGA_FAILED]
            twice = sorted(
                f"{event} {step}"
                for (event, step), count in per_step.items()
                if count > 1
                and event
                in (TransitionEvent.STEP_COMPLETED, TransitionEvent.COMPENSATION_COMPLETED)
            )
            if [t.seq for t in log] != list(range(1, len(log) + 1)):
                audit.problems[saga_id] = "log sequence has gaps or repeats"
            elif terminal != 1:
                audit.problems[saga_id] = f"{terminal} terminal transitions"
            elif twice:
                audit.problems[saga_id] = "twice: " + ", ".join(twice)
    finally:
        await store.close()
    return audit


# --- invariants ------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def _examples(problems: Sequence[str], limit: int = 3) -> str:
    shown = "; ".join(problems[:limit])
    return shown + (f"; ... {len(problems) - limit} more" if len(problems) > limit else "")


def check_invariants(
    plans: Sequence[PlannedSaga],
    saga_ids: Mapping[int, str],
    sagas: Mapping[str, pb.Saga],
    state: ParticipantState,
    audit: LogAudit,
) -> list[Check]:
    """Every invariant of a chaos run, each with the numbers it compared."""
    checks = []
    plan_of = {saga_ids[p.number]: p for p in plans if p.number in saga_ids}
    completed = {i for i, s in sagas.items() if s.status == pb.SAGA_STATUS_COMPLETED}
    failed = {i for i, s in sagas.items() if s.status == pb.SAGA_STATUS_FAILED}
    travel_done = {i for i in completed if plan_of[i].saga_type == TRAVEL}

    checks.append(
        Check(
            "every saga started and finished (COMPLETED or FAILED)",
            len(saga_ids) == len(plans) and len(completed) + len(failed) == len(plans),
            f"{len(plans)} planned, {len(saga_ids)} started, {len(completed)} completed, "
            f"{len(failed)} failed, {len(plans) - len(completed) - len(failed)} unfinished",
        )
    )
    flagged = sorted(i for i, s in sagas.items() if s.needs_intervention)
    checks.append(
        Check("no saga needs an operator", not flagged, f"{len(flagged)} with needs_intervention")
    )
    undone = [
        f"{i[:8]} {step.name}={pb.StepStatus.Name(step.status)}"
        for i in sorted(failed)
        for step in sagas[i].steps
        if step.status not in LEFT_IN_FAILED_SAGA
    ]
    unfinished_steps = [
        f"{i[:8]} {step.name}={pb.StepStatus.Name(step.status)}"
        for i in sorted(completed)
        for step in sagas[i].steps
        if step.status != pb.STEP_STATUS_COMPLETED
    ]
    checks.append(
        Check(
            "failed sagas compensated every step they did; completed ones did every step",
            not undone and not unfinished_steps,
            f"{len(failed)} failed sagas, {len(undone)} steps left done; "
            f"{len(completed)} completed, {len(unfinished_steps)} steps not completed"
            + (f" ({_examples(undone + unfinished_steps)})" if undone or unfinished_steps else ""),
        )
    )

    active_by_participant: dict[str, Counter[str]] = defaultdict(Counter)
    for record in state.records:
        if record.state in (ACTIVE, SENT):
            active_by_participant[record.participant][record.saga_id] += 1
    for resource, participant in (
        ("flight seats", "flight"),
        ("hotel rooms", "hotel"),
        ("cars", "car_rental"),
    ):
        live = [r for r in state.records if r.participant == participant and r.state == ACTIVE]
        total, available = state.capacity[resource]
        held = sum(r.units for r in live)
        checks.append(
            Check(
                f"{resource} taken = ACTIVE records = completed travel sagas",
                len(live) == len(travel_done) and total - available == held,
                f"{total - available} of {total} taken, {len(live)} ACTIVE records holding "
                f"{held}, {len(travel_done)} completed travel sagas",
            )
        )

    wrong = []
    for saga_id, plan in plan_of.items():
        if saga_id not in completed and saga_id not in failed:
            continue
        expected = 1 if saga_id in completed else 0
        names = TRAVEL_PARTICIPANTS if plan.saga_type == TRAVEL else ORDER_PARTICIPANTS
        for name in names:
            count = active_by_participant[name][saga_id]
            if count != expected:
                wrong.append(f"{saga_id[:8]} {name}: {count} live, expected {expected}")
    records_checked = sum(
        len(TRAVEL_PARTICIPANTS if plan.saga_type == TRAVEL else ORDER_PARTICIPANTS)
        for plan in plan_of.values()
    )
    checks.append(
        Check(
            "one live record per participant for each completed saga, none for a failed one",
            not wrong,
            f"{records_checked} (saga, participant) pairs, {len(wrong)} wrong"
            + (f" ({_examples(wrong)})" if wrong else ""),
        )
    )

    payments = [r for r in state.records if r.participant == "payment"]
    charged = sum(r.amount_minor for r in payments)
    refunded = sum(r.amount_minor for r in payments if r.state != ACTIVE)
    owed = sum(plan_of[i].amount_minor for i in completed)
    checks.append(
        Check(
            "charges - refunds = amounts of the completed sagas",
            charged - refunded == owed,
            f"charged {_money(charged)} in {len(payments)} charges, refunded {_money(refunded)}, "
            f"net {_money(charged - refunded)}; completed sagas owe {_money(owed)}",
        )
    )

    keys = Counter((r.participant, r.key) for r in state.records)
    repeated = sorted(f"{p} {k}" for (p, k), n in keys.items() if n > 1)
    strangers = sorted(
        f"{r.participant} {r.key}"
        for r in state.records
        if r.saga_id not in plan_of or not r.key.startswith(f"{r.saga_id}:")
    )
    checks.append(
        Check(
            "at most one record per idempotency key, each made by a saga of this run",
            not repeated and not strangers,
            f"{len(state.records)} records, {len(repeated)} keys repeated, "
            f"{len(strangers)} from elsewhere"
            + (f" ({_examples(repeated + strangers)})" if repeated or strangers else ""),
        )
    )

    off = [
        f"{sku}: {available} available, {total} - {state.reserved[sku]} expected"
        for sku, (total, available) in sorted(state.stock.items())
        if available != total - state.reserved[sku]
    ]
    checks.append(
        Check(
            "inventory stock = total - ACTIVE reservations, per SKU",
            not off,
            f"{len(state.stock)} SKUs, {sum(state.reserved.values())} units reserved, "
            f"{len(off)} off" + (f" ({_examples(off)})" if off else ""),
        )
    )

    checks.append(
        Check(
            "transition logs: numbered 1..n, one terminal row, no step done or undone twice",
            not audit.problems,
            f"{audit.transitions} transitions of {len(sagas)} sagas, "
            f"{len(audit.problems)} sagas wrong"
            + (
                f" ({_examples([f'{i[:8]}: {p}' for i, p in audit.problems.items()])})"
                if audit.problems
                else ""
            ),
        )
    )
    return checks


def _money(minor: int) -> str:
    return f"{minor / 100:,.2f} EUR"


def _wall(timestamp: Any) -> datetime:
    value: datetime = timestamp.ToDatetime(tzinfo=UTC)
    return value


def in_flight_at(moment: datetime, sagas: Iterable[pb.Saga]) -> int:
    """How many sagas had started and not yet finished at `moment`."""
    return sum(1 for s in sagas if _wall(s.create_time) <= moment < _wall(s.update_time))


# --- the run ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.chaos",
        description="Run sagas of both example types while killing the orchestrator with "
        "SIGKILL at random moments; check and print the invariants afterwards.",
    )
    parser.add_argument("--sagas", type=int, default=300, help="sagas to start (default 300)")
    parser.add_argument("--kills", type=int, default=5, help="SIGKILLs (default 5)")
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the inputs, the kill moments and the injected failures (default: "
        "random); saga ids are random, so which actions fail still varies between runs",
    )
    parser.add_argument(
        "--database",
        default=None,
        help="store URL, postgresql://... (its schema must exist) or sqlite:///...; "
        "default a fresh SQLite file in the work directory",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where logs and participants' state go (a run-<id> directory inside); "
        "default a temporary directory, removed after a run whose checks all hold",
    )
    parser.add_argument(
        "--fail-rate",
        type=float,
        default=0.05,
        help="probability that a participant rejects an action (default 0.05)",
    )
    parser.add_argument(
        "--latency-ms", type=int, default=50, help="participant latency per action (default 50)"
    )
    parser.add_argument(
        "--lease-seconds",
        type=float,
        default=3.0,
        help="orchestrator lease; a dead one's sagas resume after it (default 3)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=120.0,
        help="seconds to wait after the last kill for every saga to finish (default 120)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.sagas < 1 or args.kills < 0:
        print("chaos: --sagas must be at least 1 and --kills not negative", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1_000_000)
    rng = random.Random(seed)
    run_id = uuid.UUID(int=rng.getrandbits(128)).hex[:8]
    temporary = args.workdir is None
    root = Path(tempfile.mkdtemp(prefix="saga-chaos-")) if temporary else args.workdir
    workdir = root / f"run-{run_id}"
    workdir.mkdir(parents=True, exist_ok=False)
    database_url = args.database or f"sqlite:///{(workdir / 'saga.sqlite3').resolve()}"
    plans = plan_sagas(args.sagas, rng, run_id)
    window = max(args.sagas * SAGA_PACE_SECONDS, args.kills * KILL_SPACING_SECONDS)
    kill_times = plan_kills(args.kills, window, rng)
    counts = Counter(plan.saga_type for plan in plans)
    print(
        f"chaos: {args.sagas} sagas ({counts[TRAVEL]} {TRAVEL}, {counts[ORDER]} {ORDER}), "
        f"{args.kills} kills, seed {seed}, fail rate {args.fail_rate}, "
        f"latency {args.latency_ms} ms, lease {args.lease_seconds:g}s"
    )
    print(f"chaos: store {database_url.split('@')[-1]}; logs and state in {workdir}")

    cluster = Cluster(workdir, database_url, args.lease_seconds)
    killer: Killer | None = None
    passed = False
    try:
        cluster.start_participants(args.fail_rate, seed, args.latency_ms)
        cluster.start_orchestrator()
        with grpc.insecure_channel(cluster.address, options=CHANNEL_OPTIONS) as channel:
            stub = pb_grpc.SagaOrchestratorStub(channel)
            started_at = time.monotonic()
            killer = Killer(cluster, kill_times, started_at)
            killer.start()
            saga_ids, tally = start_all(stub, plans, window / args.sagas, started_at, killer)
            start_phase = time.monotonic() - started_at
            killer.join()
            if killer.error is not None:
                raise RuntimeError(f"killing and restarting failed: {killer.error}")
            drain_from = (
                started_at + killer.restarts[-1].killed_at if killer.restarts else time.monotonic()
            )
            sagas, finished = wait_terminal(cluster.address, saga_ids.values(), args.drain_timeout)
            drained = time.monotonic() - drain_from
        state = read_participants(cluster.addresses)
        audit = asyncio.run(audit_transition_logs(database_url, saga_ids.values()))

        print(
            f"\nstarted {len(saga_ids)} sagas in {start_phase:.1f}s: {tally.waited} StartSaga "
            f"calls waited for a restarting orchestrator, {tally.retried} failed and were "
            f"retried, {tally.found_stored} found their saga already stored (created=false)"
        )
        for restart in killer.restarts:
            print(
                f"  kill {restart.number} at +{restart.killed_at:.2f}s: "
                f"{in_flight_at(restart.killed_wall, sagas.values())} sagas in flight; "
                f"new orchestrator ready after {restart.ready_after:.2f}s, "
                f"served again after {restart.served_after:.2f}s"
            )
        if killer.restarts:
            served = [r.served_after for r in killer.restarts]
            print(
                f"  restart until served again: mean {sum(served) / len(served):.2f}s, "
                f"max {max(served):.2f}s"
            )
        drain_label = "after the last kill" if killer.restarts else "after the last start"
        outcome = "every saga finished" if finished else "NOT every saga finished"
        print(f"  {outcome} {drained:.1f}s {drain_label}")
        statuses = Counter(
            (plan.saga_type, sagas[saga_ids[plan.number]].status)
            for plan in plans
            if plan.number in saga_ids and saga_ids[plan.number] in sagas
        )
        for saga_type in (TRAVEL, ORDER):
            print(
                f"  {saga_type}: {statuses[(saga_type, pb.SAGA_STATUS_COMPLETED)]} completed, "
                f"{statuses[(saga_type, pb.SAGA_STATUS_FAILED)]} failed and compensated"
            )

        checks = check_invariants(plans, saga_ids, sagas, state, audit)
        print("\ninvariants:")
        for check in checks:
            print(f"  {'ok  ' if check.ok else 'FAIL'}  {check.name}: {check.detail}")
        passed = all(check.ok for check in checks)
        held = sum(check.ok for check in checks)
        print(f"\nchaos: {held} of {len(checks)} invariants hold" + ("" if passed else " - FAILED"))
        return 0 if passed else 1
    except Exception as error:
        print(f"\nchaos: run failed: {type(error).__name__}: {error}", file=sys.stderr)
        for process in [*cluster.orchestrators[-1:], *cluster.participants]:
            print(f"--- {process.name} log tail:\n{process.log_tail(15)}", file=sys.stderr)
        return 1
    finally:
        if killer is not None:
            killer.halt()
            killer.join(SERVE_TIMEOUT_SECONDS + 10)
        cluster.stop()
        if temporary and passed:
            shutil.rmtree(root, ignore_errors=True)
        elif not passed:
            print(f"chaos: logs and state kept in {workdir}")


if __name__ == "__main__":
    sys.exit(main())
