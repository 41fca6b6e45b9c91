"""What guards the console's listener before any handler runs.

Every response carries a Content-Security-Policy that allows only this origin's own
scripts, styles and connections. In laptop mode only loopback Host values are answered
(plus names the operator allows), so a page whose DNS name is rebound to 127.0.0.1
cannot drive the console from the operator's browser. A connection that sends no whole
request's headers within `HEADER_TIMEOUT_SECONDS` (aiohttp's keep-alive timer, set by
`start_web_console`) is closed, and aiohttp's report of a request it cannot parse is
logged without the request's text (it would quote a token).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import grpc
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from orchestrator.security.tls import is_loopback

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

HEADER_TIMEOUT_SECONDS = 10.0
"""A connection must send a whole request's headers this soon after it opens, or after
its previous answer; a slow or silent one is closed (slowloris)."""

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

ALLOWED_HOSTS: web.AppKey[frozenset[str] | None] = web.AppKey("allowed_hosts")
"""Host names answered besides loopback; None answers any (an authenticator guards)."""


def host_name(host: str) -> str:
    """The name in a Host header value, without its port or IPv6 brackets, lower case."""
    text = host.strip().lower()
    if text.startswith("["):
        return text[1 : text.find("]")] if "]" in text else text[1:]
    if text.count(":") == 1:
        text = text.partition(":")[0]
    return text.rstrip(".")


@web.middleware
async def host_check(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer only the Host names allowed (421 otherwise): a DNS-rebinding page sends
    its own name, which no loopback address or configured name matches."""
    allowed = request.app[ALLOWED_HOSTS]
    if allowed is not None:
        name = host_name(request.headers.get("Host", ""))
        if not (is_loopback(name) or name in allowed):
            logger.warning("console refused a request for host %r", name[:100])
            body = {
                "error": {
                    "code": grpc.StatusCode.PERMISSION_DENIED.name,
                    "message": "this console answers only to localhost, 127.0.0.1 and [::1]"
                    + (f" and {', '.join(sorted(allowed))}" if allowed else "")
                    + "; allow another name with --http-allowed-host",
                    "reason": "HOST_NOT_ALLOWED",
                }
            }
            return web.json_response(body, status=421)
    return await handler(request)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every response's security headers (a handler may set its own first)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


class _MalformedRequestFilter(logging.Filter):
    """aiohttp logs a request it cannot parse at ERROR with the parser's exception, whose
    text quotes the start of the offending line: for an over-long Cookie or
    Authorization header, the token. Such a record keeps only the error's class."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            peer = record.args[0] if isinstance(record.args, tuple) and record.args else None
            record.msg = "console refused a malformed HTTP request from %s: %s (HTTP %s)"
            record.args = (peer, type(error).__name__, error.code)
            record.exc_info = None
            record.exc_text = None
            if record.levelno > logging.WARNING:
                record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def quiet_malformed_request_logs() -> None:
    """Install the filter on aiohttp's server logger (once)."""
    server_logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _MalformedRequestFilter) for f in server_logger.filters):
        server_logger.addFilter(_MalformedRequestFilter())
