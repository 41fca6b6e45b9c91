"""One command, applied at most once per idempotency key, in one database transaction.

For each command, keyed by its CommandContext.idempotency_key, in ONE transaction of the
participant's own database, so the business write and the kit's record commit together:

- a repeat of a processed key gets the stored answer (reply or rejection) and changes
  nothing; the same key with another request (its fingerprint, a sha256 of the method
  and the deterministic bytes of the request) is ALREADY_EXISTS;
- a compensation leaves a tombstone for the action key it undoes, so an action that
  arrives after its own compensation is refused (ALREADY_COMPENSATED) and never applied;
- a compensation may undo only its own step's action, the key "<saga_id>:<step>" the
  orchestrator gives it, and only an action its own saga made: anything else is
  PERMISSION_DENIED (NOT_OWNER), and the handler is given the reply its own action
  stored, not an id taken from the request;
- a handler's `Rejected` rolls its writes back and is recorded as the answer; `Invalid`
  and `NotOwner` roll back too and record nothing.

Crash points for tests (`failpoints`): SAGA_PARTICIPANT_FAILPOINT=before_commit[:n] or
after_commit[:n] ends the process with the n-th recorded command's business write done
but not committed, or committed but not answered.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeAlias

import grpc
import psycopg
from google.protobuf.message import Message
from google.rpc import status_pb2

from participants.kit.database import Database, Tx
from participants.kit.errors import DOMAIN, Invalid, NotOwner, Rejected
from participants.kit.failpoints import AFTER_COMMIT, BEFORE_COMMIT, reached

OK = grpc.StatusCode.OK.value[0]

Outcome: TypeAlias = Message | status_pb2.Status


@dataclasses.dataclass(frozen=True, slots=True)
class Undoes:
    """What a compensation undoes: the action RPC's name and its reply message, so the
    handler is given that action's stored reply. None fields: the handler is given
    None (it finds the effect itself, by the compensated key)."""

    method: str | None = None
    reply_type: type[Message] | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class CommandResult:
    """A command's answer; whether it was replayed from an earlier delivery, and whether
    this delivery recorded it (False for a replay and for `Invalid` or `NotOwner`)."""

    outcome: Outcome
    replayed: bool
    recorded: bool


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
    """The kit's transaction for one command (see the module docstring).

    An action's `apply(tx, request)`; a compensation's (`undoes` given)
    `apply(tx, request, done)`. `check(tx, request)` runs before an action's `apply`, in
    its savepoint (a `Rejected` there is recorded like the handler's). Errors carry
    `domain` in their ErrorInfo.
    """
    try:
        command = command_context(request)
    except Rejected as refused:
        return CommandResult(refused.to_status(domain), replayed=False, recorded=False)
    key, saga_id, print_ = command.idempotency_key, command.saga_id, fingerprint(method, request)
    with database.transaction() as tx:
        stored = _stored(tx, key)
        if stored is not None:
            if (stored[1], stored[2]) != (method, print_):
                reused = Rejected(
                    "IDEMPOTENCY_KEY_REUSED",
                    f"idempotency key {key!r} was already used by {stored[1]} with a "
                    "different request",
                    code=grpc.StatusCode.ALREADY_EXISTS,
                )
                return CommandResult(reused.to_status(domain), replayed=True, recorded=False)
            reply = _decoded(stored[3], stored[4], reply_type)
            return CommandResult(reply, replayed=True, recorded=False)
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
            if not rejection.recorded:  # refused, not processed: nothing recorded
                return CommandResult(rejection.to_status(domain), replayed=False, recorded=False)
            outcome = rejection.to_status(domain)
        _record(tx, key, saga_id, method, print_, outcome)
        reached(BEFORE_COMMIT)
    reached(AFTER_COMMIT)
    return CommandResult(outcome, replayed=False, recorded=True)


def once_more_on_a_race(run: Callable[[], CommandResult]) -> CommandResult:
    """Two deliveries of one key at once (PostgreSQL): the second's INSERT of the record
    fails and its transaction rolls back; run again, it finds the first's answer."""
    try:
        return run()
    except psycopg.errors.UniqueViolation:
        return run()


def command_context(request: Message) -> Any:
    """The request's CommandContext; a command without an idempotency key is invalid."""
    context = request.context  # type: ignore[attr-defined]
    if not request.HasField("context") or not context.idempotency_key.strip():
        raise Invalid("context.idempotency_key is required")
    return context


def fingerprint(method: str, request: Message) -> str:
    """sha256 of the method and the whole request, serialized deterministically."""
    digest = hashlib.sha256(method.encode() + b"\0")
    digest.update(request.SerializeToString(deterministic=True))
    return digest.hexdigest()


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
        (key, saga_id, method, print_, code, outcome.SerializeToString(), now()),
    )


def now() -> str:
    """The current UTC time as ISO 8601, the format of the kit's time columns."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _decoded(code: int, outcome: bytes, reply_type: type[Message]) -> Outcome:
    if code == OK:
        return reply_type.FromString(bytes(outcome))
    return status_pb2.Status.FromString(bytes(outcome))


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
        if target != f"{command.saga_id}:{command.step}":
            # Else a forged compensation could tombstone a running saga's step.
            raise NotOwner(
                f"compensation of saga {command.saga_id} step {command.step} may undo only "
                f"the action {command.saga_id}:{command.step}, not {target!r}"
            )
        action = _stored(tx, target)
        tombstone = tx.one("SELECT saga_id FROM kit_tombstones WHERE action_key = %s", (target,))
        owner = action[0] if action is not None else tombstone[0] if tombstone else None
        if owner is not None and owner != command.saga_id:
            raise NotOwner(
                f"the action {target!r} belongs to another saga; a compensation undoes only "
                "its own saga's effects"
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
                (target, command.saga_id, command.idempotency_key, now()),
            )
    return apply(tx, request, done)
