"""Webhook building blocks: Standard Webhooks signing and verifying, the retry schedule,
and the check that keeps deliveries away from private networks.

Pure except `resolve_target`, the one function that asks DNS. The delivery code built on
these (docs/events-delivery.md) must also:

- never follow a redirect (a 3xx is a failed attempt, retried on the schedule): a
  redirect could point a checked public URL at a private address;
- connect to the addresses `resolve_target` checked, not resolve the name again (a
  second answer could differ: DNS rebinding);
- disable the endpoint on HTTP 410 Gone (`outcome_of`).

Signing follows https://www.standardwebhooks.com: a secret is `whsec_` + base64 of
random bytes; each delivery carries `webhook-id` (the event id, the same on every
retry), `webhook-timestamp` (unix seconds of this attempt) and `webhook-signature`, a
space-separated list of `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`: one per
secret, so during a rotation the old and the new secret both sign and a receiver
holding either verifies.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import hashlib
import hmac
import ipaddress
import math
import random
import secrets
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
"""Random bytes in a generated secret (the specification asks for 24 to 64)."""

SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE = 300.0
"""Seconds a verifier accepts between `webhook-timestamp` and its own clock, either way."""

FOLLOW_REDIRECTS = False
"""Deliveries never follow redirects; a 3xx answer is a failed attempt."""

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookVerificationError(ValueError):
    """A delivery's headers or signature do not check out; the message says which."""


class TargetRefused(ValueError):
    """A webhook URL or one of its addresses is not allowed as a target."""


def generate_secret() -> str:
    """A new `whsec_` secret from the operating system's random source."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret; ValueError when it is not one."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error as exc:
        raise ValueError("a webhook secret is whsec_ followed by base64") from exc
    if not key:
        raise ValueError("a webhook secret may not be empty")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "{msg_id}.{timestamp}.{body}">` under `secret`."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def signature_headers(
    signing_secrets: Sequence[str], msg_id: str, body: bytes, *, timestamp: int
) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt, signed by every secret given
    (the new and the old one during a rotation, in that order)."""
    if not signing_secrets:
        raise ValueError("at least one secret signs a webhook")
    signatures = " ".join(sign(s, msg_id, timestamp, body) for s in signing_secrets)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signatures,
    }


def verify(
    verifying_secrets: str | Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE,
) -> None:
    """Raises `WebhookVerificationError` unless some `v1` signature in `headers` matches
    one of the secrets and the timestamp is within `tolerance` seconds of `now`.

    Header names are case-insensitive; signatures are compared in constant time;
    signatures of other versions (`v1a`, asymmetric) are skipped.
    """
    if isinstance(verifying_secrets, str):
        verifying_secrets = [verifying_secrets]
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id = lowered.get("webhook-id")
    raw_timestamp = lowered.get("webhook-timestamp")
    raw_signatures = lowered.get("webhook-signature")
    if not (msg_id and raw_timestamp and raw_signatures):
        raise WebhookVerificationError(
            "missing webhook-id, webhook-timestamp or webhook-signature header"
        )
    try:
        timestamp = int(raw_timestamp)
    except ValueError as exc:
        raise WebhookVerificationError("webhook-timestamp is not unix seconds") from exc
    if abs(now - timestamp) > tolerance:
        raise WebhookVerificationError(
            f"webhook-timestamp is more than {tolerance:g} s from the receiver's clock"
        )
    expected = [sign(secret, msg_id, timestamp, body).encode() for secret in verifying_secrets]
    matched = False
    for candidate in raw_signatures.split(" "):
        version, _, _ = candidate.partition(",")
        if version != SIGNATURE_VERSION:
            continue
        for signature in expected:
            # No early exit: every pair is compared, in constant time each.
            matched |= hmac.compare_digest(signature, candidate.encode())
    if not matched:
        raise WebhookVerificationError("no matching signature")


