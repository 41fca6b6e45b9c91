"""Security end to end: real TLS handshakes, real tokens, real processes.

One participants process and one orchestrator run with mutual TLS on every hop and the
same auth file; further orchestrators are started where a test needs its own (a wrong
CA, a file to rotate, a non-loopback listener). The last test reads every log line and
error message this module produced and finds no token and no private key.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from orchestrator.security.auth import token_digest
from orchestrator.security.tls import ClientTls
from participants.registry import SERVICES
from saga.participants.common.v1 import callbacks_pb2 as cb
from saga.v1 import ingest_pb2 as ingest_pb
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import tasks_pb2 as tasks_pb
from saga.v1 import webhooks_pb2
from tests.support.payloads import struct, travel
from tools.certs import CertFiles, make_ca, new_token
from tools.processes import PARTICIPANT_SERVICES, ChildProcess, orchestrator_process
from tools.processes import participants_process as participants_child

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
CALL_TIMEOUT = 10.0
ORCHESTRATOR = pb.DESCRIPTOR.services_by_name["SagaOrchestrator"]
WEBHOOKS = webhooks_pb2.DESCRIPTOR.services_by_name["SagaWebhooks"]
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED

SEEN_MESSAGES: list[str] = []
"""Every error message a test received, for the final scan."""
ISSUED_TOKENS: list[str] = []
"""Every token a test made, for the final scan."""


def token() -> str:
    issued = new_token()
    ISSUED_TOKENS.append(issued)
    return issued


# Who may call each orchestrator RPC, written out here rather than read from the code,
# and what an allowed caller gets for an empty request. A new RPC fails the table test
# until it gets a row.
READ = {"reader", "client", "operator"}
ORCHESTRATOR_EXPECTED: dict[str, tuple[set[str], grpc.StatusCode]] = {
    "StartSaga": ({"client"}, grpc.StatusCode.INVALID_ARGUMENT),
    "StartSagas": ({"client"}, grpc.StatusCode.INVALID_ARGUMENT),
    "ExecuteSaga": ({"client"}, grpc.StatusCode.INVALID_ARGUMENT),
    "GetSaga": (READ, grpc.StatusCode.INVALID_ARGUMENT),
    "ListSagas": (READ, grpc.StatusCode.OK),
    "GetSagaHistory": (READ, grpc.StatusCode.INVALID_ARGUMENT),
    "WatchSaga": (READ, grpc.StatusCode.INVALID_ARGUMENT),
    "ListSagaTypes": (READ, grpc.StatusCode.OK),
    "AbortSaga": ({"operator"}, grpc.StatusCode.INVALID_ARGUMENT),
    "RetrySaga": ({"operator"}, grpc.StatusCode.INVALID_ARGUMENT),
    "ResolveStep": ({"operator"}, grpc.StatusCode.INVALID_ARGUMENT),
    "BreakLock": ({"operator"}, grpc.StatusCode.INVALID_ARGUMENT),
    "RetrySagas": ({"operator"}, grpc.StatusCode.INVALID_ARGUMENT),
    "ResolveSagas": ({"operator"}, grpc.StatusCode.INVALID_ARGUMENT),
    "AbortSagas": ({"operator"}, grpc.StatusCode.INVALID_ARGUMENT),
}
CALLBACKS = cb.DESCRIPTOR.services_by_name["SagaCallbacks"]
COMPLETERS = {"participant", "operator"}
CALLBACKS_EXPECTED: dict[str, tuple[set[str], grpc.StatusCode]] = {
    "CompleteStep": (COMPLETERS, grpc.StatusCode.INVALID_ARGUMENT),
    "FailStep": (COMPLETERS, grpc.StatusCode.INVALID_ARGUMENT),
    "HeartbeatStep": (COMPLETERS, grpc.StatusCode.INVALID_ARGUMENT),
}
TASKS = tasks_pb.DESCRIPTOR.services_by_name["SagaTasks"]
DECIDERS = {"approver", "operator"}
TASKS_EXPECTED: dict[str, tuple[set[str], grpc.StatusCode]] = {
    "ListTasks": (DECIDERS, grpc.StatusCode.OK),
    "CompleteTask": (DECIDERS, grpc.StatusCode.INVALID_ARGUMENT),
    "RejectTask": (DECIDERS, grpc.StatusCode.INVALID_ARGUMENT),
}
INGEST = ingest_pb.DESCRIPTOR.services_by_name["SagaEventIngest"]
INGEST_EXPECTED: dict[str, tuple[set[str], grpc.StatusCode]] = {
    "IngestEvents": ({"participant", "operator"}, grpc.StatusCode.OK),  # an empty batch
    "ListEventAnomalies": ({"operator", "reader"}, grpc.StatusCode.OK),
}
"""Served when a tracked saga type is registered (`tracking_orchestrator`)."""
STEP_SERVICES = {
    **{rpc: (CALLBACKS, row) for rpc, row in CALLBACKS_EXPECTED.items()},
    **{rpc: (TASKS, row) for rpc, row in TASKS_EXPECTED.items()},
}
CELLS = (
    "none",
    "wrong-token",
    "reader",
    "client",
    "operator",
    "participant",
    "approver",
    "orchestrator",
)
"""Who calls: no credentials, an unknown token, a token of each role, the orchestrator's
certificate."""


@dataclasses.dataclass(frozen=True)
class Pki:
    """Throwaway certificates and tokens, and the auth file that names them."""

    base: Path
    ca: Path
    server: CertFiles
    orchestrator: CertFiles
    stranger: CertFiles
    foreign: CertFiles
    foreign_ca: Path
    tokens: dict[str, str]
    auth_file: Path

    def tls(self, cert: CertFiles | None) -> ClientTls:
        return ClientTls(self.ca, cert.cert if cert else None, cert.key if cert else None)

    def server_args(self, auth_file: Path | None = None) -> list[str]:
        return [
            "--tls-cert", str(self.server.cert),
            "--tls-key", str(self.server.key),
            "--tls-client-ca", str(self.ca),
            "--auth-file", str(auth_file or self.auth_file),
        ]  # fmt: skip

    def orchestrator_args(self, participants_ca: Path | None = None) -> list[str]:
        return [
            *self.server_args(),
            "--participants-tls-ca", str(participants_ca or self.ca),
            "--participants-tls-cert", str(self.orchestrator.cert),
            "--participants-tls-key", str(self.orchestrator.key),
        ]  # fmt: skip


def auth_file_text(tokens: dict[str, str]) -> str:
    """Callers: a token per role (caller named after the role) and the orchestrator."""
    entries = [
        f'[[caller]]\nname = "{role}-user"\nroles = ["{role}"]\n'
        f'token_sha256 = "{token_digest(token)}"\n'
        for role, token in tokens.items()
    ]
    entries.append('[[caller]]\nname = "orchestrator"\nroles = ["orchestrator"]\n')
    entries[-1] += 'certificate = "orchestrator"\n'
    return "\n".join(entries)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    base = tmp_path_factory.mktemp("security")
    ca = make_ca(base / "pki")
    foreign_ca = make_ca(base / "foreign", "foreign-ca")
    tokens = {
        role: token()
        for role in ("reader", "client", "operator", "participant", "approver", "orchestrator")
    }
    auth_file = base / "auth.toml"
    auth_file.write_text(auth_file_text(tokens))
    return Pki(
        base=base,
        ca=ca.cert_file,
        server=ca.issue("server", base / "pki"),
        orchestrator=ca.issue("orchestrator", base / "pki"),
        stranger=ca.issue("stranger", base / "pki"),
        foreign=foreign_ca.issue("orchestrator", base / "foreign"),
        foreign_ca=foreign_ca.cert_file,
        tokens=tokens,
        auth_file=auth_file,
    )


def started(process: ChildProcess, stack: list[ChildProcess]) -> ChildProcess:
    stack.append(process)
    return process.start()


@pytest.fixture(scope="module")
def secure_participants(pki: Pki) -> Iterator[ChildProcess]:
    stack: list[ChildProcess] = []
    try:
        yield started(
            participants_child(pki.base / "participants", PARTICIPANT_SERVICES, pki.server_args()),
            stack,
        )
    finally:
        for process in stack:
            process.stop()


def secure_orchestrator(
    pki: Pki, workdir: Path, database_url: str, participants: ChildProcess, *extra: str
) -> ChildProcess:
    process = orchestrator_process(workdir, database_url, participants.info["services"])
    process.argv += [*pki.orchestrator_args(), *extra]
    return process


@pytest.fixture(scope="module")
def orchestrator(pki: Pki, secure_participants: ChildProcess) -> Iterator[ChildProcess]:
    workdir = pki.base / "orchestrator"
    process = secure_orchestrator(
        pki, workdir, f"sqlite:///{workdir / 'saga.sqlite3'}", secure_participants
    )
    try:
        yield process.start()
    finally:
        process.stop()


def call(
    pki: Pki,
    address: str,
    method: MethodDescriptor,
    *,
    cert: CertFiles | None,
    token: str | None = None,
    request: object = None,
    tls: ClientTls | None = None,
) -> tuple[grpc.StatusCode, object]:
    """One call of `method` with these credentials; its code (and reply when OK)."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    request_type = message_factory.GetMessageClass(method.input_type)
    response_type = message_factory.GetMessageClass(method.output_type)
    metadata = [("authorization", f"Bearer {token}")] if token else None
    credentials = (tls or pki.tls(cert)).credentials()
    with grpc.secure_channel(address, credentials) as channel:
        kind = channel.unary_stream if method.server_streaming else channel.unary_unary
        stub = kind(
            path,
            request_serializer=request_type.SerializeToString,
            response_deserializer=response_type.FromString,
        )
        try:
            reply = stub(request or request_type(), timeout=CALL_TIMEOUT, metadata=metadata)
            if method.server_streaming:
                reply = list(reply)
            return grpc.StatusCode.OK, reply
        except grpc.RpcError as error:
            SEEN_MESSAGES.append(f"{error.code()}: {error.details()}")
            return error.code(), None


