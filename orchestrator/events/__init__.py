"""Events out: what leaves the orchestrator when sagas change (docs/events.md).

The brokers' publishers (RabbitMQ with publisher confirms, NATS JetStream with awaited
acknowledgements) and webhook signing live here. Layer: may import the core and the
store, never the engine, the API, the console, the CLI, the client or the server
(`tests/unit/test_import_graph.py`).
"""
