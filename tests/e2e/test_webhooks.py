"""Webhooks end to end: `saga serve --webhooks` (a separate process, on SQLite and on
PostgreSQL) delivers saga events to a real HTTP receiver on 127.0.0.1, signed so that
both our verifier and the `standardwebhooks` package accept them; failing, slow and
redirecting receivers are retried on a short schedule, 410 disables an endpoint, a dead
delivery is listed and replayed, and a rotated secret signs beside the new one."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
import standardwebhooks
from google.protobuf import field_mask_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from orchestrator.events.webhooks import verify
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from saga.v1 import webhooks_pb2 as wpb
from saga.v1 import webhooks_pb2_grpc as wpb_grpc
from tests.e2e.conftest import wait_terminal
from tests.e2e.test_bad_input import count_rows
from tests.e2e.test_cli import saga_cli
from tests.e2e.test_telemetry import scrape, value
from tests.support.payloads import struct, travel
from tests.support.starting import start_saga
from tools.processes import ChildProcess, orchestrator_process
from tools.webhook_receiver import Answer, Received, WebhookReceiver

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

COMPLETED = "org.saga-orchestrator.saga.completed.v1"
SHORT_SCHEDULE = "0,0.2,0.2,0.2,0.2"
"""Five attempts, 0.2 s apart: the ~3-day production schedule, shrunk."""
WEBHOOK_FLAGS = [
    "--webhooks",
    "--webhooks-allow-private",
    "--webhooks-retry-delays",
    SHORT_SCHEDULE,
    "--webhooks-timeout",
    "1",
    "--metrics-listen",
    "127.0.0.1:0",
]


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    running = WebhookReceiver()
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
def webhook_orchestrator(
    tmp_path: Path, database_url: str, participants: ChildProcess
) -> Iterator[ChildProcess]:
    process = orchestrator_process(
        tmp_path, database_url, participants.info["services"], extra_args=WEBHOOK_FLAGS
    )
    try:
        yield process.start()
    finally:
        process.stop()


@pytest.fixture
async def channel(webhook_orchestrator: ChildProcess) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(webhook_orchestrator.address) as opened:
        yield opened


async def create_endpoint(
    channel: grpc.aio.Channel, url: str, **fields: object
) -> wpb.CreateWebhookEndpointResponse:
    endpoint = wpb.WebhookEndpoint(url=url, event_types=["saga.completed"], **fields)
    request = wpb.CreateWebhookEndpointRequest(endpoint=endpoint)
    created: wpb.CreateWebhookEndpointResponse = await wpb_grpc.SagaWebhooksStub(
        channel
    ).CreateWebhookEndpoint(request, timeout=10)
    return created


async def completed_saga(channel: grpc.aio.Channel, name: str) -> str:
    stub = pb_grpc.SagaOrchestratorStub(channel)
    saga_id = await start_saga(stub, travel(name), name)
    assert (await wait_terminal(stub, saga_id)).status == pb.SAGA_STATUS_COMPLETED
    return saga_id


async def deliveries(channel: grpc.aio.Channel, **where: object) -> list[wpb.WebhookDelivery]:
    request = wpb.ListWebhookDeliveriesRequest(**where)
    answer = await wpb_grpc.SagaWebhooksStub(channel).ListWebhookDeliveries(request, timeout=10)
    return list(answer.deliveries)


async def settled(channel: grpc.aio.Channel, saga_id: str, status: int) -> wpb.WebhookDelivery:
    """The saga's one delivery once it is in `status` (polled, bounded)."""
    deadline = time.monotonic() + 30
    while True:
        found = await deliveries(channel, saga_id=saga_id)
        if found and found[0].status == status:
            assert len(found) == 1
            return found[0]
        assert time.monotonic() < deadline, f"delivery of {saga_id} never became {status}: {found}"
        await asyncio.sleep(0.1)


def assert_verifies(secret: str, request: Received) -> None:
    """Our verifier and the standardwebhooks package both accept the request."""
    verify(secret, request.headers, request.body, now=time.time())
    standardwebhooks.Webhook(secret).verify(request.body, request.headers)


