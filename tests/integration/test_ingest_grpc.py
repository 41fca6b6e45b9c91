"""SagaEventIngest on a real gRPC server (127.0.0.1:0) behind the orchestrator's auth
policy: batches of CloudEvents in, one verdict each, bad events INVALID_ARGUMENT by index
and field with nothing applied, the batch limit, roles, a store outage UNAVAILABLE; and
ListEventAnomalies' pages."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf import any_pb2, struct_pb2

from orchestrator.api.grpc_server import auth_policy
from orchestrator.api.ingest import SERVICE_NAME, SagaEventIngestService
from orchestrator.api.request_decoding import UndecodableRequestInterceptor
from orchestrator.security.auth import AuthInterceptor, token_digest
from saga.v1 import ingest_pb2 as pb
from saga.v1 import ingest_pb2_grpc as pb_grpc
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

[[caller]]
name = "shop"
roles = ["client"]
token_sha256 = "{token_digest("client-token")}"
"""


@dataclass(frozen=True)
class Anomaly:
    source: str
    event_id: str
    event_type: str
    correlation: str
    saga_type: str
    reason: str
    payload: dict
    time: datetime


class AnomalyRows:
    """Stands in for the store's `list_event_anomalies` (newest first, after a position)."""

    def __init__(self, rows: list[Anomaly]) -> None:
        self.rows = rows
        self.queries: list = []

    async def list_event_anomalies(self, where, limit, after=None):
        self.queries.append((where, after, limit))
        ordered = sorted(self.rows, key=lambda r: (r.time, r.source, r.event_id), reverse=True)
        matching = [r for r in ordered if where.saga_type in (None, r.saga_type)]
        if after is not None:
            matching = [
                r
                for r in matching
                if (r.time, r.source, r.event_id) < (after.time, after.source, after.event_id)
            ]
        return matching[:limit]


T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ROWS = [
    Anomaly(
        "/flight",
        f"a-{n}",
        "com.example.travel.flight_booked",
        f"b-{n}",
        "travel",
        "no instance started within 60 s",
        {"id": f"a-{n}"},
        T0 + timedelta(seconds=n),
    )
    for n in range(5)
] + [Anomaly("/x", "other", "x", "", "other_type", "why", {}, T0)]


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[str, RecordingIngestor]]:
    auth_file = tmp_path / "auth.toml"
    auth_file.write_text(AUTH)
    policy = auth_policy(auth_file)
    ingestor = RecordingIngestor()
    service = SagaEventIngestService(ingestor, AnomalyRows(ROWS), max_batch=10)
    server = grpc.aio.server(
        interceptors=[AuthInterceptor(policy), UndecodableRequestInterceptor(SERVICE_NAME)]
    )
    assert service.register(server) == ("saga.v1.SagaEventIngest",)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", ingestor
    finally:
        await server.stop(None)


def event(event_id: str = "e-1", **changes) -> pb.CloudEvent:
    message = pb.CloudEvent(
        id=event_id,
        source="/flight",
        spec_version="1.0",
        type="com.example.travel.flight_booked",
        text_data=json.dumps({"booking_id": "b-1"}),
    )
    message.attributes["datacontenttype"].ce_string = "application/json"
    message.attributes["bookingid"].ce_string = "b-1"
    message.attributes["time"].ce_timestamp.FromDatetime(T0)
    for name, value in changes.items():
        if name == "proto_data":
            message.proto_data.CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


async def call(address: str, token: str, method: str, request):
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.SagaEventIngestStub(channel)
        return await getattr(stub, method)(
            request, metadata=[("authorization", f"Bearer {token}")], timeout=10
        )


async def test_a_batch_is_ingested_in_order_with_a_verdict_each(served):
    address, ingestor = served
    packed = any_pb2.Any()
    packed.Pack(struct_pb2.Struct(fields={"booking_id": struct_pb2.Value(string_value="b-2")}))
    batch = [
        event("e-1"),
        event("e-2", binary_data=b'{"booking_id": "b-2"}'),
        event("e-3", proto_data=packed),
        event("e-1"),  # a repeat: the ingestor's dedup answers it
    ]
    reply = await call(
        address, "participant-token", "IngestEvents", pb.IngestEventsRequest(events=batch)
    )
    assert list(reply.verdicts) == [pb.INGEST_VERDICT_RECORDED] * 3 + [pb.INGEST_VERDICT_DUPLICATE]
    [received] = ingestor.batches
    assert [e.id for e in received] == ["e-1", "e-2", "e-3", "e-1"]
    first = received[0]
    assert first.data == {"booking_id": "b-1"}
    assert first.time == T0
    assert first.extensions == {"datacontenttype": "application/json", "bookingid": "b-1"}
    assert first.received_via == "grpc" and first.actor == "event:/flight"
    assert received[2].data == {"booking_id": "b-2"}