def credentials_of(pki: Pki, cell: str) -> dict[str, object]:
    """The TLS certificate and token a table cell calls with."""
    if cell == "orchestrator":
        return {"cert": pki.orchestrator}
    bearer = {"none": None, "wrong-token": token()}.get(cell, pki.tokens.get(cell))
    return {"cert": pki.stranger, "token": bearer}


def expected_code(cell: str, allowed: set[str], answer: grpc.StatusCode) -> grpc.StatusCode:
    if cell in ("none", "wrong-token"):
        return UNAUTHENTICATED
    return answer if cell in allowed else DENIED


def test_mutual_tls_refuses_no_certificate_and_another_cas_and_accepts_the_right_one(
    pki: Pki, orchestrator: ChildProcess
):
    list_sagas = ORCHESTRATOR.methods_by_name["ListSagas"]
    token = pki.tokens["reader"]

    without, _ = call(pki, orchestrator.address, list_sagas, cert=None, token=token)
    foreign, _ = call(
        pki,
        orchestrator.address,
        list_sagas,
        cert=None,
        token=token,
        tls=ClientTls(pki.ca, pki.foreign.cert, pki.foreign.key),
    )
    wrong_server_ca, _ = call(
        pki,
        orchestrator.address,
        list_sagas,
        cert=None,
        token=token,
        tls=ClientTls(pki.foreign_ca, pki.stranger.cert, pki.stranger.key),
    )
    right, _ = call(pki, orchestrator.address, list_sagas, cert=pki.stranger, token=token)

    assert (without, foreign, wrong_server_ca) == (grpc.StatusCode.UNAVAILABLE,) * 3
    assert right == grpc.StatusCode.OK


