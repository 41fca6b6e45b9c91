"""Structured logs: one JSON object a line for machines, plain text for people.

Every record about a saga carries its saga_id, saga_type, step and
correlation_id. The executor binds them in a context variable for the task that
drives the saga (`log_context`); `ContextFilter`, installed on the handler,
copies them onto each record, so a log call deep inside a store or a client
needs no `extra=`. A field given with `extra=` wins over the context.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

LOG_FORMATS: Final = ("auto", "json", "text")

# The fields a record about a saga (or a participant's command) may carry, in
# the order they are written.
CONTEXT_FIELDS: Final = (
    "saga_id",
    "saga_type",
    "step",
    "kind",
    "attempt",
    "correlation_id",
    "service",
    "idempotency_key",
)

_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})
_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "saga_log_context", default=_EMPTY
)

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRIBUTES: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


def current_context() -> Mapping[str, Any]:
    """The log fields bound in this task (read-only)."""
    return _context.get()


def bind_log_fields(**fields: Any) -> contextvars.Token[Mapping[str, Any]]:
    """Add log fields to this task's context until `unbind_log_fields(token)`.

    Fields whose value is None are left out, so a saga without a correlation id
    does not log `"correlation_id": null`.
    """
    return _bind(fields)


def unbind_log_fields(token: contextvars.Token[Mapping[str, Any]]) -> None:
    """Restore the fields bound before the matching `bind_log_fields`."""
    _context.reset(token)


def _bind(fields: Mapping[str, Any]) -> contextvars.Token[Mapping[str, Any]]:
    given = {key: value for key, value in fields.items() if value is not None}
    current = _context.get()
    return _context.set({**current, **given} if current else given)


class log_context:  # lower case: it reads like the function it replaces
    """Bind log fields for the body; nested calls add to (and may override) the outer ones.

    A class rather than a generator, because it wraps every command the engine
    sends: a quarter of the cost of `contextlib.contextmanager`.
    """

    __slots__ = ("_fields", "_token")

    def __init__(self, **fields: Any) -> None:
        self._fields = fields

    def __enter__(self) -> None:
        self._token = _bind(self._fields)

    def __exit__(self, *exc_info: object) -> None:
        _context.reset(self._token)


class ContextFilter(logging.Filter):
    """Copies the bound saga fields onto every record that passes the handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def _extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The context fields first (in a fixed order), then any other `extra=` field."""
    fields: dict[str, Any] = {}
    for key in CONTEXT_FIELDS:
        value = getattr(record, key, None)
        if value is not None:
            fields[key] = value
    for key, value in vars(record).items():
        if key not in _STANDARD_ATTRIBUTES and key not in fields and not key.startswith("_"):
            fields[key] = value
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object a line: timestamp (UTC, ISO 8601), level, logger, message, fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": _iso_timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_extra_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Human text: the usual line, then the saga fields as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = _extra_fields(record)
        if fields:
            line += " [" + " ".join(f"{key}={value}" for key, value in fields.items()) + "]"
        return line


def _iso_timestamp(created: float) -> str:
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def make_formatter(log_format: str, stream: Any = None) -> logging.Formatter:
    """The formatter for `log_format`; "auto" is JSON unless `stream` is a terminal."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
    if log_format == "auto":
        stream = sys.stderr if stream is None else stream
        isatty = getattr(stream, "isatty", None)
        log_format = "text" if isatty is not None and isatty() else "json"
    return JsonFormatter() if log_format == "json" else TextFormatter()


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler `configure_logging` installs (told apart so a second call replaces it)."""


def configure_logging(level: str, log_format: str) -> None:
    """Send the root logger to stderr in `log_format` ("auto", "json" or "text") at `level`.

    Replaces the handler a previous call installed and the console handlers of
    `logging.basicConfig`, so no line is written twice; other handlers (a file,
    a test's capture) are kept.
    """
    handler = _StderrHandler(sys.stderr)
    handler.setFormatter(make_formatter(log_format, sys.stderr))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        console = type(old) is logging.StreamHandler and old.stream in (sys.stderr, sys.stdout)
        if console or isinstance(old, _StderrHandler):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # `transitions` logs every callback phase of every state change at INFO: noise
    # at best, and a formatted line per transition on the hot path.
    logging.getLogger("transitions").setLevel(logging.WARNING)
