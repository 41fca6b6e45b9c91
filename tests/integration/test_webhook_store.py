"""The webhook tables on both back ends: a republished event makes no second delivery,
claims keep each endpoint within its concurrency cap across owners, and a settle by an
owner that lost the delivery is void."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from orchestrator.core.clock import utc_now
from orchestrator.core.records import Lease
from orchestrator.core.webhooks import (
    AttemptResult,
    DeliveryFilter,
    DeliveryStatus,
    NewDelivery,
    WebhookEndpoint,
)
from orchestrator.events.brokers import OutgoingEvent
from orchestrator.events.webhook_delivery import CheckedResolver, WebhookFanout, WebhookSettings
from orchestrator.events.webhooks import TargetRefused
from orchestrator.store import Store
from orchestrator.store.webhooks import WebhookRows

pytestmark = pytest.mark.integration

LIVE = Lease("replica-a", 60.0)


def rows(store: Store) -> WebhookRows:
    assert isinstance(store, WebhookRows)
    return store


def delivery(endpoint_id: str, n: int) -> NewDelivery:
    return NewDelivery(endpoint_id, f"saga-{n}:1", f"saga-{n}", "t.saga.started.v1", b"{}")


async def test_an_event_written_twice_makes_one_delivery(store: Store):
    webhooks = rows(store)
    await webhooks.create_webhook_endpoint(WebhookEndpoint("ep_a", "http://x/", "whsec_AA=="))
    await webhooks.add_webhook_deliveries([delivery("ep_a", 1), delivery("ep_a", 2)])
    await webhooks.add_webhook_deliveries([delivery("ep_a", 1)])
    listed = await webhooks.list_webhook_deliveries(DeliveryFilter(endpoint_id="ep_a"), None, 10)
    assert sorted(d.event_id for d in listed) == ["saga-1:1", "saga-2:1"]
    assert await webhooks.pending_webhook_deliveries() == {"ep_a": 2}


async def test_claims_keep_an_endpoint_within_its_cap_across_owners(store: Store):
    webhooks = rows(store)
    endpoint = WebhookEndpoint("ep_b", "http://x/", "whsec_AA==", max_concurrency=2)
    await webhooks.create_webhook_endpoint(endpoint)
    await webhooks.add_webhook_deliveries([delivery("ep_b", n) for n in range(5)])

    first = await webhooks.claim_webhook_deliveries(LIVE, 10)
    assert len(first) == 2 and all(d.attempts == 1 for d in first)
    assert await webhooks.claim_webhook_deliveries(Lease("replica-b", 60.0), 10) == []

    done = AttemptResult(DeliveryStatus.DELIVERED, http_status=200)
    assert not await webhooks.settle_webhook_delivery(first[0].delivery_id, "replica-b", done)
    assert await webhooks.settle_webhook_delivery(first[0].delivery_id, LIVE.owner, done)
    [next_one] = await webhooks.claim_webhook_deliveries(Lease("replica-b", 60.0), 10)
    assert next_one.delivery_id not in {d.delivery_id for d in first}


async def test_a_disabled_endpoint_gets_no_claims_and_dead_ones_are_retried(store: Store):
    webhooks = rows(store)
    await webhooks.create_webhook_endpoint(WebhookEndpoint("ep_c", "http://x/", "whsec_AA=="))
    await webhooks.add_webhook_deliveries([delivery("ep_c", 1)])
    [claimed] = await webhooks.claim_webhook_deliveries(LIVE, 10)
    dead = AttemptResult(DeliveryStatus.DEAD, http_status=500, error="HTTP 500")
    assert await webhooks.settle_webhook_delivery(claimed.delivery_id, LIVE.owner, dead)
    assert await webhooks.claim_webhook_deliveries(LIVE, 10) == []

    await webhooks.disable_webhook_endpoint("ep_c", "gone")
    stored = await webhooks.get_webhook_endpoint("ep_c")
    assert stored is not None and not stored.enabled and stored.disabled_reason == "gone"
    assert await webhooks.retry_webhook_deliveries(endpoint_id="ep_c") == 1
    assert await webhooks.claim_webhook_deliveries(LIVE, 10) == []

    await webhooks.update_webhook_endpoint(
        WebhookEndpoint("ep_c", "http://x/", "whsec_AA==", enabled=True)
    )
    [again] = await webhooks.claim_webhook_deliveries(LIVE, 10)
    assert again.attempts == 1
    assert await webhooks.delete_webhook_endpoint("ep_c")
    assert await webhooks.list_webhook_deliveries(DeliveryFilter(), None, 10) == []


def outgoing(saga_id: str, seq: int, name: str, namespace: str = "default") -> OutgoingEvent:
    body = json.dumps({"id": f"{saga_id}:{seq}", "namespace": namespace}).encode()
    return OutgoingEvent(
        event_id=f"{saga_id}:{seq}",
        saga_type="trip",
        event_type=f"org.saga-orchestrator.{name}.v1",
        subject=saga_id,
        body=body,
    )


async def test_a_batch_the_relay_publishes_again_makes_no_second_delivery(store: Store):
    webhooks = rows(store)
    completed_only = WebhookEndpoint(
        "ep_d", "http://x/", "whsec_AA==", event_types=("saga.completed",)
    )
    other_namespace = WebhookEndpoint("ep_e", "http://x/", "whsec_AA==", namespaces=("billing",))
    await webhooks.create_webhook_endpoint(completed_only)
    await webhooks.create_webhook_endpoint(other_namespace)
    fanout = WebhookFanout(webhooks, WebhookSettings())
    batch = [outgoing("s1", 1, "saga.started"), outgoing("s1", 2, "saga.completed")]

    await fanout.publish(batch)
    await fanout.publish(batch)  # the relay lost its deletes and republishes

    listed = await webhooks.list_webhook_deliveries(DeliveryFilter(), None, 10)
    assert [(d.endpoint_id, d.event_id) for d in listed] == [("ep_d", "s1:2")]


async def test_the_delivery_resolver_refuses_a_name_that_resolves_to_loopback():
    """The addresses a delivery connects to are checked as they are resolved: a public
    name re-pointed at a private address (DNS rebinding) fails the attempt."""
    with pytest.raises(TargetRefused, match="loopback"):
        await CheckedResolver(allow_private=False).resolve("localhost", 80)
    allowed = await CheckedResolver(allow_private=True).resolve("localhost", 80)
    assert allowed and all(item["port"] == 80 for item in allowed)


async def test_delivered_deliveries_are_forgotten_once_old_and_dead_ones_stay(store: Store):
    webhooks = rows(store)
    await webhooks.create_webhook_endpoint(WebhookEndpoint("ep_f", "http://x/", "whsec_AA=="))
    await webhooks.add_webhook_deliveries([delivery("ep_f", n) for n in range(2)])
    delivered, dead = await webhooks.claim_webhook_deliveries(LIVE, 10)
    ok = AttemptResult(DeliveryStatus.DELIVERED, http_status=200)
    await webhooks.settle_webhook_delivery(delivered.delivery_id, LIVE.owner, ok)
    await webhooks.settle_webhook_delivery(
        dead.delivery_id, LIVE.owner, AttemptResult(DeliveryStatus.DEAD)
    )

    assert await webhooks.forget_delivered_webhooks(utc_now() - timedelta(days=1), 100) == 0
    assert await webhooks.forget_delivered_webhooks(utc_now() + timedelta(seconds=1), 100) == 1
    [left] = await webhooks.list_webhook_deliveries(DeliveryFilter(), None, 10)
    assert left.delivery_id == dead.delivery_id and left.status is DeliveryStatus.DEAD