def test_every_orchestrator_rpc_has_a_row_in_the_expected_table():
    assert set(ORCHESTRATOR.methods_by_name) == set(ORCHESTRATOR_EXPECTED)
    assert set(CALLBACKS.methods_by_name) == set(CALLBACKS_EXPECTED)
    assert set(TASKS.methods_by_name) == set(TASKS_EXPECTED)
    assert set(INGEST.methods_by_name) == set(INGEST_EXPECTED)


@pytest.mark.parametrize("rpc", sorted(STEP_SERVICES))
def test_step_service_rpc_answers_each_caller_with_its_expected_code(
    pki: Pki, orchestrator: ChildProcess, rpc: str
):
    service, (allowed, answer) = STEP_SERVICES[rpc]
    method = service.methods_by_name[rpc]

    got = {
        cell: call(pki, orchestrator.address, method, **credentials_of(pki, cell))[0]
        for cell in CELLS
    }

    assert got == {cell: expected_code(cell, allowed, answer) for cell in CELLS}


@pytest.fixture(scope="module")
def tracking_orchestrator(pki: Pki, secure_participants: ChildProcess) -> Iterator[ChildProcess]:
    """A secured orchestrator tracking the travel choreography: it serves SagaEventIngest."""
    workdir = pki.base / "tracking-orchestrator"
    process = secure_orchestrator(
        pki,
        workdir,
        f"sqlite:///{workdir / 'saga.sqlite3'}",
        secure_participants,
        "--definitions",
        "orchestrator.examples.travel_choreography",
    )
    try:
        yield process.start()
    finally:
        process.stop()


