"""The ways tracked sagas' events come in: CloudEvents from RabbitMQ, NATS JetStream, and
the parsing the gRPC and HTTP ways in share (docs/choreography.md, "Ways in").

Every way in parses what it receives into `IncomingEvent`s (`cloudevents`) and hands a
batch to the one `EventIngestor` (orchestrator.core.incoming), acknowledging only once it
has returned. `consumers` starts the configured broker consumers for `saga serve`.

Same layer as the rest of orchestrator.events: may import the core and telemetry, never
the engine, the API, the web console, the CLI or the client.
"""