@pytest.mark.parametrize(
    ("bad", "field", "problem"),
    [
        (dict(id=""), "events[1].id", "missing or empty"),
        (dict(source=""), "events[1].source", "missing or empty"),
        (dict(spec_version="0.3"), "events[1].spec_version", "only '1.0'"),
        (dict(type=""), "events[1].type", "missing or empty"),
        (dict(text_data="{not json"), "events[1].text_data", "not JSON"),
        (dict(id="x" * 2000), "events[1].id", "over 1024"),
        (dict(id="nul\x00"), "events[1].id", "U+0000"),
    ],
)
async def test_a_bad_event_refuses_the_batch_naming_its_index_and_field(
    served, bad, field, problem
):
    address, ingestor = served
    request = pb.IngestEventsRequest(events=[event("ok"), event("bad", **bad)])
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(address, "participant-token", "IngestEvents", request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details().startswith(field + ":"), refused.value.details()
    assert problem in refused.value.details()
    assert ingestor.batches == []  # nothing of the batch was applied


async def test_a_bad_attribute_is_named_by_its_key(served):
    address, _ = served
    bad = event("bad")
    bad.attributes["time"].ce_string = "yesterday"
    bad.attributes["Bad-Name"].ce_string = "x"
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(
            address, "participant-token", "IngestEvents", pb.IngestEventsRequest(events=[bad])
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details().startswith('events[0].attributes["'), refused.value.details()


async def test_a_batch_over_the_limit_is_refused(served):
    address, ingestor = served
    request = pb.IngestEventsRequest(events=[event(f"e-{n}") for n in range(11)])
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(address, "operator-token", "IngestEvents", request)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 10" in refused.value.details()
    assert ingestor.batches == []


async def test_a_store_outage_is_unavailable_and_a_retry_goes_through(served):
    address, ingestor = served
    ingestor.fail_next(1)
    request = pb.IngestEventsRequest(events=[event("e-1")])
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(address, "participant-token", "IngestEvents", request)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    reply = await call(address, "participant-token", "IngestEvents", request)
    assert list(reply.verdicts) == [pb.INGEST_VERDICT_RECORDED]


@pytest.mark.parametrize(
    ("token", "method", "allowed"),
    [
        ("participant-token", "IngestEvents", True),
        ("operator-token", "IngestEvents", True),
        ("reader-token", "IngestEvents", False),
        ("client-token", "IngestEvents", False),
        ("operator-token", "ListEventAnomalies", True),
        ("reader-token", "ListEventAnomalies", True),
        ("participant-token", "ListEventAnomalies", False),
        ("client-token", "ListEventAnomalies", False),
    ],
)
async def test_roles(served, token, method, allowed):
    address, _ = served
    request = (
        pb.IngestEventsRequest(events=[event()])
        if method == "IngestEvents"
        else pb.ListEventAnomaliesRequest()
    )
    if allowed:
        await call(address, token, method, request)
        return
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(address, token, method, request)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_without_a_token_the_call_is_unauthenticated(served):
    address, _ = served
    async with grpc.aio.insecure_channel(address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await pb_grpc.SagaEventIngestStub(channel).IngestEvents(
                pb.IngestEventsRequest(events=[event()]), timeout=10
            )
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_anomalies_come_newest_first_a_page_at_a_time(served):
    address, _ = served
    seen, token = [], ""
    while True:
        page = await call(
            address,
            "reader-token",
            "ListEventAnomalies",
            pb.ListEventAnomaliesRequest(page_size=2, page_token=token, saga_type="travel"),
        )
        seen += [a.event_id for a in page.anomalies]
        token = page.next_page_token
        if not token:
            break
    assert seen == ["a-4", "a-3", "a-2", "a-1", "a-0"]
    first = (
        await call(
            address, "reader-token", "ListEventAnomalies", pb.ListEventAnomaliesRequest(page_size=1)
        )
    ).anomalies[0]
    assert first.reason == "no instance started within 60 s"
    assert json.loads(first.event_json) == {"id": "a-4"}
    assert first.create_time.ToDatetime(tzinfo=UTC) == T0 + timedelta(seconds=4)


@pytest.mark.parametrize(
    "request_",
    [
        pb.ListEventAnomaliesRequest(page_token="garbage"),
        pb.ListEventAnomaliesRequest(page_size=-1),
    ],
)
async def test_bad_listing_requests_are_invalid_argument(served, request_):
    address, _ = served
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(address, "operator-token", "ListEventAnomalies", request_)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_page_token_for_another_filter_is_refused(served):
    address, _ = served
    page = await call(
        address, "operator-token", "ListEventAnomalies", pb.ListEventAnomaliesRequest(page_size=1)
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(
            address,
            "operator-token",
            "ListEventAnomalies",
            pb.ListEventAnomaliesRequest(
                page_size=1, page_token=page.next_page_token, saga_type="travel"
            ),
        )
    assert "different request" in refused.value.details()