@pytest.mark.parametrize("rpc", sorted(INGEST_EXPECTED))
def test_event_ingest_rpc_answers_each_caller_with_its_expected_code(
    pki: Pki, tracking_orchestrator: ChildProcess, rpc: str
):
    allowed, answer = INGEST_EXPECTED[rpc]
    method = INGEST.methods_by_name[rpc]

    got = {
        cell: call(pki, tracking_orchestrator.address, method, **credentials_of(pki, cell))[0]
        for cell in CELLS
    }

    assert got == {cell: expected_code(cell, allowed, answer) for cell in CELLS}


@pytest.mark.parametrize("rpc", sorted(WEBHOOKS.methods_by_name))
def test_webhook_rpcs_are_for_operators_only(pki: Pki, orchestrator: ChildProcess, rpc: str):
    """Operators get through (to FAILED_PRECONDITION: this server runs without
    --webhooks); every other caller is refused."""
    method = WEBHOOKS.methods_by_name[rpc]

    got = {
        cell: call(pki, orchestrator.address, method, **credentials_of(pki, cell))[0]
        for cell in CELLS
    }

    failed_precondition = grpc.StatusCode.FAILED_PRECONDITION
    assert got == {cell: expected_code(cell, {"operator"}, failed_precondition) for cell in CELLS}


@pytest.mark.parametrize("rpc", sorted(ORCHESTRATOR_EXPECTED))
def test_orchestrator_rpc_answers_each_caller_with_its_expected_code(
    pki: Pki, orchestrator: ChildProcess, rpc: str
):
    allowed, answer = ORCHESTRATOR_EXPECTED[rpc]
    method = ORCHESTRATOR.methods_by_name[rpc]

    got = {
        cell: call(pki, orchestrator.address, method, **credentials_of(pki, cell))[0]
        for cell in CELLS
    }

    assert got == {cell: expected_code(cell, allowed, answer) for cell in CELLS}


