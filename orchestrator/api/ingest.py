"""The SagaEventIngest gRPC servicer: tracked sagas' events in over gRPC (and, through
`ingest`, over the console's HTTP binding), and the anomalies operators list.

IngestEvents reads each `saga.v1.CloudEvent` (wire-compatible with the CNCF
`io.cloudevents.v1.CloudEvent`) with the one CloudEvents reader every way in shares
(`orchestrator.events.ingest.cloudevents`): a malformed event refuses the whole batch
INVALID_ARGUMENT naming `events[i].<field>`, and nothing of it reaches the ingestor. The
answer comes once the ingestor returned, i.e. once what the events did is committed;
a store outage is UNAVAILABLE (retry: a retried event the store already holds is
answered DUPLICATE).

ListEventAnomalies reads the store's `list_event_anomalies` through `AnomalyReader`, a
protocol of the one method it needs. The filter and position passed are plain records
(`AnomalyFilter`, `AnomalyPosition`) with the field names the store's own records have.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, TypeAlias

import grpc
from google.protobuf import json_format, struct_pb2, timestamp_pb2

from orchestrator.api.handlers import mapped_errors
from orchestrator.api.tenancy import allowed_namespaces
from orchestrator.core.errors import ErrorCode, InvalidArgument, NamespaceDenied, SagaError
from orchestrator.core.incoming import EventIngestor, IncomingEvent, IngestVerdict, JsonValue
from orchestrator.core.ingested import AnomalyFilter, AnomalyPosition
from orchestrator.core.namespaces import DEFAULT_NAMESPACE
from orchestrator.core.payload import check_message_text
from orchestrator.events.ingest.batches import IngestMetrics
from orchestrator.events.ingest.cloudevents import MalformedEvent, build_event, is_json
from orchestrator.security.auth import ingest_rules
from saga.v1 import ingest_pb2 as pb
from saga.v1 import ingest_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SagaEventIngest"].full_name
INGEST_AUTH = ingest_rules(pb.DESCRIPTOR.services_by_name["SagaEventIngest"])
"""The SagaEventIngest RPCs' roles by full method path, for the server's auth policy."""
MAX_INGEST_BATCH = 1000
"""Events in one IngestEvents call (or one HTTP batch)."""
DEFAULT_ANOMALY_PAGE = 100
MAX_ANOMALY_PAGE = 1000
VERDICTS = {
    IngestVerdict.RECORDED: pb.INGEST_VERDICT_RECORDED,
    IngestVerdict.DUPLICATE: pb.INGEST_VERDICT_DUPLICATE,
    IngestVerdict.HELD: pb.INGEST_VERDICT_HELD,
    IngestVerdict.ANOMALY: pb.INGEST_VERDICT_ANOMALY,
    IngestVerdict.IGNORED: pb.INGEST_VERDICT_IGNORED,
}
_REQUIRED_FIELDS = {"id": "id", "source": "source", "specversion": "spec_version", "type": "type"}

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class AnomaliesUnavailable(SagaError):
    """This server was given no store that lists anomalies."""

    code = ErrorCode.FAILED_PRECONDITION
    reason = "ANOMALIES_UNAVAILABLE"


class AnomalyRecord(Protocol):
    """What the servicer reads of one anomaly row."""

    @property
    def source(self) -> str: ...
    @property
    def event_id(self) -> str: ...
    @property
    def event_type(self) -> str: ...
    @property
    def correlation(self) -> str: ...
    @property
    def saga_type(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def payload(self) -> Any: ...
    @property
    def time(self) -> datetime: ...


class AnomalyReader(Protocol):
    """The store's one method ListEventAnomalies needs."""

    async def list_event_anomalies(
        self, where: Any, limit: int, after: Any = None
    ) -> Sequence[AnomalyRecord]:
        """Up to `limit` anomalies matching `where`, newest first (time, then source and
        id, descending), strictly after `after` (None: from the newest)."""
        ...


