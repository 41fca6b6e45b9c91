"""What mypy (strict, as `make lint` runs it) makes of code using the client: a handle
started with an output type gives that type from `result()`, the same for `execute`
and the blocking client, an untyped handle gives a Message, and the listing's filters
are keywords it checks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mypy import api

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

OUTPUT = "saga.examples.v1.outputs_pb2.TravelBookingOutput"
USER_CODE = f"""\
from orchestrator.client import SagaClient, SyncSagaClient
from saga.examples.v1.inputs_pb2 import TravelBookingInput
from saga.examples.v1.outputs_pb2 import TravelBookingOutput
from saga.v1 import orchestrator_pb2 as pb


async def user(client: SagaClient, trip: TravelBookingInput) -> None:
    typed = await client.start(trip, correlation_id="t", output_type=TravelBookingOutput)
    reveal_type(typed)  # expect: orchestrator.client.handle.SagaHandle[{OUTPUT}]
    reveal_type(await typed.result(timeout=5))  # expect: {OUTPUT}
    booked = await client.execute(trip, correlation_id="t", output_type=TravelBookingOutput)
    reveal_type(booked)  # expect: {OUTPUT}
    reveal_type(await client.handle("id", TravelBookingOutput).result())  # expect: {OUTPUT}
    untyped = await client.start(trip, correlation_id="t")
    reveal_type(await untyped.result())  # expect: google.protobuf.message.Message
    async for saga in client.list_sagas(status=pb.SAGA_STATUS_RUNNING, saga_type="x"):
        reveal_type(saga)  # expect: saga.v1.orchestrator_pb2.Saga
    reveal_type((await client.list_saga_page(page_size=10)).next_page_token)  # expect: str
    client.list_sagas(stauts=1)  # expect: error: Unexpected keyword argument "stauts"


def blocking(client: SyncSagaClient, trip: TravelBookingInput) -> None:
    typed = client.start(trip, correlation_id="t", output_type=TravelBookingOutput)
    reveal_type(typed.result())  # expect: {OUTPUT}
    for saga in client.list_sagas(needs_intervention=True):
        reveal_type(saga)  # expect: saga.v1.orchestrator_pb2.Saga
"""


def expectations() -> dict[int, str]:
    """Line number to what mypy says there: a revealed type, or the start of an error."""
    return {
        number: expected
        for number, line in enumerate(USER_CODE.splitlines(), start=1)
        if (expected := line.partition("  # expect: ")[2])
    }


def mypy_says(report: str) -> dict[int, list[str]]:
    said: dict[int, list[str]] = {}
    for number, kind, message in re.findall(r"user_code\.py:(\d+): (\w+): (.*)", report):
        revealed = re.fullmatch(r'Revealed type is "(.*)"', message)
        said.setdefault(int(number), []).append(
            revealed.group(1) if revealed else f"{kind}: {message}"
        )
    return said


@pytest.mark.slow
def test_mypy_types_the_client_as_the_user_declared(tmp_path):
    module = tmp_path / "user_code.py"
    module.write_text(USER_CODE)
    report, errors, _ = api.run(
        [
            "--no-error-summary",
            "--cache-dir",
            str(ROOT / ".mypy_cache"),
            "--config-file",
            str(ROOT / "pyproject.toml"),
            str(module),
        ]
    )
    assert not errors, errors
    said = mypy_says(report)
    for number, expected in expectations().items():
        assert any(message.startswith(expected) for message in said.get(number, [])), (
            f"line {number}: expected {expected}\n{report}"
        )
    surprises = [
        (number, message)
        for number, messages in said.items()
        for message in messages
        if number not in expectations() and not message.startswith("note:")
    ]
    assert not surprises, report