def test_a_refusal_is_logged_with_the_caller_and_the_rpc(pki: Pki, orchestrator: ChildProcess):
    abort = ORCHESTRATOR.methods_by_name["AbortSaga"]
    path = f"/{ORCHESTRATOR.full_name}/AbortSaga"

    call(pki, orchestrator.address, abort, cert=pki.stranger, token=pki.tokens["client"])
    call(pki, orchestrator.address, abort, cert=pki.stranger, token=token())

    deadline = time.monotonic() + 10
    wanted = [
        f"refused {path} to client-user (roles client)",
        f"refused {path} from an unauthenticated caller (an unknown token)",
    ]
    while not all(line in orchestrator.log_tail(2000) for line in wanted):
        assert time.monotonic() < deadline, orchestrator.log_tail(20)
        time.sleep(0.05)


PARTICIPANT_METHODS = [method for spec in SERVICES.values() for method in spec.descriptor.methods]


def is_command(method: MethodDescriptor) -> bool:
    return "context" in method.input_type.fields_by_name


@pytest.mark.parametrize(
    "method", PARTICIPANT_METHODS, ids=lambda m: f"{m.containing_service.name}.{m.name}"
)
def test_participant_rpc_answers_each_caller_with_its_expected_code(
    pki: Pki, secure_participants: ChildProcess, method: MethodDescriptor
):
    # A command from the orchestrator without an idempotency key is refused as invalid,
    # after authorization, and changes nothing; a read answers.
    if is_command(method):
        allowed, answer = {"orchestrator"}, grpc.StatusCode.INVALID_ARGUMENT
    else:
        allowed, answer = {"reader", "operator"}, grpc.StatusCode.OK

    got = {
        cell: call(pki, secure_participants.address, method, **credentials_of(pki, cell))[0]
        for cell in CELLS
    }

    assert got == {cell: expected_code(cell, allowed, answer) for cell in CELLS}


def test_a_ledger_read_without_a_role_is_refused(pki: Pki, secure_participants: ChildProcess):
    ledger = SERVICES["payment"].descriptor.methods_by_name["GetPaymentLedger"]

    anonymous, _ = call(pki, secure_participants.address, ledger, cert=pki.stranger)
    client, _ = call(
        pki, secure_participants.address, ledger, cert=pki.stranger, token=pki.tokens["client"]
    )
    reader, reply = call(
        pki, secure_participants.address, ledger, cert=pki.stranger, token=pki.tokens["reader"]
    )

    assert (anonymous, client, reader) == (UNAUTHENTICATED, DENIED, grpc.StatusCode.OK)
    assert reply is not None


def test_a_saga_runs_to_completion_with_mutual_tls_on_every_hop(
    pki: Pki, orchestrator: ChildProcess
):
    start = ORCHESTRATOR.methods_by_name["StartSaga"]
    request = pb.StartSagaRequest(
        saga_type="travel_booking", correlation_id="secure-1", payload=struct(travel())
    )
    client = {"cert": pki.stranger, "token": pki.tokens["client"]}

    code, reply = call(pki, orchestrator.address, start, request=request, **client)
    assert code == grpc.StatusCode.OK
    saga_id = reply.saga_id  # type: ignore[attr-defined]
    watch = ORCHESTRATOR.methods_by_name["WatchSaga"]
    code, _ = call(
        pki, orchestrator.address, watch, request=pb.WatchSagaRequest(saga_id=saga_id), **client
    )
    get = ORCHESTRATOR.methods_by_name["GetSaga"]
    code, saga = call(
        pki, orchestrator.address, get, request=pb.GetSagaRequest(saga_id=saga_id), **client
    )

    assert saga.status == pb.SAGA_STATUS_COMPLETED  # type: ignore[attr-defined]


