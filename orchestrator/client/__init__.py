"""The client applications import: start, wait for, list and steer sagas over gRPC.

May import `orchestrator.core` (limits), `orchestrator.security` (TLS) and the
generated stubs; never the engine, the store, the API side or the CLI.
"""

from orchestrator.client.async_client import (
    CLIENT_TIMEOUT_SECONDS,
    START_BATCH_SIZE,
    TERMINAL_SAGA_STATUSES,
    WATCH_RECONNECT_SECONDS,
    SagaClient,
    SagaHandle,
    SagaToStart,
    output_of,
    start_batches,
    unpack_output,
)
from orchestrator.client.errors import (
    ClientError,
    Conflict,
    DeadlineExceeded,
    InvalidRequest,
    NotFound,
    SagaFailed,
    StreamLost,
    Unavailable,
)
from orchestrator.client.sync_client import SyncSagaClient, SyncSagaHandle

__all__ = [
    "CLIENT_TIMEOUT_SECONDS",
    "START_BATCH_SIZE",
    "TERMINAL_SAGA_STATUSES",
    "WATCH_RECONNECT_SECONDS",
    "ClientError",
    "Conflict",
    "DeadlineExceeded",
    "InvalidRequest",
    "NotFound",
    "SagaClient",
    "SagaFailed",
    "SagaHandle",
    "SagaToStart",
    "StreamLost",
    "SyncSagaClient",
    "SyncSagaHandle",
    "Unavailable",
    "output_of",
    "start_batches",
    "unpack_output",
]
