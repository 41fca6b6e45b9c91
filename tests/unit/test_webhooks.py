"""Webhook signing, verifying, retry schedule and target check: ours against the
`standardwebhooks` reference package, both ways, and the schedule with a seeded rng."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
import standardwebhooks

from orchestrator.events.webhooks import (
    DEFAULT_RETRY_DELAYS,
    Outcome,
    RetrySchedule,
    TargetRefused,
    WebhookVerificationError,
    check_addresses,
    generate_secret,
    outcome_of,
    parse_retry_after,
    refusal_reason,
    resolve_target,
    secret_key,
    signature_headers,
    verify,
)

pytestmark = pytest.mark.unit

NOW = 1_767_225_600  # 2026-01-01T00:00:00Z
BODY = b'{"specversion":"1.0","id":"saga-1:7","type":"saga.completed.v1","data":{"x":"\xc3\xa9"}}'
MSG_ID = "saga-1:7"


def test_generated_secrets_are_whsec_base64_and_distinct():
    first, second = generate_secret(), generate_secret()
    assert first.startswith("whsec_") and first != second
    assert len(secret_key(first)) == 32


@pytest.mark.parametrize("bad", ["", "whsec_", "abc", "whsec_not base64!"])
def test_malformed_secrets_are_refused(bad):
    with pytest.raises(ValueError):
        secret_key(bad)


def test_our_signature_is_verified_by_the_reference_package():
    secret = generate_secret()
    now = int(datetime.now(UTC).timestamp())
    headers = signature_headers([secret], MSG_ID, BODY, timestamp=now)

    assert standardwebhooks.Webhook(secret).verify(BODY, headers, json_parse=False) is None


def test_the_reference_packages_signature_is_verified_by_ours():
    secret = generate_secret()
    signature = standardwebhooks.Webhook(secret).sign(
        MSG_ID, datetime.fromtimestamp(NOW, UTC), BODY
    )
    headers = {"Webhook-Id": MSG_ID, "Webhook-Timestamp": str(NOW), "Webhook-Signature": signature}

    verify(secret, headers, BODY, now=NOW)


def test_during_a_rotation_either_secret_verifies():
    old, new = generate_secret(), generate_secret()
    now = int(datetime.now(UTC).timestamp())  # the reference package reads the clock
    headers = signature_headers([new, old], MSG_ID, BODY, timestamp=now)

    assert len(headers["webhook-signature"].split(" ")) == 2
    verify(old, headers, BODY, now=now)
    verify(new, headers, BODY, now=now)
    verify([generate_secret(), old], headers, BODY, now=now)
    for secret in (old, new):
        standardwebhooks.Webhook(secret).verify(BODY, headers, json_parse=False)
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        verify(generate_secret(), headers, BODY, now=now)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(generate_secret()).verify(BODY, headers, json_parse=False)


def tampered(headers: dict[str, str], **changes: str) -> dict[str, str]:
    return {**headers, **changes}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"body": BODY.replace(b"saga-1", b"saga-2")}, "no matching signature"),
        ({"webhook-timestamp": str(NOW + 1)}, "no matching signature"),
        ({"webhook-id": "saga-1:8"}, "no matching signature"),
        ({"now": NOW + 301}, "more than 300 s"),
        ({"now": NOW - 301}, "more than 300 s"),
        ({"webhook-timestamp": "yesterday"}, "not unix seconds"),
        ({"webhook-signature": ""}, "missing"),
        ({"webhook-signature": "v1a,abc"}, "no matching signature"),
    ],
)
def test_tampered_deliveries_are_refused(change, message):
    secret = generate_secret()
    headers = signature_headers([secret], MSG_ID, BODY, timestamp=NOW)
    body = change.pop("body", BODY)
    now = change.pop("now", NOW)

    with pytest.raises(WebhookVerificationError, match=message):
        verify(secret, tampered(headers, **change), body, now=now)


def test_timestamp_within_the_tolerance_verifies():
    secret = generate_secret()
    headers = signature_headers([secret], MSG_ID, BODY, timestamp=NOW)
    verify(secret, headers, BODY, now=NOW + 300)
    verify(secret, headers, BODY, now=NOW - 300)


def test_schedule_spans_about_three_days_within_its_jitter():
    schedule = RetrySchedule()
    rng = random.Random(25)
    delays = [schedule.delay_after(n, rng=rng) for n in range(1, schedule.attempts)]

    assert schedule.delay_after(schedule.attempts, rng=rng) is None
    assert DEFAULT_RETRY_DELAYS[0] == 0
    for delay, base in zip(delays, DEFAULT_RETRY_DELAYS[1:], strict=True):
        assert delay is not None and base * 0.8 <= delay <= base * 1.2
    total = sum(d for d in delays if d is not None)
    assert 2 * 86400 <= total <= 3.5 * 86400
    # Jittered: the same attempt drawn twice differs; the same seed repeats itself.
    assert schedule.delay_after(3, rng=rng) != schedule.delay_after(3, rng=rng)
    assert schedule.delay_after(3, rng=random.Random(1)) == schedule.delay_after(
        3, rng=random.Random(1)
    )


def test_retry_after_postpones_but_never_hastens_and_is_capped():
    schedule = RetrySchedule(jitter=0.0)
    assert schedule.delay_after(1, retry_after=120) == 120  # 5 s scheduled, asked for 120
    assert schedule.delay_after(4, retry_after=1) == 2 * 3600  # asked sooner: schedule wins
    assert schedule.delay_after(1, retry_after=30 * 86400) == 10 * 3600  # capped
    with pytest.raises(ValueError):
        schedule.delay_after(0)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Thu, 01 Jan 2026 00:02:00 GMT", 120.0),
        ("Wed, 31 Dec 2025 23:00:00 GMT", 0.0),
        ("soon", None),
        ("-5", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_is_read_as_seconds_or_http_date(header, seconds):
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after(header, now=now) == seconds


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.DELIVERED),
        (204, Outcome.DELIVERED),
        (301, Outcome.RETRY),
        (307, Outcome.RETRY),
        (400, Outcome.RETRY),
        (410, Outcome.DISABLE),
        (429, Outcome.RETRY),
        (503, Outcome.RETRY),
    ],
)
def test_answers_map_to_outcomes(status, outcome):
    assert outcome_of(status) is outcome


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("100.64.0.1", "not globally routable"),
        ("93.184.215.14", None),
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
        ("::ffff:8.8.8.8", None),
    ],
)
def test_target_addresses_are_judged(address, reason):
    assert refusal_reason(address) == reason


def test_one_private_address_among_public_ones_refuses_the_target():
    with pytest.raises(TargetRefused, match=r"10\.0\.0\.1 is private"):
        check_addresses(["8.8.8.8", "10.0.0.1"])
    with pytest.raises(TargetRefused, match="no address"):
        check_addresses([])
    check_addresses(["8.8.8.8", "2606:4700:4700::1111"])
    check_addresses(["127.0.0.1", "::1"], allow_private=True)


async def test_resolved_loopback_target_is_refused_unless_allowed():
    with pytest.raises(TargetRefused, match="loopback"):
        await resolve_target("http://localhost:8080/hook")
    target = await resolve_target("http://localhost:8080/hook", allow_private=True)
    assert target.port == 8080 and target.host == "localhost"
    assert set(target.addresses) <= {"127.0.0.1", "::1"} and target.addresses


@pytest.mark.parametrize(
    "url", ["ftp://example.com/", "http:///nohost", "https://[::1]/", "http://127.0.0.1:1/"]
)
async def test_unusable_or_private_urls_are_refused(url):
    with pytest.raises(TargetRefused):
        await resolve_target(url)


async def test_literal_public_address_needs_no_dns():
    target = await resolve_target("https://8.8.8.8/hook")
    assert target.addresses == ("8.8.8.8",) and target.port == 443


def test_verification_error_time_window_is_configurable():
    secret = generate_secret()
    headers = signature_headers([secret], MSG_ID, BODY, timestamp=NOW)
    late = NOW + int(timedelta(minutes=10).total_seconds())
    verify(secret, headers, BODY, now=late, tolerance=600)
    with pytest.raises(WebhookVerificationError):
        verify(secret, headers, BODY, now=late)
