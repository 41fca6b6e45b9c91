"""The client's public face: the names `orchestrator.client` exports (pinned, as
Temporal's tests/test_client_exports.py pins its own), and the blocking client as the
async one's twin, method for method and parameter for parameter."""

from __future__ import annotations

import importlib
import inspect

import pytest

import orchestrator.client
from orchestrator.client import SagaClient, SagaHandle, SyncSagaClient, SyncSagaHandle

pytestmark = pytest.mark.unit

CLIENT_EXPORTS = [
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

ASYNC_ONLY = {
    "over": "it wraps a grpc.aio stub the caller opened on the caller's own event loop; "
    "the blocking client owns its loop and opens its own channel there",
}
"""SagaClient's public methods with no blocking twin, and why."""


def test_the_client_package_exports_exactly_its_public_face():
    assert orchestrator.client.__all__ == CLIENT_EXPORTS


@pytest.mark.parametrize("name", CLIENT_EXPORTS)
def test_each_exported_name_is_importable(name):
    module = importlib.import_module("orchestrator.client")
    assert getattr(module, name) is not None
    exec(f"from orchestrator.client import {name}", {})


def public_methods(kind: type) -> dict[str, list[str]]:
    """Each public method (coroutine, async generator, plain or class method) of `kind`,
    its own or inherited, with its parameter names after self/cls."""
    methods = {}
    for name, member in inspect.getmembers(kind):
        if name.startswith("_") or not callable(member) or inspect.isclass(member):
            continue
        parameters = list(inspect.signature(member).parameters)
        bound = inspect.ismethod(member)  # a classmethod, already bound to the class
        methods[name] = parameters if bound else parameters[1:]
    return methods


@pytest.mark.parametrize(
    ("async_kind", "sync_kind"),
    [(SagaClient, SyncSagaClient), (SagaHandle, SyncSagaHandle)],
    ids=["client", "handle"],
)
def test_every_async_method_has_a_blocking_twin_with_the_same_parameters(async_kind, sync_kind):
    async_methods = public_methods(async_kind)
    sync_methods = public_methods(sync_kind)
    missing = sorted(set(async_methods) - set(sync_methods) - set(ASYNC_ONLY))
    assert not missing, f"{sync_kind.__name__} lacks {missing}: write their blocking twins"
    differ = {
        name: (async_methods[name], sync_methods[name])
        for name in async_methods.keys() & sync_methods.keys()
        if async_methods[name] != sync_methods[name]
    }
    assert not differ, f"twins whose parameters differ (async, sync): {differ}"


def test_the_async_only_methods_are_still_there():
    # An entry left behind after a method was renamed or removed would excuse nothing.
    assert set(ASYNC_ONLY) <= set(public_methods(SagaClient))


def test_the_parity_check_sees_coroutines_generators_and_properties():
    methods = public_methods(SagaClient)
    assert inspect.iscoroutinefunction(SagaClient.start) and "start" in methods
    assert inspect.isasyncgenfunction(SagaClient.list_sagas) and "list_sagas" in methods
    assert methods["list_sagas"] == ["page_size", "view", "filters"]
    assert inspect.isasyncgenfunction(SagaClient.watch) and "watch" in methods
