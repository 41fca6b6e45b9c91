"""The participant kit: a participant is its business logic, the kit does the rest.

    class Loyalty(Participant, pb_grpc.LoyaltyServiceServicer):
        @action
        def AwardPoints(self, tx: Tx, request: pb.AwardPointsRequest) -> pb.AwardPointsResponse:
            ...   # business writes through tx, in the kit's transaction

        @compensation(of="AwardPoints")
        def RevokePoints(self, tx, request, awarded: pb.AwardPointsResponse | None):
            ...   # undo `awarded`: this saga's own action's reply (None: nothing was done)

For each command, keyed by its CommandContext.idempotency_key, in ONE transaction of
the participant's own database (SQLite or PostgreSQL through psycopg), so the business
write and the kit's record commit together or not at all:

- a repeat of a processed key gets the stored answer (reply or rejection) and changes
  nothing; the same key with another request (its fingerprint, a sha256 of the method
  and the deterministic bytes of the request) is ALREADY_EXISTS;
- a compensation leaves a tombstone for the action key it undoes, so an action that
  arrives after its own compensation is refused (ALREADY_COMPENSATED) and never applied;
- a compensation may undo only its own saga's action: one naming another saga's action
  key is PERMISSION_DENIED (NOT_OWNER), and the handler is given the reply its own
  action stored, not an id taken from the request;
- a handler's `Rejected` rolls its writes back and is recorded as the answer
  (FAILED_PRECONDITION by default: the saga compensates).

Crash points for tests: SAGA_KIT_FAILPOINT=before_commit|after_commit ends the process
(os._exit(137)) with the business write done but not committed, or committed but not
answered.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import os
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeAlias, TypeVar, cast

import grpc
import psycopg
import psycopg_pool
from google.protobuf import message_factory
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

FAILPOINT_VAR = "SAGA_KIT_FAILPOINT"
FAILPOINT_EXIT_CODE = 137
OK = grpc.StatusCode.OK.value[0]
DOMAIN = "participant.saga"

Request = TypeVar("Request", bound=Message)
Reply = TypeVar("Reply", bound=Message)


class Rejected(Exception):
    """A business refusal: recorded under the command's key, its writes rolled back."""

    def __init__(
        self,
        reason: str,
        message: str,
        code: grpc.StatusCode = grpc.StatusCode.FAILED_PRECONDITION,
        *,
        status: status_pb2.Status | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.code = code
        self.status = status

    def to_status(self, domain: str = DOMAIN) -> status_pb2.Status:
        """The google.rpc.Status answered (and recorded): a given one as it is."""
        if self.status is not None:
            return self.status
        status = status_pb2.Status(code=self.code.value[0], message=self.message)
        status.details.add().Pack(error_details_pb2.ErrorInfo(reason=self.reason, domain=domain))
        return status


class Tx:
    """The transaction a handler writes through. SQL uses `%s` placeholders on both
    databases; `connection` is the driver's own (sqlite3 or psycopg) for anything else."""

    def __init__(self, connection: Any, placeholder: str) -> None:
        self.connection = connection
        self._placeholder = placeholder

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        """Run one statement with bound parameters; returns the driver's cursor."""
        return self.connection.execute(sql.replace("%s", self._placeholder), params)

    def one(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        """The first row of a query, or None."""
        row = self.execute(sql, params).fetchone()
        return None if row is None else tuple(row)


class Database(abc.ABC):
    """Where a participant keeps its state and the kit its records; see `open_database`."""

    binary = "BLOB"

    @abc.abstractmethod
    def transaction(self) -> contextlib.AbstractContextManager[Tx]:
        """One transaction: committed when the block ends, rolled back when it raises."""

    @abc.abstractmethod
    def savepoint(self, tx: Tx) -> contextlib.AbstractContextManager[None]:
        """A nested unit inside `transaction`, undone alone when its block raises."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def create(self, *statements: str) -> None:
        """Create the kit's tables and the caller's (`CREATE TABLE IF NOT EXISTS ...`)."""
        with self.transaction() as tx:
            for statement in (*_kit_schema(self.binary), *statements):
                tx.execute(statement)


class SqliteDatabase(Database):
    """One SQLite file in WAL mode, synchronous=FULL: committed means on disk."""

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Tx]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(self._db, "?")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextlib.contextmanager
    def savepoint(self, tx: Tx) -> Iterator[None]:
        tx.execute("SAVEPOINT handler")
        try:
            yield
        except BaseException:
            tx.execute("ROLLBACK TO handler")
            raise
        finally:
            tx.execute("RELEASE handler")

    def close(self) -> None:
        self._db.close()


class PostgresDatabase(Database):
    """A psycopg_pool pool; each transaction takes a connection of its own."""

    binary = "BYTEA"

    def __init__(self, url: str, max_size: int = 4) -> None:
        self._pool = psycopg_pool.ConnectionPool(
            url, min_size=1, max_size=max_size, kwargs={"autocommit": True}, open=True
        )
        self._pool.wait()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Tx]:
        with self._pool.connection() as connection, connection.transaction():
            yield Tx(connection, "%s")

    @contextlib.contextmanager
    def savepoint(self, tx: Tx) -> Iterator[None]:
        with cast(psycopg.Connection[Any], tx.connection).transaction():
            yield

    def close(self) -> None:
        self._pool.close()


def open_database(url: str) -> Database:
    """`sqlite:///path/to/file` or `postgresql://...`."""
    if url.startswith("sqlite:///"):
        return SqliteDatabase(url.removeprefix("sqlite:///"))
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(url)
    raise ValueError(f"not a sqlite:/// or postgresql:// URL: {url!r}")


def _kit_schema(binary: str) -> tuple[str, ...]:
    return (
        f"""CREATE TABLE IF NOT EXISTS kit_commands (
            idempotency_key TEXT PRIMARY KEY,
            saga_id TEXT NOT NULL,
            method TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            status_code INTEGER NOT NULL,
            outcome {binary} NOT NULL,
            create_time TEXT NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS kit_tombstones (
            action_key TEXT PRIMARY KEY,
            saga_id TEXT NOT NULL,
            compensation_key TEXT NOT NULL,
            create_time TEXT NOT NULL
        )""",
    )


def _failpoint(name: str) -> None:
    if os.environ.get(FAILPOINT_VAR) == name:
        sys.stderr.write(f"kit failpoint {name}: exiting\n")
        sys.stderr.flush()
        os._exit(FAILPOINT_EXIT_CODE)


def fingerprint(method: str, request: Message) -> str:
    """sha256 of the method and the whole request, serialized deterministically."""
    digest = hashlib.sha256(method.encode() + b"\0")
    digest.update(request.SerializeToString(deterministic=True))
    return digest.hexdigest()


class Participant:
    """Base of a servicer whose commands the kit runs (`@action`, `@compensation`);
    `domain` goes into the ErrorInfo of its refusals."""

    domain = DOMAIN

    def __init__(self, database: Database) -> None:
        self.database = database


Outcome: TypeAlias = Message | status_pb2.Status


def _context(request: Message) -> Any:
    context = request.context  # type: ignore[attr-defined]
    if not request.HasField("context") or not context.idempotency_key.strip():
        raise Rejected(
            "INVALID_COMMAND",
            "context.idempotency_key is required",
            grpc.StatusCode.INVALID_ARGUMENT,
        )
    return context


def _stored(tx: Tx, key: str) -> tuple[Any, ...] | None:
    return tx.one(
        "SELECT saga_id, method, fingerprint, status_code, outcome FROM kit_commands"
        " WHERE idempotency_key = %s",
        (key,),
    )


def _record(tx: Tx, key: str, saga_id: str, method: str, print_: str, outcome: Outcome) -> None:
    code = outcome.code if isinstance(outcome, status_pb2.Status) else OK
    tx.execute(
        "INSERT INTO kit_commands (idempotency_key, saga_id, method, fingerprint, status_code,"
        " outcome, create_time) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (key, saga_id, method, print_, code, outcome.SerializeToString(), _now()),
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _decoded(code: int, outcome: bytes, reply_type: type[Message]) -> Outcome:
    if code == OK:
        return reply_type.FromString(bytes(outcome))
    return status_pb2.Status.FromString(bytes(outcome))


@dataclasses.dataclass(frozen=True, slots=True)
class Undoes:
    """What a compensation undoes: the action RPC's name and its reply message, so the
    handler is given that action's stored reply (see `compensation`). None fields: the
    handler is given nothing (it finds the effect itself, by the compensated key)."""

    method: str | None = None
    reply_type: type[Message] | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class CommandResult:
    """A command's answer, and whether it was replayed from an earlier delivery."""

    outcome: Outcome
    replayed: bool


def run_command(
    database: Database,
    method: str,
    request: Message,
    reply_type: type[Message],
    apply: Callable[..., Message],
    *,
    undoes: Undoes | None = None,
    check: Callable[[Tx, Message], None] | None = None,
    domain: str = DOMAIN,
) -> CommandResult:
    """The kit's transaction for one command (see the module docstring); the core that
    `@action` and `@compensation` run, for servicers that want their own adapter.

    An action's `apply(tx, request)`; a compensation's (`undoes` given)
    `apply(tx, request, done)`. `check(tx, request)` runs before an action's `apply`, in
    its savepoint (a `Rejected` there is recorded like the handler's). Errors carry
    `domain` in their ErrorInfo.
    """
    try:
        command = _context(request)
    except Rejected as refused:
        return CommandResult(refused.to_status(domain), replayed=False)
    key, saga_id, print_ = command.idempotency_key, command.saga_id, fingerprint(method, request)
    with database.transaction() as tx:
        stored = _stored(tx, key)
        if stored is not None:
            if (stored[1], stored[2]) != (method, print_):
                reused = Rejected(
                    "IDEMPOTENCY_KEY_REUSED",
                    f"idempotency key {key!r} was already used by {stored[1]} with a "
                    "different request",
                    grpc.StatusCode.ALREADY_EXISTS,
                )
                return CommandResult(reused.to_status(domain), replayed=True)
            return CommandResult(_decoded(stored[3], stored[4], reply_type), replayed=True)
        try:
            with database.savepoint(tx):
                if undoes is None:
                    _refuse_compensated(tx, key)
                    if check is not None:
                        check(tx, request)
                    outcome: Outcome = apply(tx, request)
                else:
                    outcome = _compensate(tx, command, request, apply, undoes)
        except Rejected as rejection:
            if rejection.reason == "NOT_OWNER":  # refused, not processed: nothing recorded
                return CommandResult(rejection.to_status(domain), replayed=False)
            outcome = rejection.to_status(domain)
        _record(tx, key, saga_id, method, print_, outcome)
        _failpoint("before_commit")
    _failpoint("after_commit")
    return CommandResult(outcome, replayed=False)


def _refuse_compensated(tx: Tx, key: str) -> None:
    tombstone = tx.one("SELECT compensation_key FROM kit_tombstones WHERE action_key = %s", (key,))
    if tombstone is not None:
        raise Rejected(
            "ALREADY_COMPENSATED",
            f"the action with idempotency key {key!r} was already compensated by {tombstone[0]!r}",
        )


def _compensate(
    tx: Tx,
    command: Any,
    request: Message,
    apply: Callable[..., Message],
    undoes: Undoes,
) -> Message:
    """Check ownership, leave the tombstone, hand the handler its own action's reply."""
    target = command.compensated_idempotency_key
    done: Message | None = None
    if target:
        action = _stored(tx, target)
        tombstone = tx.one("SELECT saga_id FROM kit_tombstones WHERE action_key = %s", (target,))
        owner = action[0] if action is not None else tombstone[0] if tombstone else None
        if owner is not None and owner != command.saga_id:
            raise Rejected(
                "NOT_OWNER",
                f"the action {target!r} belongs to another saga; a compensation undoes only "
                "its own saga's effects",
                grpc.StatusCode.PERMISSION_DENIED,
            )
        if (
            action is not None
            and action[3] == OK
            and action[1] == undoes.method
            and undoes.reply_type is not None
        ):
            done = undoes.reply_type.FromString(bytes(action[4]))
        if tombstone is None:
            tx.execute(
                "INSERT INTO kit_tombstones (action_key, saga_id, compensation_key, create_time)"
                " VALUES (%s, %s, %s, %s)",
                (target, command.saga_id, command.idempotency_key, _now()),
            )
    return apply(tx, request, done)


def _once_more_on_a_race(run: Callable[[], CommandResult]) -> CommandResult:
    """Two deliveries of one key at once (PostgreSQL): the second's INSERT of the record
    fails and its transaction rolls back; run again, it finds the first's answer."""
    try:
        return run()
    except psycopg.errors.UniqueViolation:
        return run()


def _method_types(function: Callable[..., Any]) -> Callable[[Any], tuple[str, type[Message]]]:
    name = function.__name__

    def types_of(request: Message) -> tuple[str, type[Message]]:
        for service in request.DESCRIPTOR.file.services_by_name.values():
            method = service.methods_by_name.get(name)
            if method is not None:
                return name, message_factory.GetMessageClass(method.output_type)  # type: ignore[arg-type]
        raise LookupError(f"no RPC {name} in {request.DESCRIPTOR.file.name}")

    return types_of


def _rpc(function: Callable[..., Any], of: str | None) -> Any:
    reply_of = _method_types(function)

    @functools.wraps(function)
    async def rpc(self: Participant, request: Message, context: grpc.aio.ServicerContext) -> Any:
        method, reply_type = reply_of(request)
        undoes = None
        if of is not None:
            undoes = Undoes(of, _method_types(_named(of))(request)[1])
        run = functools.partial(
            run_command,
            self.database,
            method,
            request,
            reply_type,
            functools.partial(function, self),
            undoes=undoes,
            domain=self.domain,
        )
        outcome = (await asyncio.to_thread(_once_more_on_a_race, run)).outcome
        if isinstance(outcome, status_pb2.Status):
            await context.abort_with_status(rpc_status.to_status(outcome))
        return outcome

    return rpc


def _named(name: str) -> Callable[..., Any]:
    def placeholder() -> None: ...

    placeholder.__name__ = name
    return placeholder


def action(function: Callable[[Any, Tx, Request], Reply]) -> Any:
    """Make `def Method(self, tx, request) -> Reply` the gRPC method, run by the kit."""
    return _rpc(function, None)


def compensation(of: str) -> Callable[[Callable[..., Any]], Any]:
    """Make `def Method(self, tx, request, done) -> Reply` the gRPC method undoing the
    action RPC `of`; `done` is that action's reply in this saga, or None."""

    def wrap(function: Callable[..., Any]) -> Any:
        return _rpc(function, of)

    return wrap