async def test_a_failing_receiver_is_retried_until_it_answers_then_delivered_once(
    channel: grpc.aio.Channel, receiver: WebhookReceiver, webhook_orchestrator: ChildProcess
):
    url = receiver.script("/flaky", Answer(500), Answer(500), Answer(503))
    created = await create_endpoint(channel, url)
    saga_id = await completed_saga(channel, "flaky")

    delivery = await settled(channel, saga_id, wpb.WEBHOOK_DELIVERY_STATUS_DELIVERED)
    assert delivery.attempts == 4 and delivery.last_http_status == 200
    requests = receiver.on("/flaky")
    assert [r.status for r in requests] == [500, 500, 503, 200]
    assert {r.headers["webhook-id"] for r in requests} == {
        f"{saga_id}:{delivery.event_id.split(':')[1]}"
    }
    assert requests[-1].event["type"] == COMPLETED and requests[-1].event["subject"] == saga_id
    assert requests[-1].headers["Content-Type"] == "application/cloudevents+json"
    for request in requests:
        assert_verifies(created.secret, request)
    samples = scrape(webhook_orchestrator.info["metrics_address"])
    assert value(samples, "saga_webhook_deliveries_total", outcome="delivered") == 1
    assert value(samples, "saga_webhook_deliveries_total", outcome="failed") == 3
    assert value(samples, "saga_webhook_delivery_seconds_count") == 4


async def test_a_receiver_answering_410_disables_its_endpoint(
    channel: grpc.aio.Channel, receiver: WebhookReceiver
):
    created = await create_endpoint(channel, receiver.script("/gone", Answer(410)))
    saga_id = await completed_saga(channel, "gone")

    delivery = await settled(channel, saga_id, wpb.WEBHOOK_DELIVERY_STATUS_FAILED)
    assert delivery.attempts == 1 and delivery.last_http_status == 410
    endpoint = await wpb_grpc.SagaWebhooksStub(channel).GetWebhookEndpoint(
        wpb.GetWebhookEndpointRequest(endpoint_id=created.endpoint.endpoint_id), timeout=10
    )
    assert not endpoint.enabled and "410" in endpoint.disabled_reason
    # Retrying a delivery of a disabled endpoint re-enables nothing: it is refused.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await wpb_grpc.SagaWebhooksStub(channel).RetryWebhookDeliveries(
            wpb.RetryWebhookDeliveriesRequest(delivery_ids=[delivery.delivery_id]), timeout=10
        )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "enable it first" in (refused.value.details() or "")


async def test_a_rotated_secret_signs_beside_the_new_one(
    channel: grpc.aio.Channel, receiver: WebhookReceiver
):
    created = await create_endpoint(channel, receiver.script("/rotated"))
    rotated = await wpb_grpc.SagaWebhooksStub(channel).RotateWebhookSecret(
        wpb.RotateWebhookSecretRequest(
            endpoint_id=created.endpoint.endpoint_id, overlap_seconds=3600
        ),
        timeout=10,
    )
    assert rotated.secret != created.secret
    assert rotated.endpoint.HasField("previous_secret_expire_time")
    saga_id = await completed_saga(channel, "rotated")
    await settled(channel, saga_id, wpb.WEBHOOK_DELIVERY_STATUS_DELIVERED)

    [request] = receiver.on("/rotated")
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    assert_verifies(created.secret, request)
    assert_verifies(rotated.secret, request)


async def test_a_slow_receiver_times_out_and_is_retried(
    channel: grpc.aio.Channel, receiver: WebhookReceiver
):
    # Held far past --webhooks-timeout (1 s); released once the retry has arrived.
    await create_endpoint(channel, receiver.script("/slow", Answer(200, hold=60)))
    saga_id = await completed_saga(channel, "slow")

    await receiver.wait_for(lambda items: len([r for r in items if r.path == "/slow"]) == 2)
    receiver.release()
    delivery = await settled(channel, saga_id, wpb.WEBHOOK_DELIVERY_STATUS_DELIVERED)
    assert delivery.attempts == 2