def test_participants_accept_the_orchestrator_by_its_token(
    pki: Pki, secure_participants: ChildProcess, tmp_path: Path
):
    """Its client certificate names nobody in the auth file; the token it sends does."""
    token_file = tmp_path / "participants.token"
    token_file.write_text(pki.tokens["orchestrator"])
    process = orchestrator_process(
        tmp_path, f"sqlite:///{tmp_path / 'saga.sqlite3'}", secure_participants.info["services"]
    )
    process.argv += [
        *pki.server_args(),
        "--participants-tls-ca", str(pki.ca),
        "--participants-tls-cert", str(pki.stranger.cert),
        "--participants-tls-key", str(pki.stranger.key),
        "--participants-token-file", str(token_file),
    ]  # fmt: skip
    client = {"cert": pki.stranger, "token": pki.tokens["client"]}
    try:
        process.start()
        code, reply = call(
            pki,
            process.address,
            ORCHESTRATOR.methods_by_name["StartSaga"],
            request=pb.StartSagaRequest(
                saga_type="travel_booking", correlation_id="by-token", payload=struct(travel())
            ),
            **client,
        )
        assert code == grpc.StatusCode.OK
        saga_id = reply.saga_id  # type: ignore[attr-defined]
        call(
            pki,
            process.address,
            ORCHESTRATOR.methods_by_name["WatchSaga"],
            request=pb.WatchSagaRequest(saga_id=saga_id),
            **client,
        )
        saga = steps_of(pki, process.address, saga_id)
    finally:
        process.stop()
        (pki.base / "by-token.log").write_text(process.log_tail(1000))

    assert saga.status == pb.SAGA_STATUS_COMPLETED, saga.failure_reason


def test_the_cli_connects_with_mutual_tls_and_a_token_file(
    pki: Pki, orchestrator: ChildProcess, tmp_path: Path
):
    token_file = tmp_path / "token"
    token_file.write_text(pki.tokens["reader"] + "\n")
    tls = [
        "--address", orchestrator.address,
        "--tls-ca", str(pki.ca),
        "--tls-cert", str(pki.stranger.cert),
        "--tls-key", str(pki.stranger.key),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAGA_")}

    def saga(*args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "orchestrator", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={**env, **extra_env},
            cwd=REPO_ROOT,
        )
        SEEN_MESSAGES.extend([done.stdout, done.stderr])
        return done

    with_token = saga("list", "--json", *tls, "--token-file", str(token_file))
    from_env = saga("list", "--json", *tls, SAGA_TOKEN=pki.tokens["reader"])
    without = saga("list", *tls)

    assert with_token.returncode == 0, with_token.stderr
    assert from_env.returncode == 0, from_env.stderr
    assert without.returncode == 1
    assert "UNAUTHENTICATED" in without.stderr
    assert "Traceback" not in with_token.stderr + from_env.stderr + without.stderr


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, pki: Pki) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{pki.base / f'audit-{new_token()[:8]}.sqlite3'}"
    return str(request.getfixturevalue("postgres_url"))


def steps_of(pki: Pki, address: str, saga_id: str) -> pb.Saga:
    get = ORCHESTRATOR.methods_by_name["GetSaga"]
    code, saga = call(
        pki,
        address,
        get,
        request=pb.GetSagaRequest(saga_id=saga_id),
        cert=pki.stranger,
        token=pki.tokens["reader"],
    )
    assert code == grpc.StatusCode.OK
    return saga  # type: ignore[return-value]


