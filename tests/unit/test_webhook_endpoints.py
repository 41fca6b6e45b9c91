"""Which events an endpoint takes, which secrets sign during a rotation, and which
completion webhook URLs a server allows (pure, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.core.webhooks import (
    CompletionWebhookRefused,
    WebhookEndpoint,
    allowed_completion_url,
    short_type,
)

pytestmark = pytest.mark.unit

COMPLETED = "org.saga-orchestrator.saga.completed.v1"
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def test_a_type_is_matched_by_its_full_or_short_name_and_every_filter_narrows():
    endpoint = WebhookEndpoint(
        "ep_1",
        "https://x/",
        "whsec_AA==",
        event_types=("saga.completed",),
        saga_types=("trip",),
        namespaces=("billing",),
    )
    assert short_type(COMPLETED) == "saga.completed"
    assert endpoint.takes(COMPLETED, "trip", "billing")
    assert not endpoint.takes("org.saga-orchestrator.saga.failed.v1", "trip", "billing")
    assert not endpoint.takes(COMPLETED, "order", "billing")
    assert not endpoint.takes(COMPLETED, "trip", "default")
    assert WebhookEndpoint("ep_2", "https://x/", "whsec_AA==").takes(COMPLETED, "a", "b")


@pytest.mark.parametrize(
    ("expires", "signing"),
    [(NOW + timedelta(hours=1), ["new", "old"]), (NOW - timedelta(seconds=1), ["new"])],
    ids=["during-the-overlap", "after-it"],
)
def test_the_previous_secret_signs_only_during_the_overlap(expires, signing):
    endpoint = WebhookEndpoint(
        "ep_1", "https://x/", "new", previous_secret="old", previous_secret_expires=expires
    )
    assert endpoint.signing_secrets(NOW) == signing


def test_a_completion_url_must_start_with_an_allowed_prefix():
    allow = ("https://hooks.example.com/",)
    assert allowed_completion_url("", allow) is None
    assert allowed_completion_url("https://hooks.example.com/a", allow) == (
        "https://hooks.example.com/a"
    )
    with pytest.raises(CompletionWebhookRefused, match="--completion-webhook-allow"):
        allowed_completion_url("https://hooks.example.com.evil.net/a", allow)
    with pytest.raises(CompletionWebhookRefused, match="off on this server"):
        allowed_completion_url("https://hooks.example.com/a", ())
