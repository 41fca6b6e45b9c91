"""Starting a saga over the API and answering its id: one way for every suite.

`start_saga` takes an async stub, `start_saga_at` opens (and closes) a channel to an
address for one start, `start_saga_blocking` takes a blocking stub (the web tests).
"""

from __future__ import annotations

from typing import Any

import grpc

from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.support.payloads import struct

TRAVEL_BOOKING = "travel_booking"


def start_request(
    payload: dict[str, Any],
    correlation_id: str,
    *,
    saga_type: str = TRAVEL_BOOKING,
    idempotency_key: str = "",
) -> pb.StartSagaRequest:
    """A StartSaga request for `payload` (a dict, sent as a Struct)."""
    return pb.StartSagaRequest(
        saga_type=saga_type,
        correlation_id=correlation_id,
        payload=struct(payload),
        idempotency_key=idempotency_key,
    )


async def start_saga(
    stub: pb_grpc.SagaOrchestratorStub,
    payload: dict[str, Any],
    correlation_id: str,
    *,
    saga_type: str = TRAVEL_BOOKING,
    idempotency_key: str = "",
    timeout: float = 10.0,
) -> str:
    """StartSaga through an async stub; the saga's id."""
    reply = await stub.StartSaga(
        start_request(
            payload, correlation_id, saga_type=saga_type, idempotency_key=idempotency_key
        ),
        timeout=timeout,
    )
    return str(reply.saga_id)


async def start_saga_at(
    address: str,
    payload: dict[str, Any],
    correlation_id: str,
    *,
    saga_type: str = TRAVEL_BOOKING,
    idempotency_key: str = "",
    timeout: float = 10.0,
) -> str:
    """StartSaga on a channel of its own to `address`; the saga's id."""
    async with grpc.aio.insecure_channel(address) as channel:
        return await start_saga(
            pb_grpc.SagaOrchestratorStub(channel),
            payload,
            correlation_id,
            saga_type=saga_type,
            idempotency_key=idempotency_key,
            timeout=timeout,
        )


def start_saga_blocking(
    stub: pb_grpc.SagaOrchestratorStub,
    payload: dict[str, Any],
    correlation_id: str,
    *,
    saga_type: str = TRAVEL_BOOKING,
    timeout: float = 10.0,
) -> str:
    """StartSaga through a blocking stub; the saga's id."""
    reply = stub.StartSaga(
        start_request(payload, correlation_id, saga_type=saga_type), timeout=timeout
    )
    return str(reply.saga_id)