async def test_a_redirect_is_not_followed_and_a_dead_delivery_is_replayed(
    channel: grpc.aio.Channel, receiver: WebhookReceiver
):
    target = receiver.base_url + "/redirect-target"
    moved = Answer(302, headers={"Location": target})
    created = await create_endpoint(channel, receiver.script("/moved", *[moved] * 5))
    saga_id = await completed_saga(channel, "moved")

    dead = await settled(channel, saga_id, wpb.WEBHOOK_DELIVERY_STATUS_DEAD)
    assert dead.attempts == 5 and dead.last_http_status == 302
    assert "redirects are not followed" in dead.last_error
    assert receiver.on("/redirect-target") == []
    listed = await deliveries(
        channel,
        endpoint_id=created.endpoint.endpoint_id,
        status=wpb.WEBHOOK_DELIVERY_STATUS_DEAD,
    )
    assert [d.delivery_id for d in listed] == [dead.delivery_id]

    # The receiver is fixed (its script is spent: 200 from now on); replay the dead one.
    retried = await wpb_grpc.SagaWebhooksStub(channel).RetryWebhookDeliveries(
        wpb.RetryWebhookDeliveriesRequest(endpoint_id=created.endpoint.endpoint_id), timeout=10
    )
    assert retried.retried == 1
    replayed = await settled(channel, saga_id, wpb.WEBHOOK_DELIVERY_STATUS_DELIVERED)
    assert replayed.delivery_id == dead.delivery_id and replayed.attempts == 1
    assert [r.status for r in receiver.on("/moved")] == [302] * 5 + [200]


async def test_endpoints_are_updated_listed_and_deleted(
    channel: grpc.aio.Channel, receiver: WebhookReceiver
):
    stub = wpb_grpc.SagaWebhooksStub(channel)
    created = await create_endpoint(channel, receiver.script("/managed"), description="first")
    endpoint = wpb.WebhookEndpoint(
        endpoint_id=created.endpoint.endpoint_id, description="second", max_concurrency=2
    )
    mask = field_mask_pb2.FieldMask(paths=["description", "max_concurrency"])
    updated = await stub.UpdateWebhookEndpoint(
        wpb.UpdateWebhookEndpointRequest(endpoint=endpoint, update_mask=mask), timeout=10
    )
    assert (updated.description, updated.max_concurrency, updated.url) == (
        "second",
        2,
        created.endpoint.url,
    )
    listed = await stub.ListWebhookEndpoints(wpb.ListWebhookEndpointsRequest(), timeout=10)
    assert [e.endpoint_id for e in listed.endpoints] == [created.endpoint.endpoint_id]
    await stub.DeleteWebhookEndpoint(
        wpb.DeleteWebhookEndpointRequest(endpoint_id=created.endpoint.endpoint_id), timeout=10
    )
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.GetWebhookEndpoint(
            wpb.GetWebhookEndpointRequest(endpoint_id=created.endpoint.endpoint_id), timeout=10
        )
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.fixture
def plain_orchestrator(
    tmp_path: Path, database_url: str, participants: ChildProcess
) -> Iterator[ChildProcess]:
    """`saga serve` with webhooks on but private targets refused, as in production."""
    process = orchestrator_process(
        tmp_path, database_url, participants.info["services"], extra_args=["--webhooks"]
    )
    try:
        yield process.start()
    finally:
        process.stop()


async def test_a_loopback_target_is_refused_without_the_setting_and_nothing_is_stored(
    plain_orchestrator: ChildProcess, receiver: WebhookReceiver
):
    async with grpc.aio.insecure_channel(plain_orchestrator.address) as opened:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await create_endpoint(opened, receiver.script("/private"))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "loopback" in (refused.value.details() or "")
        assert "--webhooks-allow-private" in (refused.value.details() or "")
        listed = await wpb_grpc.SagaWebhooksStub(opened).ListWebhookEndpoints(
            wpb.ListWebhookEndpointsRequest(), timeout=10
        )
        assert list(listed.endpoints) == []


async def test_without_webhooks_every_webhook_rpc_is_failed_precondition(
    orchestrator: ChildProcess,
):
    async with grpc.aio.insecure_channel(orchestrator.address) as opened:
        with pytest.raises(grpc.aio.AioRpcError) as off:
            await wpb_grpc.SagaWebhooksStub(opened).ListWebhookEndpoints(
                wpb.ListWebhookEndpointsRequest(), timeout=10
            )
    assert off.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "--webhooks" in (off.value.details() or "")


