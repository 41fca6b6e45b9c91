"""Starting many sagas: what one of them is (`SagaToStart`) and how a list of start
requests is cut into StartSagas calls the server accepts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from saga.v1 import orchestrator_pb2 as pb

START_BATCH_SIZE = 500
"""Requests `start_many` sends in one StartSagas call: the server's default limit."""
START_BATCH_BYTES = 3 * 1024 * 1024
"""A StartSagas request is closed before its encoding passes this, below the 4 MiB
message size a server with the default limits accepts."""


@dataclass(frozen=True, slots=True)
class SagaToStart:
    """One saga for `start_many`: its typed input (its saga type found from the catalogue
    unless given), or its input as JSON-like data with `saga_type`."""

    saga_input: Message | Mapping[str, Any]
    correlation_id: str
    idempotency_key: str = ""
    saga_type: str | None = None


def start_batches(
    requests: Iterable[pb.StartSagaRequest],
    size: int = START_BATCH_SIZE,
    max_bytes: int = START_BATCH_BYTES,
) -> Iterable[list[pb.StartSagaRequest]]:
    """`requests` in StartSagas batches of at most `size` requests and about `max_bytes`
    encoded (a request bigger than that alone goes in a batch of its own), in order."""
    batch: list[pb.StartSagaRequest] = []
    used = 0
    for request in requests:
        cost = request.ByteSize() + 8  # a repeated field's tag and length prefix
        if batch and (len(batch) >= size or used + cost > max_bytes):
            yield batch
            batch, used = [], 0
        batch.append(request)
        used += cost
    if batch:
        yield batch
