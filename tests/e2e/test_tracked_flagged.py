"""A stuck choreography pages someone: a `saga serve` tracking the travel flow (local
RabbitMQ, PostgreSQL) with a webhook endpoint subscribed to `saga.needs_intervention`;
the hotel never answers, the booking is flagged after its window (followed on WatchSaga),
and the flag reaches the receiver as a signed CloudEvent naming the tracked saga."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from orchestrator.client import SagaClient
from saga.v1 import orchestrator_pb2 as pb
from saga.v1 import orchestrator_pb2_grpc as pb_grpc
from saga.v1 import webhooks_pb2 as wpb
from saga.v1 import webhooks_pb2_grpc as wpb_grpc
from tests.e2e.test_webhooks import WEBHOOK_FLAGS, assert_verifies
from tests.e2e.tracked_support import SAGA_TYPE, Choreography, Recorded, wait_for
from tests.support.tracked_sagas import travel_event
from tools.webhook_receiver import WebhookReceiver

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.slow]

FLAGGED = "org.saga-orchestrator.saga.needs_intervention.v1"


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    running = WebhookReceiver()
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


@pytest.mark.timeout(120)
async def test_a_stuck_tracked_saga_is_flagged_and_the_flag_reaches_a_webhook(
    tmp_path, postgres_url, receiver
):
    choreography = Choreography()
    recorded = Recorded(postgres_url)
    tracker = choreography.tracker(
        tmp_path, postgres_url, "tracker", within=1.0, extra_args=WEBHOOK_FLAGS
    )
    try:
        await choreography.declare()
        tracker.start()
        async with grpc.aio.insecure_channel(tracker.address) as channel:
            created = await wpb_grpc.SagaWebhooksStub(channel).CreateWebhookEndpoint(
                wpb.CreateWebhookEndpointRequest(
                    endpoint=wpb.WebhookEndpoint(
                        url=receiver.script("/pager"), event_types=["saga.needs_intervention"]
                    )
                ),
                timeout=10,
            )
            await choreography.publish(
                [
                    travel_event("booking_started", "stuck", traveller="Ada"),
                    travel_event("flight_booked", "stuck", pnr="PNR-1"),
                ]
            )  # ... and the hotel never says it booked

            async def tracked():
                return (await recorded.sagas()) or None

            [saga] = await wait_for(tracked, "the booking tracked")
            client = SagaClient.over(pb_grpc.SagaOrchestratorStub(channel), timeout=5)
            flagged = await client.wait(saga.saga_id, 30)  # on its WatchSaga stream
            assert flagged.needs_intervention
            assert flagged.status == pb.SAGA_STATUS_FAILED and flagged.failed_step == "book_hotel"

            [request] = await receiver.wait_for(lambda items: len(items) >= 1)
            assert request.path == "/pager"
            event = request.event
            assert event["type"] == FLAGGED and event["subject"] == saga.saga_id
            data = event["data"]
            assert isinstance(data, dict)
            assert data["sagaType"] == SAGA_TYPE and data["correlationId"] == "stuck"
            assert data["needsIntervention"] is True
            assert "book_hotel" in str(data["error"])  # the halt says which step is stuck
            assert_verifies(created.secret, request)
    finally:
        tracker.stop()
        await choreography.delete()