COMPLETION_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def completion_orchestrator(
    tmp_path: Path, database_url: str, participants: ChildProcess, receiver: WebhookReceiver
) -> Iterator[ChildProcess]:
    """Completion webhooks allowed under the receiver's /done/ only; no --webhooks."""
    flags = [
        "--webhooks-allow-private",
        "--completion-webhook-allow",
        receiver.base_url + "/done/",
    ]
    process = orchestrator_process(
        tmp_path,
        database_url,
        participants.info["services"],
        env={"SAGA_COMPLETION_WEBHOOK_SECRET": COMPLETION_SECRET},
        extra_args=flags,
    )
    try:
        yield process.start()
    finally:
        process.stop()


async def test_a_completion_webhook_on_the_allow_list_gets_the_terminal_event(
    completion_orchestrator: ChildProcess, receiver: WebhookReceiver
):
    async with grpc.aio.insecure_channel(completion_orchestrator.address) as opened:
        stub = pb_grpc.SagaOrchestratorStub(opened)
        url = receiver.script("/done/trip-1")
        request = pb.StartSagaRequest(
            saga_type="travel_booking",
            correlation_id="trip-1",
            payload=struct(travel("done")),
            completion_webhook_url=url,
        )
        saga_id = (await stub.StartSaga(request, timeout=10)).saga_id
        assert (await wait_terminal(stub, saga_id)).status == pb.SAGA_STATUS_COMPLETED

        [received] = await receiver.wait_for(lambda items: len(items) == 1)
        assert received.path == "/done/trip-1"
        assert received.event["type"] == COMPLETED and received.event["subject"] == saga_id
        assert_verifies(COMPLETION_SECRET, received)
        delivery = await settled(opened, saga_id, wpb.WEBHOOK_DELIVERY_STATUS_DELIVERED)
        assert (delivery.endpoint_id, delivery.url) == ("completion", url)


async def test_a_completion_webhook_off_the_allow_list_is_refused_and_nothing_is_stored(
    completion_orchestrator: ChildProcess, database_url: str
):
    async with grpc.aio.insecure_channel(completion_orchestrator.address) as opened:
        request = pb.StartSagaRequest(
            saga_type="travel_booking",
            correlation_id="trip-2",
            payload=struct(travel("elsewhere")),
            completion_webhook_url="https://elsewhere.example.com/hook",
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await pb_grpc.SagaOrchestratorStub(opened).StartSaga(request, timeout=10)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "--completion-webhook-allow" in (refused.value.details() or "")
    assert count_rows(database_url, "sagas") == 0


async def test_the_cli_manages_endpoints_and_the_reflection_lists_the_service(
    webhook_orchestrator: ChildProcess, receiver: WebhookReceiver
):
    address = ["--address", webhook_orchestrator.address]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return saga_cli("webhooks", *args, *address)

    created = cli("create", receiver.script("/cli"), "--event-type", "saga.completed", "--json")
    assert created.returncode == 0, created.stderr
    answer = json.loads(created.stdout)
    endpoint_id, secret = answer["endpoint"]["endpoint_id"], answer["secret"]
    assert secret.startswith("whsec_")

    disabled = cli("update", endpoint_id, "--no-enable", "--description", "paused", "--json")
    assert json.loads(disabled.stdout).get("enabled", False) is False
    listed = cli("list")
    assert (
        endpoint_id in listed.stdout and "DISABLED" in listed.stdout and "paused" in listed.stdout
    )
    rotated = cli("rotate", endpoint_id, "--overlap", "60")
    assert rotated.returncode == 0 and "secret: whsec_" in rotated.stdout
    assert secret not in rotated.stdout
    assert cli("deliveries", "--endpoint", endpoint_id, "--json").returncode == 0
    assert cli("delete", endpoint_id).returncode == 0
    missing = cli("get", endpoint_id)
    assert missing.returncode == 1 and "no webhook endpoint" in missing.stderr

    with grpc.insecure_channel(webhook_orchestrator.address) as channel:
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert "saga.v1.SagaWebhooks" in services
