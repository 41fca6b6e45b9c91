"""Structured logs: one JSON object a line for machines, plain text for people.

Every record about a saga carries its saga_id, saga_type, step and
correlation_id. The executor binds them in a context variable for the task that
drives the saga (`log_context`); `ContextFilter`, installed on the handler,
copies them onto each record, so a log call deep inside a store or a client
needs no `extra=`. A field given with `extra=` wins over the context.

Errors of the database drivers are written by class and code only (`database_error`):
PostgreSQL's message, DETAIL and CONTEXT, and sqlite3's message, may quote the values
of a statement (a payload, a name), so both formatters withhold them, in a traceback
(every exception of its chain) and in a message's arguments alike.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sqlite3
import sys
import time
import traceback
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


def database_error(error: BaseException) -> str | None:
    """`error` as its class and code alone, if a database driver raised it (psycopg, sqlite3):
    "UntranslatableCharacter (SQLSTATE 22P05)", "IntegrityError (SQLITE_CONSTRAINT_CHECK)".
    None for any other error, whose text is its own."""
    name = type(error).__name__
    if type(error).__module__.partition(".")[0] == "psycopg":
        code = getattr(error, "sqlstate", None)
        return f"{name} (SQLSTATE {code})" if code else name
    if isinstance(error, sqlite3.Error):
        code = getattr(error, "sqlite_errorname", None)
        return f"{name} ({code})" if code else name
    return None


def _withheld_arguments(record: logging.LogRecord) -> logging.LogRecord:
    """`record`, or a copy whose database errors among its arguments are named, not quoted,
    and whose exception text is not taken from a cache another formatter filled."""
    args = record.args
    if isinstance(args, tuple) and any(isinstance(arg, BaseException) for arg in args):
        args = tuple(_named(arg) if isinstance(arg, BaseException) else arg for arg in args)
    elif isinstance(args, Mapping) and any(isinstance(v, BaseException) for v in args.values()):
        args = {k: _named(v) if isinstance(v, BaseException) else v for k, v in args.items()}
    if args is record.args and not record.exc_text:
        return record
    copy = logging.makeLogRecord(vars(record))
    copy.args, copy.exc_text = args, None
    return copy


def _named(error: BaseException) -> object:
    summary = database_error(error)
    return error if summary is None else summary


def _format_exception(error: BaseException) -> str:
    """The traceback of `error` and of the exceptions it chains (cause, context, a group's
    members), as `traceback` writes them, but each driver's error by class and code."""
    lines: list[str] = []
    seen: set[int] = set()

    def emit(indent: str, texts: list[str]) -> None:
        lines.extend(indent + line for text in texts for line in text.splitlines() or [""])

    def add(exc: BaseException, indent: str) -> None:
        seen.add(id(exc))
        cause, context = exc.__cause__, exc.__context__
        if cause is not None and id(cause) not in seen:
            add(cause, indent)
            emit(indent, ["", _CAUSE, ""])
        elif context is not None and not exc.__suppress_context__ and id(context) not in seen:
            add(context, indent)
            emit(indent, ["", _CONTEXT, ""])
        if exc.__traceback__ is not None:
            emit(indent, ["Traceback (most recent call last):"])
            emit(indent, traceback.format_tb(exc.__traceback__))
        summary = database_error(exc)
        if summary is None:
            emit(indent, traceback.format_exception_only(type(exc), exc))
        else:
            qualified = f"{type(exc).__module__}.{type(exc).__qualname__}"
            emit(indent, [f"{qualified}: {summary}, message withheld"])
        if isinstance(exc, BaseExceptionGroup):
            for number, member in enumerate(exc.exceptions, 1):
                emit(indent, [f"+---------------- {number} ----------------"])
                add(member, indent + "| ")

    add(error, "")
    return "\n".join(lines)


_CAUSE = "The above exception was the direct cause of the following exception:"
_CONTEXT = "During handling of the above exception, another exception occurred:"


class _WithholdingFormatter(logging.Formatter):
    """A formatter that writes database errors by class and code (see the module)."""

    def formatException(self, ei: Any) -> str:
        error = ei[1]
        if error is None:
            return super().formatException(ei)
        return _format_exception(error)


class JsonFormatter(_WithholdingFormatter):
    """One JSON object a line: timestamp (UTC, ISO 8601), level, logger, message, fields."""

    def format(self, record: logging.LogRecord) -> str:
        record = _withheld_arguments(record)
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


class TextFormatter(_WithholdingFormatter):
    """Human text: the usual line, then the saga fields as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return super().format(_withheld_arguments(record))

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