HOUR = 3600.0
DEFAULT_RETRY_DELAYS: tuple[float, ...] = (
    0.0,
    5.0,
    5 * 60.0,
    30 * 60.0,
    2 * HOUR,
    5 * HOUR,
    10 * HOUR,
    10 * HOUR,
    10 * HOUR,
    10 * HOUR,
    10 * HOUR,
    10 * HOUR,
)
"""Seconds before each attempt: at once, 5 s, 5 min, 30 min, 2 h, 5 h, then 10 h six
times; twelve attempts over about 67.6 hours (2.8 days) before jitter."""


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """When to attempt a delivery again.

    `delays[n]` is the wait before attempt n+1 (attempt 1 goes at once), each drawn
    within ±`jitter` of its value so endpoints recovering together are not hit in step.
    A `Retry-After` the receiver sent is honoured as a floor, capped at
    `retry_after_cap` seconds: it may postpone an attempt, never hasten it.
    """

    delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS
    jitter: float = 0.2
    retry_after_cap: float = 10 * HOUR

    @property
    def attempts(self) -> int:
        return len(self.delays)

    def delay_after(
        self,
        failed_attempts: int,
        *,
        rng: random.Random | None = None,
        retry_after: float | None = None,
    ) -> float | None:
        """Seconds to wait after `failed_attempts` failures (≥ 1) before the next
        attempt; None when the schedule is spent and the delivery is dead."""
        if failed_attempts < 1:
            raise ValueError("the first attempt needs no delay; count failures from 1")
        if failed_attempts >= len(self.delays):
            return None
        base = self.delays[failed_attempts]
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        delay = base * (1 + spread)
        if retry_after is not None:
            delay = max(delay, min(max(retry_after, 0.0), self.retry_after_cap))
        return delay


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """A `Retry-After` header in seconds from `now`: delta-seconds or an HTTP date
    (RFC 9110 §10.2.3); a date in the past is 0; None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = (when - now).total_seconds()
    return max(seconds, 0.0) if math.isfinite(seconds) else None


class Outcome(enum.Enum):
    """What an HTTP answer means for a delivery."""

    DELIVERED = "delivered"
    RETRY = "retry"
    DISABLE = "disable"


def outcome_of(status: int) -> Outcome:
    """2xx delivered; 410 Gone disables the endpoint; anything else (3xx included, as
    redirects are not followed) is a failed attempt, retried on the schedule."""
    if 200 <= status < 300:
        return Outcome.DELIVERED
    if status == 410:
        return Outcome.DISABLE
    return Outcome.RETRY


def refusal_reason(address: str | IPAddress) -> str | None:
    """Why `address` may not be a webhook target (private, loopback, ...), or None.

    An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) is judged as its IPv4 address.
    Anything not globally routable is refused, multicast and reserved ranges included.
    """
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for reason, hit in (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
        ("not globally routable", not ip.is_global),
    ):
        if hit:
            return reason
    return None


def check_addresses(addresses: Iterable[str | IPAddress], *, allow_private: bool = False) -> None:
    """Raises `TargetRefused` when any address is not a public one (unless
    `allow_private`) or when there is none. Every address is checked, not the first:
    a name resolving to one public and one private address is refused."""
    listed = list(addresses)
    if not listed:
        raise TargetRefused("the target resolved to no address")
    if allow_private:
        return
    for address in listed:
        reason = refusal_reason(address)
        if reason is not None:
            raise TargetRefused(
                f"webhook target address {address} is {reason}; allow private targets "
                "in the configuration to use it"
            )


@dataclass(frozen=True, slots=True)
class Target:
    """A checked webhook URL: connect to `addresses` (not the name again) on `port`."""

    url: str
    host: str
    port: int
    addresses: tuple[str, ...]


async def resolve_target(
    url: str, *, allow_private: bool = False, dns_timeout: float = 5.0
) -> Target:
    """Checks `url` (http or https with a host) and every address its host resolves to;
    raises `TargetRefused` otherwise. A literal IP address is checked as it is."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise TargetRefused(f"a webhook URL is http or https, not {parts.scheme or 'none'!r}")
    host = parts.hostname
    if not host:
        raise TargetRefused("a webhook URL needs a host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise TargetRefused(f"bad port in webhook URL: {exc}") from exc
    try:
        addresses: tuple[str, ...] = (str(ipaddress.ip_address(host)),)
    except ValueError:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(dns_timeout):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError) as exc:
            raise TargetRefused(f"cannot resolve webhook host {host!r}: {exc}") from exc
        addresses = tuple(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))
    check_addresses(addresses, allow_private=allow_private)
    return Target(url=url, host=host, port=port, addresses=addresses)


__all__ = [
    "DEFAULT_RETRY_DELAYS",
    "DEFAULT_TOLERANCE",
    "FOLLOW_REDIRECTS",
    "SECRET_PREFIX",
    "Outcome",
    "RetrySchedule",
    "Target",
    "TargetRefused",
    "WebhookVerificationError",
    "check_addresses",
    "generate_secret",
    "outcome_of",
    "parse_retry_after",
    "refusal_reason",
    "resolve_target",
    "secret_key",
    "sign",
    "signature_headers",
    "verify",
]
