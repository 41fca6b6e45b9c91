"""The engine: drives sagas through their steps, talks to the store and to participants.

May import `orchestrator.core`, `orchestrator.store`, `orchestrator.telemetry` and
`orchestrator.security`; never the API side, the web console, the client or the CLI.
"""
