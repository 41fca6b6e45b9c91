"""Metrics, structured logs and traces for the orchestrator and the participants.

Importing this package installs nothing: logging is configured by
`configure_logging`, metrics are registered in a registry owned by the serving
process, and no tracer provider exists until `configure_tracing` installs one.

May import the core only (and grpc, OpenTelemetry, prometheus_client): the engine, the
API and the participants use telemetry, never the other way round.
"""