def _attribute(value: pb.CloudEvent.CloudEventAttributeValue, name: str = "") -> object:
    kind = value.WhichOneof("attr")
    if kind is None:
        return None
    if kind == "ce_timestamp":
        try:
            return value.ce_timestamp.ToDatetime(tzinfo=UTC)
        except (ValueError, OverflowError):  # nanos outside 0..999,999,999, or the year
            raise MalformedEvent(
                "a timestamp outside 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z, or with "
                "nanos outside 0 to 999999999",
                attribute=name,
            ) from None
    return getattr(value, kind)


def _data(event: pb.CloudEvent) -> tuple[JsonValue, bool]:
    """The data as JSON, and whether the tracker reads it (JSON) at all."""
    kind = event.WhichOneof("data")
    content_type = _text_attribute(event, "datacontenttype")
    if kind is None:
        return None, True
    if kind == "proto_data":
        for message in (struct_pb2.Struct(), struct_pb2.Value()):
            if event.proto_data.Unpack(message):
                return json_format.MessageToDict(message), True
        return None, False
    if not is_json(content_type):
        return None, False
    raw = event.text_data if kind == "text_data" else event.binary_data
    try:
        return json.loads(raw), True
    except (ValueError, UnicodeDecodeError):
        raise MalformedEvent(
            f"{kind} is not JSON though its content type says JSON", attribute=kind
        ) from None


def _text_attribute(event: pb.CloudEvent, name: str) -> str | None:
    if name not in event.attributes:
        return None
    value = _attribute(event.attributes[name], name)
    return None if value is None else str(value)


def event_from_proto(event: pb.CloudEvent, index: int) -> IncomingEvent:
    """One event of a request, read with the shared reader; InvalidArgument names
    `events[index].<field>`."""
    try:
        attributes: dict[str, object] = {
            name: _attribute(value, name) for name, value in event.attributes.items()
        }
        for name in _REQUIRED_FIELDS:
            attributes.pop(name, None)  # the message's own fields, never the map's
        attributes.update(
            specversion=event.spec_version, id=event.id, source=event.source, type=event.type
        )
        data, readable = _data(event)
        return build_event(attributes, data, via="grpc", has_data=readable)
    except MalformedEvent as problem:
        field = _REQUIRED_FIELDS.get(problem.attribute)
        if field is None and problem.attribute in ("text_data", "binary_data"):
            field = problem.attribute
        if field is None:
            field = f'attributes["{problem.attribute}"]' if problem.attribute else "data"
        raise InvalidArgument(f"events[{index}].{field}: {problem.message}") from None


def _timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _anomaly_to_proto(row: AnomalyRecord) -> pb.EventAnomaly:
    return pb.EventAnomaly(
        source=row.source,
        event_id=row.event_id,
        event_type=row.event_type,
        correlation=row.correlation,
        saga_type=row.saga_type,
        reason=row.reason,
        event_json=json.dumps(row.payload, sort_keys=True, default=str),
        create_time=_timestamp(row.time),
    )


def _query_of(request: pb.ListEventAnomaliesRequest) -> AnomalyFilter:
    return AnomalyFilter(
        saga_type=request.saga_type or None,
        correlation=request.correlation or None,
        source=request.source or None,
        event_type=request.event_type or None,
    )


def _digest(query: AnomalyFilter) -> str:
    return hashlib.sha256(repr(query).encode()).hexdigest()[:16]


def encode_anomaly_token(last: AnomalyRecord, query: AnomalyFilter) -> str:
    document = {"p": [last.time.isoformat(), last.source, last.event_id], "f": _digest(query)}
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode()


def decode_anomaly_token(token: str, query: AnomalyFilter) -> AnomalyPosition | None:
    """The position a token of ours holds (None for the first page); INVALID_ARGUMENT for
    anything else, or one issued for another filter."""
    if not token:
        return None
    if len(token) > 4096:
        raise InvalidArgument("page_token is not one this server issued: too long")
    try:
        document = json.loads(base64.urlsafe_b64decode(token.encode()))
        (moment, source, event_id), digest = document["p"], document["f"]
        position = AnomalyPosition(datetime.fromisoformat(moment), str(source), str(event_id))
    except (ValueError, KeyError, TypeError, UnicodeError):
        raise InvalidArgument("page_token is not one this server issued") from None
    if digest != _digest(query):
        raise InvalidArgument("page_token was issued for a different request; start again")
    if position.time.utcoffset() is None:
        raise InvalidArgument("page_token is not one this server issued")
    return position


