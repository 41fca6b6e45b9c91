"""OpenTelemetry traces: off unless configured, W3C trace context over gRPC metadata.

With the exporter "none" no SDK provider is created and the engine gets no
tracer: it creates no spans at all, and `outbound_metadata` finds no span to
propagate, so the hot path pays a context-variable read per command.
"console" prints finished spans to stdout, one JSON object a line; "otlp"
sends them over gRPC to the collector named by the standard
OTEL_EXPORTER_OTLP_ENDPOINT (and OTEL_EXPORTER_OTLP_*) variables. The SDK is
imported only when an exporter is chosen.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from opentelemetry import propagate, trace
from opentelemetry.context import Context

TRACE_EXPORTERS: Final = ("none", "console", "otlp")
INSTRUMENTATION_NAME: Final = "saga-orchestrator"


@dataclass(frozen=True)
class Tracing:
    """The tracer the process uses (None when tracing is off) and how to flush it."""

    tracer: trace.Tracer | None
    shutdown: Callable[[], None]


def _nothing() -> None:
    return None


TRACING_OFF: Final = Tracing(None, _nothing)


def configure_tracing(exporter: str, service_name: str) -> Tracing:
    """A tracer provider exporting to `exporter` ("none", "console" or "otlp").

    The provider is returned, not installed globally, so a test can run several
    engines with their own providers in one process. `shutdown` flushes the
    spans still queued; call it when the process stops.
    """
    if exporter not in TRACE_EXPORTERS:
        raise ValueError(
            f"trace exporter must be one of {', '.join(TRACE_EXPORTERS)}, got {exporter!r}"
        )
    if exporter == "none":
        return TRACING_OFF
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    # OTEL_SERVICE_NAME, when set, wins over the default name (Resource.create merges it).
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
    span_exporter: SpanExporter
    if exporter == "console":
        # One span a line, so the output can be grepped and read as JSON lines.
        span_exporter = ConsoleSpanExporter(formatter=lambda span: span.to_json(indent=None) + "\n")
    else:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        span_exporter = OTLPSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(span_exporter))
    return Tracing(provider.get_tracer(INSTRUMENTATION_NAME), provider.shutdown)


def outbound_metadata() -> tuple[tuple[str, str], ...] | None:
    """gRPC metadata carrying the current span's context (traceparent, tracestate,
    baggage, per the configured propagators); None when no span is current."""
    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return tuple(carrier.items())


def context_from_metadata(metadata: Sequence[tuple[str, str | bytes]] | None) -> Context:
    """The remote parent carried in inbound gRPC metadata (an empty context if none)."""
    carrier: Mapping[str, str] = {
        key: value for key, value in (metadata or ()) if isinstance(value, str)
    }
    return propagate.extract(carrier)
