"""Named crash and freeze points for crash tests, armed only by configuration.

`SAGA_FAILPOINT=[stop:]<name>[@<scope>][:<n>]` acts the n-th time (default the first)
execution passes the point called `name`:

- without `stop:`, the process ends at once (`os._exit(137)`, as a SIGKILL would: no
  cleanup, no flush);
- with `stop:`, the process stops itself with SIGSTOP, as a paused VM or a debugger
  would stop it: its sockets stay open and its database sessions stay where they were,
  until something sends it SIGCONT or SIGKILL.

`@<scope>` narrows a point to the passes made while that scope is entered (`scope()`):
the store names the kind of write it is making, so `stop:plan_sent@lock_take` freezes
inside a lock take and not in the group commit that runs beside it. Before acting the
point writes one line to stderr (`failpoint <point> hit ...`), so a test can wait for it.
Unset, `hit` is one comparison with None.

Points in the orchestrator:
- `step_started`: a step's start is committed, its command not yet sent.
- `reply_received`: a participant replied, its result not yet committed.
- `token_issued`: an asynchronous step's completion token is committed (its digest),
  the command carrying it not yet sent: the token is never handed out.
- `step_accepted`: an asynchronous step's participant accepted it, WAITING not yet committed.
- `completion_committed`: a CompleteStep or FailStep is committed, its caller not yet
  answered (the caller sees the call fail and retries with the same completion id).
- `compensation_started`: a compensation's start is committed, not yet sent
  (`compensation_started:2` dies between the first and second compensation).
- `compensation_replied`: a compensation's participant replied (or, for a tracked saga's
  compensation event, the broker confirmed it), its outcome not yet committed: the next
  driver sends it again with the same idempotency key (the same event id).
- `saga_finished`: the saga's terminal status is committed.
- `plan_sent` (PostgreSQL): every statement of a write's plan is sent in its pipeline,
  the transaction not yet committed and no answer read: the session holds the plan's row
  locks (and a lock take's guard) while the server waits for the rest. Its scopes, the
  kinds of write (`WRITE_SCOPES`): `group_commit` (commits of existing sagas),
  `key_release` (such commits, one of them releasing lock keys), `new_sagas` (inserts
  only), `lock_take` (a waiting saga taking its keys), `locked_opening` (new sagas
  taking or queueing for keys).

Points in the event relay (`orchestrator/events`):
- `relay_read`: a partition's batch is read from the outbox, nothing of it published.
- `relay_confirmed`: the broker confirmed every item of a batch, none of its rows
  deleted yet (dying here republishes the batch: duplicates, never a loss).
- `relay_item_confirmed` (RabbitMQ): the broker confirmed one item; the n-th confirm of
  the process (`relay_item_confirmed:n`) falls mid-batch when batches hold more than n
  items: part of the batch confirmed, part in flight or unsent, nothing deleted.

Points in the tracker's broker consumers (`orchestrator/events/ingest`):
- `ingest_received`: a batch of messages is taken from the broker and parsed, nothing of
  it applied (dying here, the broker redelivers every message: nothing was recorded).
- `ingest_committed`: the batch's events are committed, no message acknowledged yet
  (dying here, the broker redelivers them and the store answers DUPLICATE).

The module lives outside the engine so that every layer that crashes on purpose (engine,
store, relay) may import it.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass

ENV_VAR = "SAGA_FAILPOINT"
EXIT_CODE = 137
STOP_PREFIX = "stop:"

POINTS = frozenset(
    {
        "step_started",
        "reply_received",
        "token_issued",
        "step_accepted",
        "completion_committed",
        "compensation_started",
        "compensation_replied",
        "saga_finished",
        "plan_sent",
        "relay_read",
        "relay_confirmed",
        "relay_item_confirmed",
        "ingest_received",
        "ingest_committed",
    }
)
WRITE_SCOPES = frozenset(
    {"group_commit", "key_release", "new_sagas", "lock_take", "locked_opening"}
)


@dataclass(frozen=True)
class Armed:
    """The point a process is armed with (see the module)."""

    name: str
    scope: str | None = None
    count: int = 1
    stop: bool = False


def _parse(spec: str | None) -> Armed | None:
    if not spec:
        return None
    stop = spec.startswith(STOP_PREFIX)
    rest = spec.removeprefix(STOP_PREFIX)
    point, _, count = rest.partition(":")
    name, _, scope = point.partition("@")
    if name not in POINTS:
        raise ValueError(f"{ENV_VAR}={spec!r}: unknown point; known: {', '.join(sorted(POINTS))}")
    if scope and scope not in WRITE_SCOPES:
        raise ValueError(
            f"{ENV_VAR}={spec!r}: unknown scope; known: {', '.join(sorted(WRITE_SCOPES))}"
        )
    if count and not (count.isdigit() and int(count) > 0):
        raise ValueError(f"{ENV_VAR}={spec!r}: the count after ':' must be a positive integer")
    return Armed(name, scope or None, int(count) if count else 1, stop)


_armed = _parse(os.environ.get(ENV_VAR))
_hits = 0
_scope: contextvars.ContextVar[str | None] = contextvars.ContextVar("failpoint_scope", default=None)


@contextlib.contextmanager
def scope(name: str) -> Iterator[None]:
    """Passes of points inside the block count for `<point>@<name>` too."""
    if _armed is None or _armed.scope is None:
        yield
        return
    token = _scope.set(name)
    try:
        yield
    finally:
        _scope.reset(token)


def hit(name: str) -> None:
    """Die (or stop) here if this is the armed point's n-th pass."""
    global _hits
    if _armed is None or _armed.name != name:
        return
    if _armed.scope is not None and _armed.scope != _scope.get():
        return
    _hits += 1
    if _hits != _armed.count:
        return
    where = name if _armed.scope is None else f"{name}@{_armed.scope}"
    sys.stderr.write(
        f"failpoint {where} hit {_hits} time(s): {'stopping' if _armed.stop else 'exiting'}\n"
    )
    sys.stderr.flush()
    if _armed.stop:
        os.kill(os.getpid(), signal.SIGSTOP)
    else:
        os._exit(EXIT_CODE)