def test_wrong_ca_to_participants_fails_attempts_as_transient_and_the_audit_names_the_caller(
    pki: Pki, secure_participants: ChildProcess, database_url: str
):
    """The orchestrator trusts another CA than the one that signed the participants'
    certificate: every attempt fails in the handshake, is retried, and nothing completes.
    The operator who then aborts the saga is recorded by authenticated name."""
    workdir = pki.base / f"wrong-ca-{new_token()[:8]}"
    process = orchestrator_process(workdir, database_url, secure_participants.info["services"])
    process.argv += pki.orchestrator_args(participants_ca=pki.foreign_ca)
    operator = {"cert": pki.stranger, "token": pki.tokens["operator"]}
    try:
        process.start()
        start = ORCHESTRATOR.methods_by_name["StartSaga"]
        code, reply = call(
            pki,
            process.address,
            start,
            request=pb.StartSagaRequest(
                saga_type="travel_booking", correlation_id="wrong-ca", payload=struct(travel())
            ),
            cert=pki.stranger,
            token=pki.tokens["client"],
        )
        assert code == grpc.StatusCode.OK
        saga_id = reply.saga_id  # type: ignore[attr-defined]
        deadline = time.monotonic() + 30
        saga = steps_of(pki, process.address, saga_id)
        while not any(step.error for step in saga.steps) and time.monotonic() < deadline:
            time.sleep(0.2)
            saga = steps_of(pki, process.address, saga_id)
        failed = [step for step in saga.steps if step.error]
        assert failed, "no attempt failed within 30s"
        assert saga.status == pb.SAGA_STATUS_RUNNING
        assert all("TLS handshake failed" in step.error for step in failed), [
            step.error for step in failed
        ]

        abort = ORCHESTRATOR.methods_by_name["AbortSaga"]
        code, _ = call(
            pki,
            process.address,
            abort,
            request=pb.AbortSagaRequest(saga_id=saga_id, reason="stuck", requested_by="ceo"),
            **operator,
        )
        assert code == grpc.StatusCode.OK
        history = ORCHESTRATOR.methods_by_name["GetSagaHistory"]
        code, rows = call(
            pki,
            process.address,
            history,
            request=pb.GetSagaHistoryRequest(saga_id=saga_id),
            **operator,
        )
    finally:
        process.stop()
    aborted = [row for row in rows.transitions if row.actor.startswith("operator:")]  # type: ignore[attr-defined]
    assert [(row.actor, row.reason) for row in aborted] == [
        ("operator:operator-user", "stuck (requested_by: ceo)")
    ]
    assert all(row.saga_status != pb.SAGA_STATUS_COMPLETED for row in rows.transitions)  # type: ignore[attr-defined]


def test_sighup_reloads_the_auth_file_and_a_broken_one_keeps_the_last_good(
    pki: Pki, secure_participants: ChildProcess
):
    workdir = pki.base / "sighup"
    workdir.mkdir()
    auth_file = workdir / "auth.toml"
    old = {"client": token()}
    auth_file.write_text(auth_file_text(old))
    process = orchestrator_process(
        workdir, f"sqlite:///{workdir / 'saga.sqlite3'}", secure_participants.info["services"]
    )
    process.argv += [*pki.orchestrator_args(), "--auth-file", str(auth_file)]
    list_sagas = ORCHESTRATOR.methods_by_name["ListSagas"]

    def code_with(token: str) -> grpc.StatusCode:
        return call(pki, process.address, list_sagas, cert=pki.stranger, token=token)[0]

    def after_reload(count: int) -> None:
        process.process.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        deadline = time.monotonic() + 10
        while process.log_tail(400).count("auth file") < count:
            assert time.monotonic() < deadline, "no reload logged"
            time.sleep(0.05)

    try:
        process.start()
        rotated = {"reader": token()}
        assert (code_with(old["client"]), code_with(rotated["reader"])) == (
            grpc.StatusCode.OK,
            UNAUTHENTICATED,
        )

        auth_file.write_text(auth_file_text(rotated))
        after_reload(1)
        assert (code_with(old["client"]), code_with(rotated["reader"])) == (
            UNAUTHENTICATED,
            grpc.StatusCode.OK,
        )

        auth_file.write_text('[[caller]]\nname = "x"\nroles = nope\n')
        after_reload(2)
        assert code_with(rotated["reader"]) == grpc.StatusCode.OK
    finally:
        process.stop()
    log = process.log_tail(400)
    assert "not reloaded" in log and "line 3" in log


