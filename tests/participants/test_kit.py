"""The participant kit on SQLite and PostgreSQL, through the own-saga walkthrough's
loyalty participant run as a process: one effect per key across a crash between the
business write and the reply, tombstones, the ownership check, fingerprints."""

from __future__ import annotations

import hashlib
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from participants.kit.failpoints import FAILPOINT_EXIT_CODE, FAILPOINT_VAR
from saga.participants.common.v1 import command_pb2
from tests.e2e.test_own_saga import PROJECT, PrintedAddressProcess

sys.path.insert(0, str(PROJECT))
from acme.loyalty.v1 import loyalty_pb2 as pb
from acme.loyalty.v1 import loyalty_pb2_grpc as pb_grpc

sys.path.remove(str(PROJECT))

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'loyalty.db'}"
    return str(request.getfixturevalue("postgres_url"))


class Loyalty:
    """The loyalty participant process, restartable on the same database."""

    def __init__(self, tmp_path: Path, database_url: str) -> None:
        self.tmp_path = tmp_path
        self.database_url = database_url
        self.process: PrintedAddressProcess | None = None
        self.runs = 0

    def start(self, failpoint: str = "", *args: str) -> str:
        self.runs += 1
        argv = [sys.executable, "loyalty_participant.py", "--port", "0", *args]
        self.process = PrintedAddressProcess(
            f"loyalty-{self.runs}",
            [*argv, "--database", self.database_url],
            cwd=PROJECT,
            log_dir=self.tmp_path,
            env={FAILPOINT_VAR: failpoint} if failpoint else None,
        )
        self.process.start()
        return self.process.address

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@pytest.fixture
def loyalty(tmp_path: Path, database_url: str) -> Iterator[Loyalty]:
    participant = Loyalty(tmp_path, database_url)
    try:
        yield participant
    finally:
        participant.stop()


def command(saga_id: str, step: str, *, compensating: bool = False) -> command_pb2.CommandContext:
    """The context the orchestrator sends: the action's key is "<saga_id>:<step>"."""
    action_key = f"{saga_id}:{step}"
    if not compensating:
        return command_pb2.CommandContext(saga_id=saga_id, step=step, idempotency_key=action_key)
    return command_pb2.CommandContext(
        saga_id=saga_id,
        step=step,
        idempotency_key=f"{action_key}:compensate",
        compensated_idempotency_key=action_key,
    )


async def call(address: str, method: str, request: object) -> object:
    async with grpc.aio.insecure_channel(address) as channel:
        return await getattr(pb_grpc.LoyaltyServiceStub(channel), method)(request, timeout=5)


async def balance(address: str, customer: str) -> int:
    reply = await call(address, "GetBalance", pb.GetBalanceRequest(customer_id=customer))
    assert isinstance(reply, pb.GetBalanceResponse)
    return int(reply.points)


@pytest.mark.parametrize("failpoint", ["before_commit", "after_commit"])
async def test_a_crash_around_the_commit_then_a_redelivery_makes_one_effect(loyalty, failpoint):
    award = pb.AwardPointsRequest(
        context=command(str(uuid.uuid4()), "award"), customer_id="ada", points=70
    )
    address = loyalty.start(failpoint)
    with pytest.raises(grpc.aio.AioRpcError) as lost:
        await call(address, "AwardPoints", award)
    assert lost.value.code() == grpc.StatusCode.UNAVAILABLE
    assert loyalty.process.process.wait(10) == FAILPOINT_EXIT_CODE

    address = loyalty.start()
    first = await call(address, "AwardPoints", award)
    again = await call(address, "AwardPoints", award)
    assert first == again
    assert await balance(address, "ada") == 70


async def test_a_compensation_before_its_action_leaves_a_tombstone(loyalty):
    address = loyalty.start()
    saga_id = str(uuid.uuid4())
    revoke = pb.RevokePointsRequest(context=command(saga_id, "award", compensating=True))
    revoked = await call(address, "RevokePoints", revoke)
    assert revoked == pb.RevokePointsResponse(revoked=False)
    late = pb.AwardPointsRequest(context=command(saga_id, "award"), customer_id="bo", points=5)
    for _ in range(2):  # the refusal is recorded: a repeat gets it again
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(address, "AwardPoints", late)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "already compensated" in (refused.value.details() or "")
    assert await balance(address, "bo") == 0


async def test_a_compensation_naming_another_sagas_action_is_refused(loyalty):
    address = loyalty.start()
    owner, intruder = str(uuid.uuid4()), str(uuid.uuid4())
    award = pb.AwardPointsRequest(context=command(owner, "award"), customer_id="cy", points=9)
    await call(address, "AwardPoints", award)
    # The owner's action named by the intruder's compensation, with the intruder's own
    # key or with the owner's: refused, and no tombstone is left.
    foreign_key = command(intruder, "award", compensating=True)
    foreign_key.compensated_idempotency_key = f"{owner}:award"
    forged_saga = command(owner, "award", compensating=True)
    forged_saga.saga_id = intruder
    for context in (foreign_key, forged_saga):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(address, "RevokePoints", pb.RevokePointsRequest(context=context))
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert await balance(address, "cy") == 9
    own = pb.RevokePointsRequest(context=command(owner, "award", compensating=True))
    undone = await call(address, "RevokePoints", own)
    assert isinstance(undone, pb.RevokePointsResponse) and undone.revoked
    assert await balance(address, "cy") == 0


async def test_a_key_reused_for_another_request_is_already_exists(loyalty):
    address = loyalty.start()
    saga_id = str(uuid.uuid4())
    first = pb.AwardPointsRequest(context=command(saga_id, "award"), customer_id="di", points=1)
    await call(address, "AwardPoints", first)
    other = pb.AwardPointsRequest(context=command(saga_id, "award"), customer_id="di", points=2)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(address, "AwardPoints", other)
    assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert await balance(address, "di") == 1


async def test_a_rejected_action_is_recorded_and_writes_nothing(loyalty):
    address = loyalty.start()
    too_many = pb.AwardPointsRequest(
        context=command(str(uuid.uuid4()), "award"), customer_id="ed", points=10**9
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(address, "AwardPoints", too_many)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert await balance(address, "ed") == 0


async def test_with_an_auth_file_commands_need_the_orchestrator_role(loyalty, tmp_path):
    tokens = {"orchestrator": "orchestrator-token", "reader": "reader-token"}
    (tmp_path / "auth.toml").write_text(
        "".join(
            f'[[caller]]\nname = "{role}"\nroles = ["{role}"]\n'
            f'token_sha256 = "{hashlib.sha256(token.encode()).hexdigest()}"\n'
            for role, token in tokens.items()
        )
    )
    address = loyalty.start("", "--auth-file", str(tmp_path / "auth.toml"))
    saga_id = str(uuid.uuid4())
    award = pb.AwardPointsRequest(context=command(saga_id, "award"), customer_id="fa", points=4)

    async def as_caller(role: str, method: str, request: object) -> object:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = pb_grpc.LoyaltyServiceStub(channel)
            metadata = (("authorization", f"Bearer {tokens[role]}"),) if role else ()
            return await getattr(stub, method)(request, timeout=5, metadata=metadata)

    codes = []
    for role in ("", "reader"):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await as_caller(role, "AwardPoints", award)
        codes.append(refused.value.code())
    await as_caller("orchestrator", "AwardPoints", award)
    read = await as_caller("reader", "GetBalance", pb.GetBalanceRequest(customer_id="fa"))

    assert codes == [grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED]
    assert read == pb.GetBalanceResponse(points=4)
