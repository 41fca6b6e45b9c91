"""The operators' web console, served by the orchestrator process itself.

`start_web_console(host, port, servicer)` serves it in the running loop
and returns a `WebConsole` whose `stop()` closes it; `authenticate` plugs in who
the user is (see `auth`); a signed-in page holds a server-side session (`sessions`).
The page, its script and its style ship in `static/`.

Sits above the API: calls the servicer in process, as a gRPC client would. May import
the core, the API, security and telemetry (and the pure CloudEvents reader of
`orchestrator.events.ingest`, for POST /v1/events); never the engine, the store, the
client or the CLI. The wiring (orchestrator.server) builds it beside the servicer.
"""

from orchestrator.web.app import create_console_app
from orchestrator.web.auth import (
    LAPTOP_IDENTITY,
    OPERATOR,
    READER,
    Authenticator,
    Identity,
    TokenAuthenticator,
    bearer_tokens,
    token_digest,
)
from orchestrator.web.serving import WebConsole, start_web_console
from orchestrator.web.sessions import SessionTable

__all__ = [
    "LAPTOP_IDENTITY",
    "OPERATOR",
    "READER",
    "Authenticator",
    "Identity",
    "SessionTable",
    "TokenAuthenticator",
    "WebConsole",
    "bearer_tokens",
    "create_console_app",
    "start_web_console",
    "token_digest",
]
