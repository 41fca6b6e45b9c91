"""The pure core: the DSL, the state machine and its transition tables, records, errors,
payload and limit checks, the registry's load-time checks, and opening a saga.

No I/O: imports nothing above it (engine, store, api, client, cli, web, telemetry,
security) and none of grpc, psycopg or aiohttp; `tests/unit/test_import_graph.py`
holds it to that.
"""
