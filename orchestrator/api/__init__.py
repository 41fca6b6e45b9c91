"""The gRPC API: the servicer, its conversion of records to messages and paging tokens,
the mapping of errors to status codes, the catalogue of saga types, and the interceptor
that decodes requests.

May import the core, the engine, the store, telemetry and security; never the web
console or the CLI (they call the servicer, not the other way round).
"""
