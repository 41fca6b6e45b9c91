"""The CloudEvents HTTP binding at POST /v1/events on a real console listener
(127.0.0.1:0): binary, structured and batched modes read, 200 with the verdicts only
after the ingestor returned, 400 naming the problem with nothing applied, 413, 415,
bearer tokens from the auth file (never the console's cookie), 503 in a store outage."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from cloudevents.core.bindings import http
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from yarl import URL

from orchestrator.api.grpc_server import auth_policy
from orchestrator.api.ingest import SagaEventIngestService
from orchestrator.security.auth import token_digest
from orchestrator.web import start_web_console
from orchestrator.web.auth import policy_authenticator
from orchestrator.web.ingest import INGEST_PATH, EventIngestRoute
from orchestrator.web.sessions import SESSION_COOKIE
from tests.support.recording_ingestor import RecordingIngestor

pytestmark = pytest.mark.integration

AUTH = f"""
[[caller]]
name = "flight-service"
roles = ["participant"]
token_sha256 = "{token_digest("participant-token")}"

[[caller]]
name = "ops"
roles = ["operator"]
token_sha256 = "{token_digest("operator-token")}"

[[caller]]
name = "dashboards"
roles = ["reader"]
token_sha256 = "{token_digest("reader-token")}"
"""
PARTICIPANT = {"Authorization": "Bearer participant-token"}


def event(event_id: str = "h-1", **attributes: object) -> CloudEvent:
    return CloudEvent(
        attributes={
            "type": "com.example.travel.flight_booked",
            "source": "/flight",
            "id": event_id,
            "bookingid": "b-1",
            "datacontenttype": "application/json",
            **attributes,
        },
        data={"booking_id": "b-1"},
    )


async def serve(tmp_path: Path, *, auth: bool, max_body_bytes: int = 64 * 1024):
    policy = None
    if auth:
        (tmp_path / "auth.toml").write_text(AUTH)
        policy = auth_policy(tmp_path / "auth.toml")
    ingestor = RecordingIngestor()
    service = SagaEventIngestService(ingestor, max_batch=5)
    console = await start_web_console(
        "127.0.0.1",
        0,
        None,  # type: ignore[arg-type]  # the route never calls the console's servicer
        authenticate=None if policy is None else policy_authenticator(policy),
        ingest=EventIngestRoute(service, policy, max_body_bytes=max_body_bytes),
    )
    return console, ingestor


@pytest.fixture
async def secured(tmp_path) -> AsyncIterator[tuple[str, RecordingIngestor]]:
    console, ingestor = await serve(tmp_path, auth=True)
    try:
        yield console.url.rstrip("/") + INGEST_PATH, ingestor
    finally:
        await console.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def post(session, url, headers, body) -> tuple[int, dict]:
    async with session.post(url, headers=headers, data=body) as response:
        return response.status, await response.json()


async def test_binary_mode(secured, session):
    url, ingestor = secured
    message = http.to_binary(event(subject="room 12%"), JSONFormat())
    status, answer = await post(session, url, {**message.headers, **PARTICIPANT}, message.body)
    assert (status, answer) == (200, {"verdicts": ["RECORDED"]})
    [[received]] = ingestor.batches
    assert received.subject == "room 12%" and received.data == {"booking_id": "b-1"}
    assert received.received_via == "http" and received.extensions["bookingid"] == "b-1"


async def test_structured_mode(secured, session):
    url, ingestor = secured
    message = http.to_structured(event(), JSONFormat())
    status, answer = await post(session, url, {**message.headers, **PARTICIPANT}, message.body)
    assert (status, answer) == (200, {"verdicts": ["RECORDED"]})
    assert ingestor.recorded_ids == {"h-1"}


async def test_batched_mode_answers_a_verdict_per_event(secured, session):
    url, ingestor = secured
    documents = [
        json.loads(http.to_structured(event(f"h-{n}"), JSONFormat()).body) for n in (1, 2, 1)
    ]
    headers = {"Content-Type": "application/cloudevents-batch+json", **PARTICIPANT}
    status, answer = await post(session, url, headers, json.dumps(documents))
    assert status == 200
    assert answer == {"verdicts": ["RECORDED", "RECORDED", "DUPLICATE"]}
    assert [e.id for e in ingestor.batches[0]] == ["h-1", "h-2", "h-1"]


@pytest.mark.parametrize(
    ("headers", "body", "status", "message"),
    [
        ({"Content-Type": "application/cloudevents+json"}, b"{oops", 400, "the body is not JSON"),
        (
            {"Content-Type": "application/cloudevents+json"},
            json.dumps({"specversion": "1.0", "id": "x", "source": "/s"}),
            400,
            "attribute 'type' is missing",
        ),
        (
            {"Content-Type": "application/cloudevents-batch+json"},
            json.dumps([{"specversion": "1.0", "id": "a", "source": "s", "type": "t"}, {}]),
            400,
            "event 1: attribute 'specversion' is missing",
        ),
        (
            {"Content-Type": "application/cloudevents-batch+json"},
            json.dumps(
                [{"specversion": "1.0", "id": str(n), "source": "s", "type": "t"} for n in range(6)]
            ),
            400,
            "at most 5 events",
        ),
        ({"Content-Type": "text/plain"}, b"hello", 415, "not a CloudEvent"),
        ({"Content-Type": "application/cloudevents+xml"}, b"<e/>", 415, "is not read"),
        (
            {"Content-Type": "application/json", "ce-id": "x", "ce-source": "s", "ce-type": "t"},
            b"{}",
            400,
            "ce-specversion header is missing",
        ),
    ],
)
async def test_bad_requests_name_the_problem_and_apply_nothing(
    secured, session, headers, body, status, message
):
    url, ingestor = secured
    answered, answer = await post(session, url, {**headers, **PARTICIPANT}, body)
    assert answered == status
    assert message in answer["error"]["message"]
    assert ingestor.batches == []


async def test_a_body_over_the_limit_is_413(tmp_path, session):
    console, ingestor = await serve(tmp_path, auth=False, max_body_bytes=1000)
    try:
        url = console.url.rstrip("/") + INGEST_PATH
        message = http.to_structured(event(padding="x" * 2000), JSONFormat())
        status, answer = await post(session, url, message.headers, message.body)
        assert status == 413 and "over 1000 bytes" in answer["error"]["message"]

        async def chunked():  # no Content-Length: the limit holds while reading
            yield message.body[:600]
            yield message.body[600:]

        status, _ = await post(session, url, message.headers, chunked())
        assert status == 413
        assert ingestor.batches == []
    finally:
        await console.stop()


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer nobody"}, 401),
        ({"Authorization": "Basic cGFydGljaXBhbnQ="}, 401),
        ({"Authorization": "Bearer reader-token"}, 403),
        ({"Authorization": "Bearer operator-token"}, 200),
    ],
)
async def test_bearer_tokens_of_the_auth_file(secured, session, headers, status):
    url, ingestor = secured
    message = http.to_binary(event(), JSONFormat())
    answered, _ = await post(session, url, {**message.headers, **headers}, message.body)
    assert answered == status
    assert bool(ingestor.batches) == (status == 200)


async def test_a_console_session_cookie_is_not_accepted(secured):
    url, ingestor = secured
    # unsafe: keep cookies of an IP address (127.0.0.1), as a browser does.
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with session:
        await post_with_session_cookie(session, url, ingestor)


async def post_with_session_cookie(session, url, ingestor):
    # An operator's console session: the page's cookie must not post events.
    base = url.removesuffix(INGEST_PATH)
    async with session.post(
        f"{base}/api/session", headers={"Authorization": "Bearer operator-token"}, json={}
    ) as signed_in:
        assert signed_in.status == 200
    assert session.cookie_jar.filter_cookies(URL(base)).get(SESSION_COOKIE) is not None
    message = http.to_binary(event(), JSONFormat())
    status, _ = await post(session, url, message.headers, message.body)
    assert status == 401
    assert ingestor.batches == []


async def test_a_store_outage_is_503_and_a_retry_is_applied(secured, session):
    url, ingestor = secured
    ingestor.fail_next(1)
    message = http.to_binary(event(), JSONFormat())
    status, answer = await post(session, url, {**message.headers, **PARTICIPANT}, message.body)
    assert status == 503 and answer["error"]["code"] == "UNAVAILABLE"
    status, answer = await post(session, url, {**message.headers, **PARTICIPANT}, message.body)
    assert (status, answer) == (200, {"verdicts": ["RECORDED"]})


async def test_without_an_auth_file_the_path_is_open_like_the_grpc_api(tmp_path, session):
    console, ingestor = await serve(tmp_path, auth=False)
    try:
        message = http.to_binary(event(), JSONFormat())
        status, _ = await post(
            session, console.url.rstrip("/") + INGEST_PATH, message.headers, message.body
        )
        assert status == 200 and ingestor.recorded_ids == {"h-1"}
    finally:
        await console.stop()
