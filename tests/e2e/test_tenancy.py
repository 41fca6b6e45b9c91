"""Tenancy from outside: callers bound to namespaces by the auth file, tried against a
real orchestrator (tokens over gRPC on 127.0.0.1) on SQLite and on PostgreSQL.

The table test enumerates caller, saga's namespace, namespace the request names and RPC
for every read and operator RPC: a saga in a namespace the caller may not use is
NOT_FOUND exactly as a saga that does not exist (same code, same message but for the
id), naming a namespace the caller may not use is PERMISSION_DENIED, an invalid name is
INVALID_ARGUMENT, and a saga within reach answers what a caller spanning every
namespace gets. Then starts and listings, idempotency keys and lock keys per namespace.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from orchestrator.client import NotFound, SagaClient, SyncSagaClient
from orchestrator.security.auth import token_digest
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from tests.support.payloads import struct, travel
from tools.certs import new_token
from tools.processes import ChildProcess, orchestrator_process, participants_process

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
OK = grpc.StatusCode.OK
NOT_FOUND = grpc.StatusCode.NOT_FOUND
DENIED = grpc.StatusCode.PERMISSION_DENIED
INVALID = grpc.StatusCode.INVALID_ARGUMENT
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
ALL = None
LATENCY_MS = 1500
"""Each participant action takes this long: a saga holds its lock keys for seconds."""


@dataclasses.dataclass(frozen=True)
class Caller:
    roles: tuple[str, ...]
    namespaces: tuple[str, ...] | None
    """None: "*", every namespace; () leaves the key out of the auth file (default)."""

    def may_use(self, namespace: str) -> bool:
        if self.namespaces is None:
            return True
        return namespace in (self.namespaces or ("default",))


CALLERS = {
    "alpha-client": Caller(("client",), ("alpha",)),
    "beta-client": Caller(("client",), ("beta",)),
    "default-client": Caller(("client",), ()),
    "two-client": Caller(("client",), ("alpha", "beta")),
    "alpha-operator": Caller(("operator",), ("alpha",)),
    "every-operator": Caller(("operator",), ALL),
    "beta-reader": Caller(("reader",), ("beta",)),
    "every-reader": Caller(("reader",), ALL),
}
TOKENS = {name: new_token() for name in CALLERS}
READ_ROLES = {"client", "operator", "reader"}
SAGA_RPCS: dict[str, set[str]] = {
    "GetSaga": READ_ROLES,
    "GetSagaHistory": READ_ROLES,
    "WatchSaga": READ_ROLES,
    "AbortSaga": {"operator"},
    "RetrySaga": {"operator"},
    "ResolveStep": {"operator"},
    "BreakLock": {"operator"},
}
"""Every RPC that names one saga, and the roles that may call it."""
NAMED = ("", "alpha", "beta", "gamma", "Not_A-Namespace")
"""What a request names: nothing, a namespace each, one nobody may use, an invalid one."""


def auth_file_text() -> str:
    entries = []
    for name, caller in CALLERS.items():
        entry = (
            f'[[caller]]\nname = "{name}"\nroles = {list(caller.roles)!r}\n'
            f'token_sha256 = "{token_digest(TOKENS[name])}"\n'
        ).replace("'", '"')
        if caller.namespaces is None:
            entry += 'namespaces = "*"\n'
        elif caller.namespaces:
            entry += f"namespaces = {list(caller.namespaces)!r}\n".replace("'", '"')
        entries.append(entry)
    return "\n".join(entries)


@pytest.fixture(scope="module")
def slow_participants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChildProcess]:
    process = participants_process(
        tmp_path_factory.mktemp("participants"),
        ("flight", "hotel"),
        ["--latency-ms", str(LATENCY_MS), "--capacity", "1000"],
    )
    try:
        yield process.start()
    finally:
        process.stop()


@pytest.fixture
def tenant_orchestrator(
    tmp_path: Path, database_url: str, slow_participants: ChildProcess
) -> Iterator[ChildProcess]:
    auth_file = tmp_path / "auth.toml"
    auth_file.write_text(auth_file_text())
    process = orchestrator_process(
        tmp_path,
        database_url,
        slow_participants.info["services"],
        extra_args=["--auth-file", str(auth_file), "--definitions", "tests.support.lock_sagas"],
    )
    try:
        yield process.start()
    finally:
        process.stop()


@pytest.fixture
async def stub(tenant_orchestrator: ChildProcess) -> AsyncIterator[pb_grpc.SagaOrchestratorStub]:
    async with grpc.aio.insecure_channel(tenant_orchestrator.address) as channel:
        yield pb_grpc.SagaOrchestratorStub(channel)


async def call(
    stub: pb_grpc.SagaOrchestratorStub, caller: str, method: str, request: Any
) -> tuple[grpc.StatusCode, Any, str]:
    """One call as `caller`: its code, reply (a list for a stream) and error message."""
    metadata = [("authorization", f"Bearer {TOKENS[caller]}")]
    try:
        if method == "WatchSaga":
            replies = [r async for r in stub.WatchSaga(request, metadata=metadata, timeout=30)]
            return OK, replies, ""
        reply = await getattr(stub, method)(request, metadata=metadata, timeout=30)
        return OK, reply, ""
    except grpc.aio.AioRpcError as error:
        return error.code(), None, error.details() or ""


def start_request(namespace: str, customer: str, **extra: Any) -> pb.StartSagaRequest:
    return pb.StartSagaRequest(
        saga_type="locked_trip",
        correlation_id="trip-shared",
        payload=struct(travel(customer)),
        namespace=namespace,
        **extra,
    )


def saga_request(method: str, saga_id: str, namespace: str) -> Any:
    operator = {"reason": "tenancy test", "requested_by": "tester"}
    return {
        "GetSaga": lambda: pb.GetSagaRequest(saga_id=saga_id, namespace=namespace),
        "GetSagaHistory": lambda: pb.GetSagaHistoryRequest(saga_id=saga_id, namespace=namespace),
        "WatchSaga": lambda: pb.WatchSagaRequest(saga_id=saga_id, namespace=namespace),
        "AbortSaga": lambda: pb.AbortSagaRequest(saga_id=saga_id, namespace=namespace, **operator),
        "RetrySaga": lambda: pb.RetrySagaRequest(saga_id=saga_id, namespace=namespace, **operator),
        "ResolveStep": lambda: pb.ResolveStepRequest(
            saga_id=saga_id, step="book_flight", namespace=namespace, **operator
        ),
        "BreakLock": lambda: pb.BreakLockRequest(saga_id=saga_id, namespace=namespace, **operator),
    }[method]()


def expected_for(caller: Caller, method: str, saga_namespace: str, named: str) -> str:
    """ "denied", "invalid", "not-found", or "answered" (as a caller of every namespace)."""
    if not set(caller.roles) & SAGA_RPCS[method]:
        return "denied"
    if named:
        if not named.replace("-", "").isalnum() or not named.islower():
            return "invalid"
        if not caller.may_use(named):
            return "denied"
        return "answered" if named == saga_namespace else "not-found"
    return "answered" if caller.may_use(saga_namespace) else "not-found"


async def execute(stub: pb_grpc.SagaOrchestratorStub, caller: str, request: Any) -> pb.Saga:
    code, reply, message = await call(
        stub, caller, "ExecuteSaga", pb.ExecuteSagaRequest(start=request)
    )
    assert code == OK, message
    assert reply.created
    return reply.saga


async def test_every_saga_rpc_answers_each_caller_and_namespace_as_the_table_says(
    stub: pb_grpc.SagaOrchestratorStub,
):
    # One saga in each namespace, with one idempotency key and one correlation id: keys
    # are per namespace, so each start creates its own saga.
    sagas = {
        namespace: await execute(
            stub, starter, start_request("", f"base-{namespace}", idempotency_key="shared")
        )
        for namespace, starter in (
            ("alpha", "alpha-client"),
            ("beta", "beta-client"),
            ("default", "default-client"),
        )
    }
    assert len({saga.saga_id for saga in sagas.values()}) == 3
    for namespace, saga in sagas.items():
        assert saga.namespace == namespace
        assert saga.idempotency_key == "shared"
        assert saga.status == pb.SAGA_STATUS_COMPLETED

    # What a caller spanning every namespace gets, per RPC and saga: the oracle.
    oracle: dict[tuple[str, str], grpc.StatusCode] = {}
    for method, roles in SAGA_RPCS.items():
        everyone = "every-reader" if "reader" in roles else "every-operator"
        for namespace, saga in sagas.items():
            request = saga_request(method, saga.saga_id, "")
            code, _, message = await call(stub, everyone, method, request)
            assert code not in (NOT_FOUND, DENIED), (method, message)
            oracle[method, namespace] = code
    # A saga that does not exist: what a saga out of reach must look like.
    missing = str(uuid.uuid4())
    absent: dict[str, str] = {}
    for method, roles in SAGA_RPCS.items():
        everyone = "every-reader" if "reader" in roles else "every-operator"
        code, _, message = await call(stub, everyone, method, saga_request(method, missing, ""))
        assert code == NOT_FOUND
        absent[method] = message.replace(missing, "<id>")

    cells = 0
    for name, caller in CALLERS.items():
        for method in SAGA_RPCS:
            for namespace, saga in sagas.items():
                for named in NAMED:
                    request = saga_request(method, saga.saga_id, named)
                    code, reply, message = await call(stub, name, method, request)
                    expected = expected_for(caller, method, namespace, named)
                    cell = (name, method, namespace, named, code, message)
                    if expected == "denied":
                        assert code == DENIED, cell
                    elif expected == "invalid":
                        assert code == INVALID and "namespace" in message, cell
                    elif expected == "not-found":
                        assert code == NOT_FOUND, cell
                        assert message.replace(saga.saga_id, "<id>") == absent[method], cell
                    else:
                        assert code == oracle[method, namespace], cell
                        if method == "GetSaga":
                            assert reply.namespace == namespace
                    cells += 1
    assert cells == len(CALLERS) * len(SAGA_RPCS) * len(sagas) * len(NAMED)


async def test_starts_and_listings_stay_within_the_callers_namespaces(
    stub: pb_grpc.SagaOrchestratorStub,
):
    started: dict[str, str] = {}  # saga id -> namespace
    for name, caller in CALLERS.items():
        for named in NAMED:
            request = start_request(named, f"start-{name}-{named}".lower())
            code, reply, message = await call(stub, name, "StartSaga", request)
            batch_code, batch, _ = await call(
                stub, name, "StartSagas", pb.StartSagasRequest(requests=[request])
            )
            if "client" not in caller.roles:
                assert (code, batch_code) == (DENIED, DENIED), (name, named)
                continue
            assert batch_code == OK
            item = batch.results[0]
            if named and not named.islower():
                assert code == INVALID and "namespace" in message
                assert item.error.code == INVALID.value[0]
                continue
            if named and not caller.may_use(named):
                assert code == DENIED, (name, named, message)
                assert item.error.code == DENIED.value[0]
                continue
            if not named and caller.namespaces == ("alpha", "beta"):
                # Two namespaces and no `default` among them: the caller must choose.
                assert code == INVALID and "namespace is required" in message
                continue
            assert code == OK, (name, named, message)
            expected = named or (caller.namespaces or ("default",))[0]
            started[reply.saga_id] = expected
            started[item.saga.saga_id] = expected
    assert set(started.values()) == {"alpha", "beta", "default"}

    for name, caller in CALLERS.items():
        for named in NAMED:
            request = pb.ListSagasRequest(page_size=1000, namespace=named)
            code, reply, message = await call(stub, name, "ListSagas", request)
            if named and not named.islower():
                assert code == INVALID
                continue
            if named and not caller.may_use(named):
                assert code == DENIED, (name, named)
                continue
            assert code == OK, message
            listed = {saga.saga_id: saga.namespace for saga in reply.sagas}
            in_scope = {
                saga_id
                for saga_id, namespace in started.items()
                if caller.may_use(namespace) and (not named or named == namespace)
            }
            assert set(listed) == in_scope, (name, named)
            assert all(started[saga_id] == ns for saga_id, ns in listed.items())

    # A bulk action (operators only) takes only sagas within the caller's namespaces:
    # a dry run counts and names them; a real retry answers for them alone (none needs
    # intervention, so each is refused as the single RetrySaga would refuse it).
    for name, caller in CALLERS.items():
        for named in NAMED:
            for dry_run in (True, False):
                request = pb.RetrySagasRequest(
                    filter=pb.BulkSagaFilter(namespace=named, saga_type="locked_trip"),
                    reason="tenancy test",
                    requested_by="tester",
                    dry_run=dry_run,
                    page_size=1000,
                )
                code, reply, message = await call(stub, name, "RetrySagas", request)
                if "operator" not in caller.roles:
                    assert code == DENIED, (name, named)
                    continue
                if named and not named.islower():
                    assert code == INVALID and "namespace" in message
                    continue
                if named and not caller.may_use(named):
                    assert code == DENIED, (name, named)
                    continue
                assert code == OK, message
                in_scope = {
                    saga_id
                    for saga_id, namespace in started.items()
                    if caller.may_use(namespace) and (not named or named == namespace)
                }
                assert set(reply.saga_ids) == in_scope, (name, named)
                if dry_run:
                    assert reply.matched_count == len(in_scope) and not reply.results
                else:
                    assert {r.saga_id for r in reply.results} == in_scope
                    assert {r.error.code for r in reply.results} <= {PRECONDITION.value[0]}


async def test_idempotency_keys_and_lock_keys_are_per_namespace(
    stub: pb_grpc.SagaOrchestratorStub,
):
    first = start_request("alpha", "hot", idempotency_key="key-1")
    code, alpha, message = await call(stub, "two-client", "StartSaga", first)
    assert code == OK and alpha.created, message
    # The same key in another namespace, with another request: a saga of its own, no
    # ALREADY_EXISTS naming alpha's saga.
    other = pb.StartSagaRequest(
        saga_type="exclusive_trip",
        correlation_id="another-trip",
        payload=struct(travel("hot")),
        idempotency_key="key-1",
        namespace="beta",
    )
    code, beta, message = await call(stub, "two-client", "StartSaga", other)
    assert code == OK and beta.created and beta.saga_id != alpha.saga_id, message
    # Within alpha the key still answers alpha's saga.
    code, again, _ = await call(stub, "alpha-client", "StartSaga", first)
    assert code == OK and again.saga_id == alpha.saga_id and not again.created
    code, _, message = await call(
        stub, "alpha-client", "StartSaga", start_request("alpha", "x", idempotency_key="key-1")
    )
    assert code == grpc.StatusCode.ALREADY_EXISTS, message

    # Lock keys per namespace: alpha's saga holds cust:hot; beta's exclusive_trip took
    # its own cust:hot at once; a second exclusive_trip in beta is refused.
    code, saga, _ = await call(
        stub, "every-reader", "GetSaga", pb.GetSagaRequest(saga_id=beta.saga_id)
    )
    assert code == OK
    assert [(lock.key, lock.held) for lock in saga.locks] == [("cust:hot", True)]
    refused = pb.StartSagaRequest(
        saga_type="exclusive_trip",
        correlation_id="third-trip",
        payload=struct(travel("hot")),
        namespace="beta",
    )
    code, _, message = await call(stub, "beta-client", "StartSaga", refused)
    assert code == grpc.StatusCode.ABORTED and "'cust:hot'" in message, message
    assert "alpha" not in message and alpha.saga_id not in message

    # The lock key filter lists each caller's own holder only.
    for name, holder in (("alpha-client", alpha.saga_id), ("beta-reader", beta.saga_id)):
        code, reply, _ = await call(
            stub, name, "ListSagas", pb.ListSagasRequest(lock_key="cust:hot")
        )
        assert code == OK and [s.saga_id for s in reply.sagas] == [holder]
    code, reply, _ = await call(
        stub, "every-reader", "ListSagas", pb.ListSagasRequest(lock_key="cust:hot")
    )
    assert {s.saga_id for s in reply.sagas} == {alpha.saga_id, beta.saga_id}
    await asyncio.gather(
        *(
            call(stub, "every-reader", "WatchSaga", pb.WatchSagaRequest(saga_id=saga_id))
            for saga_id in (alpha.saga_id, beta.saga_id)
        )
    )


async def test_both_clients_and_the_cli_work_within_the_namespace_they_are_given(
    stub: pb_grpc.SagaOrchestratorStub, tenant_orchestrator: ChildProcess
):
    address = tenant_orchestrator.address
    async with SagaClient(address, token=TOKENS["two-client"], namespace="beta") as client:
        beta = await client.start_json(
            "locked_trip", travel("client-beta"), correlation_id="client-trip"
        )
        assert (await client.get_saga(beta.saga_id)).namespace == "beta"
        assert [s.saga_id async for s in client.list_sagas()] == [beta.saga_id]
    with SyncSagaClient(address, token=TOKENS["two-client"], namespace="alpha") as sync:
        alpha = sync.start_json("locked_trip", travel("client-alpha"), correlation_id="client-trip")
        assert sync.get_saga(alpha.saga_id).namespace == "alpha"
        with pytest.raises(NotFound):
            sync.get_saga(beta.saga_id)

    env = {k: v for k, v in os.environ.items() if not k.startswith("SAGA_")}

    def saga(*args: str, caller: str = "beta-reader") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "orchestrator", *args, "--address", address],
            capture_output=True,
            text=True,
            timeout=60,
            env={**env, "SAGA_TOKEN": TOKENS[caller]},
            cwd=REPO_ROOT,
        )

    listed = saga("list", "--json", "--namespace", "beta")
    assert listed.returncode == 0, listed.stderr
    assert beta.saga_id in listed.stdout and alpha.saga_id not in listed.stdout
    everything = saga("list", "--json", caller="every-reader")
    assert beta.saga_id in everything.stdout and alpha.saga_id in everything.stdout
    only_alpha = saga("list", "--json", "--namespace", "alpha", caller="every-reader")
    assert alpha.saga_id in only_alpha.stdout and beta.saga_id not in only_alpha.stdout
    refused = saga("list", "--namespace", "alpha")
    assert refused.returncode != 0 and "PERMISSION_DENIED" in refused.stderr, refused.stderr
    hidden = saga("get", alpha.saga_id)
    assert hidden.returncode != 0 and "NOT_FOUND" in hidden.stderr, hidden.stderr
    shown = saga("get", beta.saga_id)
    assert shown.returncode == 0 and "Namespace: beta" in " ".join(shown.stdout.split())
    malformed = saga("list", "--namespace", "Beta")
    assert malformed.returncode == 2 and "namespace" in malformed.stderr
    for saga_id in (alpha.saga_id, beta.saga_id):
        await call(stub, "every-reader", "WatchSaga", pb.WatchSagaRequest(saga_id=saga_id))