@pytest.mark.parametrize("program", ["orchestrator", "participants"])
def test_a_malformed_auth_file_refuses_to_start_naming_the_line(
    pki: Pki, tmp_path: Path, program: str
):
    bad = tmp_path / "auth.toml"
    bad.write_text('[[caller]]\nname = "x"\nroles = ["client"]\ntoken_sha256 = "short"\n')
    if program == "orchestrator":
        args = ["serve", "--database", f"sqlite:///{tmp_path / 's.db'}", "--listen", "127.0.0.1:0"]
    else:
        args = ["participants", "--state-dir", str(tmp_path / "state"), "--port", "0"]
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", *args, "--auth-file", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    SEEN_MESSAGES.extend([done.stdout, done.stderr])

    assert done.returncode in (1, 2)
    assert f"{bad}, line 4" in done.stderr
    assert "listening" not in done.stdout


@pytest.mark.parametrize(("host", "warnings"), [("0.0.0.0", 1), ("127.0.0.1", 0)])
def test_plaintext_on_a_non_loopback_address_warns_once(pki: Pki, host: str, warnings: int):
    workdir = pki.base / f"plaintext-{host}"
    nowhere = dict.fromkeys(PARTICIPANT_SERVICES, "127.0.0.1:9")
    process = orchestrator_process(workdir, f"sqlite:///{workdir / 'saga.sqlite3'}", nowhere)
    process.argv += ["--listen", f"{host}:0"]
    try:
        process.start()
    finally:
        process.stop()
    log = process.log_tail(400)
    assert log.count("PLAINTEXT") == warnings
    assert "auth is OFF" in log


def reflected_services(channel: grpc.Channel) -> list[str] | grpc.StatusCode:
    try:
        return sorted(ProtoReflectionDescriptorDatabase(channel).get_services())
    except grpc.RpcError as error:
        return error.code()


def test_health_is_open_to_anyone_and_reflection_follows_its_flag(
    pki: Pki, orchestrator: ChildProcess
):
    nowhere = dict.fromkeys(PARTICIPANT_SERVICES, "127.0.0.1:9")
    workdir = pki.base / "no-reflection"
    hidden = orchestrator_process(workdir, f"sqlite:///{workdir / 'saga.sqlite3'}", nowhere)
    hidden.argv += ["--reflection", "off"]
    anonymous = pki.tls(pki.stranger).credentials()
    try:
        hidden.start()
        with grpc.secure_channel(orchestrator.address, anonymous) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT
            )
            listed = reflected_services(channel)
        with grpc.insecure_channel(hidden.address) as channel:
            off = reflected_services(channel)
    finally:
        hidden.stop()

    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert ORCHESTRATOR.full_name in listed
    assert off == grpc.StatusCode.UNIMPLEMENTED


@pytest.mark.slow
def test_the_secure_demo_runs_with_mutual_tls_and_shows_both_refusals(pki: Pki):
    workdir = pki.base / "demo"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAGA_")}
    done = subprocess.run(
        [sys.executable, "-m", "tools.demo", "--secure"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=workdir,
        env={**env, "PYTHONPATH": str(REPO_ROOT)},
    )
    SEEN_MESSAGES.extend([done.stdout, done.stderr])
    ISSUED_TOKENS.extend(path.read_text().strip() for path in workdir.rglob("*.token"))

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "anonymous ListSagas: UNAUTHENTICATED" in done.stdout
    assert "AbortSaga with a client token: PERMISSION_DENIED" in done.stdout
    assert "demo: all checks passed" in done.stdout


def test_no_log_line_or_error_message_holds_a_token_or_a_private_key(pki: Pki):
    """Runs last in this module: everything the tests above made is on disk by now."""
    secrets = [*ISSUED_TOKENS]
    key_bodies = [
        line
        for key in pki.base.rglob("*.key")
        for line in key.read_text().splitlines()
        if line and not line.startswith("-----")
    ]
    texts = [path.read_text(errors="replace") for path in pki.base.rglob("*.log")]
    texts += SEEN_MESSAGES
    assert texts, "nothing to scan"
    assert len(texts) > 5

    for text in texts:
        assert "PRIVATE KEY" not in text
        assert "Bearer" not in text
        for secret in [*secrets, *key_bodies]:
            assert secret not in text
