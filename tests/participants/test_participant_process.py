"""The participants process: ready file, health, reflection, graceful stop, restart on
the same state, CLI errors, and the in-process server factory."""

from __future__ import annotations

import subprocess
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from participants.common.config import ALL_SERVICES, ParticipantConfig
from participants.common.server import build_example_server
from participants.registry import SERVICES
from saga.participants.flight.v1 import flight_pb2, flight_pb2_grpc
from tests.participants.harness import (
    ACTIVE,
    FLIGHT,
    REPO_ROOT,
    RPC_TIMEOUT_S,
    command,
    new_saga,
    participant_env,
)

FLIGHT_SERVICE = "saga.participants.flight.v1.FlightService"
PAYMENT_SERVICE = "saga.participants.payment.v1.PaymentService"


@pytest.mark.e2e
def test_ready_file_and_stdout_announce_the_address_of_each_service(launch):
    participants = launch("--services", "flight,payment")

    address = participants.address
    assert address.startswith("127.0.0.1:") and not address.endswith(":0")
    assert participants.ready == {
        "address": address,
        "services": {"flight": address, "payment": address},
        "pid": participants.process.pid,
    }
    assert participants.stdout_path.read_text() == (
        f"participants listening on {address} (flight, payment)\n"
    )


@pytest.mark.e2e
def test_health_reports_serving_for_the_server_and_each_hosted_service(launch):
    participants = launch("--services", "flight,payment")
    with grpc.insecure_channel(participants.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)

        statuses = {
            service: health.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=RPC_TIMEOUT_S
            ).status
            for service in ("", FLIGHT_SERVICE, PAYMENT_SERVICE)
        }
        with pytest.raises(grpc.RpcError) as not_hosted:
            health.Check(
                health_pb2.HealthCheckRequest(service="saga.participants.hotel.v1.HotelService"),
                timeout=RPC_TIMEOUT_S,
            )

    assert set(statuses.values()) == {health_pb2.HealthCheckResponse.SERVING}
    assert not_hosted.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.e2e
def test_reflection_lists_the_hosted_services(participants):
    with grpc.insecure_channel(participants.address) as channel:
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        [answer] = reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
            timeout=RPC_TIMEOUT_S,
        )

    listed = {service.name for service in answer.list_services_response.service}
    assert {FLIGHT_SERVICE, PAYMENT_SERVICE, "grpc.health.v1.Health"} <= listed
    assert len([name for name in listed if name.startswith("saga.participants.")]) == len(
        ALL_SERVICES
    )


@pytest.mark.e2e
def test_state_survives_a_graceful_restart_and_is_not_reseeded(launch, tmp_path):
    state_dir = tmp_path / "kept-state"
    first = launch("--services", "flight", "--capacity", "5", state_dir=state_dir)
    ctx = command(new_saga(), "book")
    with grpc.insecure_channel(first.address) as channel:
        booked = FLIGHT.act(FLIGHT.stub(channel), ctx, "a")
    assert first.stop() == 0
    assert not first.ready_file.exists()

    second = launch("--services", "flight", "--capacity", "50", state_dir=state_dir)
    with grpc.insecure_channel(second.address) as channel:
        stub = FLIGHT.stub(channel)
        repeat = FLIGHT.act(stub, ctx, "a")
        inventory = stub.GetFlightInventory(
            flight_pb2.GetFlightInventoryRequest(), timeout=RPC_TIMEOUT_S
        )

    assert repeat == booked
    lh400 = next(f for f in inventory.flights if f.flight_number == "LH400")
    assert (lh400.seats_available, lh400.seats_total) == (4, 5)
    assert [(b.booking_id, b.state) for b in inventory.bookings] == [(booked.booking_id, ACTIVE)]
    assert (state_dir / "flight.sqlite3").exists()


@pytest.mark.e2e
@pytest.mark.parametrize(
    "args",
    [
        pytest.param([], id="no-state-dir"),
        pytest.param(["--state-dir", "x", "--services", "flight,spaceship"], id="unknown-service"),
        pytest.param(["--state-dir", "x", "--fail-rate", "1.5"], id="bad-fail-rate"),
    ],
)
def test_bad_command_line_is_a_usage_error(args, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "participants", *args],
        cwd=tmp_path,
        env=participant_env(PYTHONPATH=str(REPO_ROOT)),
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 2
    assert "usage: participants" in result.stderr


@pytest.mark.e2e
def test_saga_participants_is_the_participants_command_through_its_entry_point(tmp_path):
    """`saga participants ...` runs `python -m participants ...`: the orchestrator's CLI
    finds it through the saga.commands entry point, and does not import it itself."""
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "participants", "--services", "spaceship"],
        cwd=tmp_path,
        env=participant_env(PYTHONPATH=str(REPO_ROOT), SAGA_PARTICIPANT_STATE_DIR="x"),
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 2, result.stderr
    assert "usage: participants" in result.stderr
    assert "unknown service(s) spaceship" in result.stderr
    script = (
        "import orchestrator.cli, sys\n"
        "print(sorted(m for m in sys.modules"
        " if m.startswith('participants.') and not m.startswith('participants.kit')))"
    )
    imported = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=30
    )
    assert imported.stdout.strip() == "[]"


@pytest.mark.e2e
def test_unknown_failpoint_is_a_usage_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "participants", "--state-dir", str(tmp_path)],
        cwd=REPO_ROOT,
        env=participant_env(SAGA_PARTICIPANT_FAILPOINT="before_everything"),
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 2
    assert "unknown failpoint" in result.stderr


@pytest.mark.integration
async def test_build_example_server_serves_in_process_on_a_free_port(tmp_path):
    config = ParticipantConfig(state_dir=tmp_path, services=("flight",), capacity=3)
    server, port = await build_example_server(config)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = flight_pb2_grpc.FlightServiceStub(channel)
            booked = await stub.BookFlight(
                flight_pb2.BookFlightRequest(
                    context=command(new_saga(), "book"),
                    flight_number="AF100",
                    passenger_name="Ada",
                    seats=3,
                ),
                timeout=RPC_TIMEOUT_S,
            )
            inventory = await stub.GetFlightInventory(
                flight_pb2.GetFlightInventoryRequest(), timeout=RPC_TIMEOUT_S
            )
    finally:
        await server.stop(None)

    assert port > 0
    assert booked.seats == 3
    af100 = next(f for f in inventory.flights if f.flight_number == "AF100")
    assert af100.seats_available == 0


@pytest.mark.unit
def test_registry_hosts_exactly_the_configured_service_names():
    assert tuple(SERVICES) == ALL_SERVICES
    assert all(spec.full_name.startswith("saga.participants.") for spec in SERVICES.values())
