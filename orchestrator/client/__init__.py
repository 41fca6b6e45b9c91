"""The client applications import: start, wait for, list and steer sagas over gRPC.

The public face is this package's `__all__` (pinned by tests/unit/test_client_surface.py);
the modules behind it are the client's own: `async_client` (SagaClient), `sync_client`
(its blocking twin), `handle` (SagaHandle and reading outputs), `listing` (filters and
pages), `bulk` (bulk operator actions), `batches` (starting many), `watching` (GetSaga
and the WatchSaga stream), `connection` (the channel, deadlines, reconnecting), `errors`.

May import `orchestrator.core` (limits, timestamps), `orchestrator.security` (TLS) and
the generated stubs; never the engine, the store, the API side or the CLI.
"""

from orchestrator.client.async_client import SagaClient
from orchestrator.client.batches import START_BATCH_SIZE, SagaToStart, start_batches
from orchestrator.client.bulk import BulkFilters, BulkPage
from orchestrator.client.connection import CLIENT_TIMEOUT_SECONDS, WATCH_RECONNECT_SECONDS
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
from orchestrator.client.handle import SagaHandle, output_of, unpack_output
from orchestrator.client.listing import SagaFilters, SagaPage
from orchestrator.client.sync_client import SyncSagaClient, SyncSagaHandle
from orchestrator.client.watching import TERMINAL_SAGA_STATUSES

__all__ = [
    "CLIENT_TIMEOUT_SECONDS",
    "START_BATCH_SIZE",
    "TERMINAL_SAGA_STATUSES",
    "WATCH_RECONNECT_SECONDS",
    "BulkFilters",
    "BulkPage",
    "ClientError",
    "Conflict",
    "DeadlineExceeded",
    "InvalidRequest",
    "NotFound",
    "SagaClient",
    "SagaFailed",
    "SagaFilters",
    "SagaHandle",
    "SagaPage",
    "SagaToStart",
    "StreamLost",
    "SyncSagaClient",
    "SyncSagaHandle",
    "Unavailable",
    "output_of",
    "start_batches",
    "unpack_output",
]
