"""Serving the console (and the HTTP/JSON API beside it) in the orchestrator's own loop.

aiohttp's `AppRunner` and `TCPSite` embed in a running loop and install no signal
handlers, so the orchestrator's SIGTERM handling stays its own.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Collection
from dataclasses import dataclass

from aiohttp import web

from orchestrator.api.events_admin import SagaEventsService
from orchestrator.api.servicer import SagaOrchestratorService
from orchestrator.api.tasks import SagaTasksService
from orchestrator.web.app import create_console_app
from orchestrator.web.auth import Authenticator
from orchestrator.web.hardening import HEADER_TIMEOUT_SECONDS, quiet_malformed_request_logs
from orchestrator.web.ingest import EventIngestRoute
from orchestrator.web.rest import RestServices
from orchestrator.web.sessions import SessionTable

logger = logging.getLogger(__name__)

SHUTDOWN_SECONDS = 2.0


@dataclass
class WebConsole:
    """A running console: where it listens, and how to stop it."""

    runner: web.AppRunner
    host: str
    port: int
    tls: bool = False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}/"

    async def stop(self) -> None:
        """Close the listener and end open event streams (bounded by SHUTDOWN_SECONDS)."""
        await self.runner.cleanup()


async def start_web_console(
    host: str,
    port: int,
    servicer: SagaOrchestratorService,
    *,
    authenticate: Authenticator | None = None,
    allowed_hosts: Collection[str] = (),
    sessions: SessionTable | None = None,
    header_timeout: float = HEADER_TIMEOUT_SECONDS,
    ssl_context: ssl.SSLContext | None = None,
    events: SagaEventsService | None = None,
    tasks: SagaTasksService | None = None,
    ingest: EventIngestRoute | None = None,
    api: RestServices | None = None,
) -> WebConsole:
    """Serve the console on host:port (0 picks a free port) in the running loop.

    `authenticate` maps a request to an Identity or None; without it the console is
    in laptop mode (no sign-in, actions allowed: bind it to loopback). A connection
    that has not sent a whole request's headers `header_timeout` seconds after it
    opened (or after its last answer) is closed. With `ssl_context` it serves HTTPS.
    """
    quiet_malformed_request_logs()
    runner = web.AppRunner(
        create_console_app(
            servicer,
            authenticate,
            allowed_hosts=allowed_hosts,
            sessions=sessions,
            body_seconds=header_timeout,
            events=events,
            tasks=tasks,
            ingest=ingest,
            api=api,
        ),
        access_log=None,
        shutdown_timeout=SHUTDOWN_SECONDS,
        # A browser that goes away cancels its handler, so an event stream stops
        # watching its saga at once instead of when the saga finishes.
        handler_cancellation=True,
        # aiohttp arms this timer when a connection opens and after each answer, and
        # closes the connection if no whole request has arrived when it fires: a
        # header-read bound (a request being handled, an event stream, is never cut).
        keepalive_timeout=header_timeout,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1] if runner.addresses else port
    console = WebConsole(runner, host, int(bound), tls=ssl_context is not None)
    logger.info("web console on %s", console.url)
    return console