class SagaEventIngestService(pb_grpc.SagaEventIngestServicer):
    """IngestEvents and ListEventAnomalies over one ingestor and one store."""

    def __init__(
        self,
        ingestor: EventIngestor,
        anomalies: AnomalyReader | None = None,
        metrics: IngestMetrics | None = None,
        *,
        max_batch: int = MAX_INGEST_BATCH,
    ) -> None:
        self.ingestor = ingestor
        self.anomalies = anomalies
        self.metrics = metrics or IngestMetrics()
        self.max_batch = max_batch

    async def ingest(self, events: Sequence[IncomingEvent], via: str) -> list[IngestVerdict]:
        """Apply parsed events (the gRPC and HTTP ways in); returns once committed."""
        if len(events) > self.max_batch:
            raise InvalidArgument(
                f"events: at most {self.max_batch} in one call, got {len(events)}"
            )
        if not events:
            return []
        try:
            verdicts = await self.ingestor.ingest(events)
        except Exception:
            self.metrics.failed_batches.labels(via).inc()
            raise
        self.metrics.count(via, verdicts)
        return verdicts

    @mapped_errors
    async def IngestEvents(
        self, request: pb.IngestEventsRequest, context: Context
    ) -> pb.IngestEventsResponse:
        if len(request.events) > self.max_batch:
            raise InvalidArgument(
                f"events: at most {self.max_batch} in one call, got {len(request.events)}"
            )
        try:
            events = [event_from_proto(event, n) for n, event in enumerate(request.events)]
        except InvalidArgument:
            self.metrics.malformed.labels("grpc").inc()
            raise
        verdicts = await self.ingest(events, "grpc")
        return pb.IngestEventsResponse(verdicts=[VERDICTS[v] for v in verdicts])

    @mapped_errors
    async def ListEventAnomalies(
        self, request: pb.ListEventAnomaliesRequest, context: Context
    ) -> pb.ListEventAnomaliesResponse:
        check_message_text(request)
        allowed = allowed_namespaces()
        if allowed is not None and DEFAULT_NAMESPACE not in allowed:
            # An anomaly reached no saga, so it has no namespace of its own; it is shown
            # to callers of the namespace tracked sagas start in.
            raise NamespaceDenied(
                f"event anomalies are listed to callers of namespace {DEFAULT_NAMESPACE!r}; "
                f"this caller may use only {', '.join(sorted(allowed))}"
            )
        if request.page_size < 0:
            raise InvalidArgument("page_size must not be negative")
        if self.anomalies is None:
            raise AnomaliesUnavailable("this server lists no event anomalies (no tracker store)")
        size = min(request.page_size or DEFAULT_ANOMALY_PAGE, MAX_ANOMALY_PAGE)
        query = _query_of(request)
        after = decode_anomaly_token(request.page_token, query)
        rows = list(await self.anomalies.list_event_anomalies(query, size + 1, after=after))
        page, more = rows[:size], len(rows) > size
        return pb.ListEventAnomaliesResponse(
            anomalies=[_anomaly_to_proto(row) for row in page],
            next_page_token=encode_anomaly_token(page[-1], query) if more and page else "",
        )

    def register(self, server: grpc.aio.Server) -> tuple[str, ...]:
        """Adds the service to `server`; returns its name (for reflection and health)."""
        pb_grpc.add_SagaEventIngestServicer_to_server(self, server)
        return (SERVICE_NAME,)


__all__ = [
    "INGEST_AUTH",
    "MAX_INGEST_BATCH",
    "SERVICE_NAME",
    "AnomalyFilter",
    "AnomalyPosition",
    "AnomalyReader",
    "SagaEventIngestService",
    "event_from_proto",
]
