"""What generic tools and people at a shell see: reflection, health, the `saga` CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import grpc
import pytest
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from tests.e2e.conftest import wait_terminal
from tests.support.payloads import travel

pytestmark = pytest.mark.e2e


def saga_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_reflection_alone_is_enough_to_start_a_saga(orchestrator):
    """Like grpcurl: discover the API by reflection, build messages dynamically, call."""
    with grpc.insecure_channel(orchestrator.address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert {"saga.v1.SagaOrchestrator", "saga.v1.SagaEvents", "grpc.health.v1.Health"} <= (
            services
        )
        pool = descriptor_pool.DescriptorPool(database)
        service = pool.FindServiceByName("saga.v1.SagaOrchestrator")
        method = service.methods_by_name["StartSaga"]
        request_type = message_factory.GetMessageClass(method.input_type)
        response_type = message_factory.GetMessageClass(method.output_type)
        request = json_format.ParseDict(
            {"saga_type": "travel_booking", "correlation_id": "refl-1", "payload": travel()},
            request_type(),
        )
        call = channel.unary_unary(
            "/saga.v1.SagaOrchestrator/StartSaga",
            request_serializer=request_type.SerializeToString,
            response_deserializer=response_type.FromString,
        )
        reply = call(request, timeout=5)
    assert json_format.MessageToDict(reply)["status"] == "SAGA_STATUS_RUNNING"


async def test_cli_starts_and_shows_a_saga(orchestrator, stub):
    started = saga_cli(
        "start",
        "travel_booking",
        "--address",
        orchestrator.address,
        "--correlation-id",
        "cli-1",
        "--payload",
        json.dumps(travel()),
        "--json",
    )
    assert started.returncode == 0, started.stderr
    saga_id = json.loads(started.stdout)["saga_id"]
    await wait_terminal(stub, saga_id)

    shown = saga_cli("get", saga_id, "--address", orchestrator.address, "--json")

    assert shown.returncode == 0, shown.stderr
    saga = json.loads(shown.stdout)
    assert saga["status"] == "SAGA_STATUS_COMPLETED"
    assert [s["name"] for s in saga["steps"]] == [
        "book_flight",
        "book_hotel",
        "rent_car",
        "charge_payment",
    ]


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["start", "travel_booking", "--correlation-id", "x", "--payload", "{nope"], 2, "JSON"),
        (["start", "travel_booking", "--correlation-id", "x", "--payload", "{}"], 1, "INVALID"),
        (["get", "00000000-0000-4000-8000-000000000000"], 1, "NOT_FOUND"),
    ],
)
def test_cli_reports_mistakes_without_a_traceback(orchestrator, args, code, words):
    result = saga_cli(*args[:1], "--address", orchestrator.address, *args[1:])
    assert result.returncode == code
    assert words in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_to_start_without_participant_addresses(tmp_path):
    result = saga_cli(
        "serve", "--database", f"sqlite:///{tmp_path / 's.db'}", "--listen", "127.0.0.1:0"
    )
    assert result.returncode == 2
    assert "no address configured for participant" in result.stderr
    assert "Traceback" not in result.stderr
