"""The SQL both back ends run, written once and rendered per dialect.

SQLite and PostgreSQL run the same statements; they differ only in how a
parameter is spelled (`:name`, `%(name)s`), whose clock decides a lease (the
caller's on SQLite, which has one writer; the server's on PostgreSQL, shared by
replicas), how a list of ids is bound, and whether a claim may skip rows another
transaction has locked. A `Dialect` holds exactly those differences; `Statements`
renders every query from it once, at import.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orchestrator.core.records import Lease
from orchestrator.store._rows import aware


@dataclass(frozen=True, slots=True)
class Table:
    """A table the store writes, with its columns in order and their PostgreSQL types
    (which PostgreSQL's rows-as-JSON statements declare). Every INSERT of the store is
    rendered by `insert`, so a table's column list is written here only."""

    name: str
    types: Mapping[str, str]

    @property
    def columns(self) -> str:
        return ", ".join(self.types)

    def insert(self, rows: str, columns: Sequence[str] | None = None) -> str:
        """An INSERT of `rows` (a VALUES list or a SELECT) into `columns` (all by default)."""
        names = ", ".join(self.types if columns is None else columns)
        return f"INSERT INTO {self.name} ({names})\n{rows}"


SAGAS = Table(
    "sagas",
    {
        "saga_id": "text",
        "saga_type": "text",
        "definition_version": "integer",
        "correlation_id": "text",
        "idempotency_key": "text",
        "request_fingerprint": "text",
        "payload": "jsonb",
        "status": "text",
        "failure_reason": "text",
        "failed_step": "text",
        "needs_intervention": "boolean",
        "create_time": "timestamptz",
        "update_time": "timestamptz",
        "version": "integer",
        "deadline_time": "timestamptz",
        "lock_keys": "text",
        "locks_held": "boolean",
        "lock_wait_since": "timestamptz",
        "output": "bytea",
        "namespace": "text",
        "completion_webhook_url": "text",
        "wake_time": "timestamptz",
    },
)
STEPS = Table(
    "saga_steps",
    {
        "saga_id": "text",
        "step_index": "integer",
        "name": "text",
        "status": "text",
        "attempts": "integer",
        "compensation_attempts": "integer",
        "error": "text",
        "result": "bytea",
        "start_time": "timestamptz",
        "update_time": "timestamptz",
        "next_attempt_time": "timestamptz",
        "wait_deadline": "timestamptz",
        "wait_until": "timestamptz",
        "completion_tokens": "text",
        "completion_id": "text",
    },
)
TRANSITIONS = Table(
    "saga_transitions",
    {
        "saga_id": "text",
        "seq": "integer",
        "event": "text",
        "time": "timestamptz",
        "saga_status": "text",
        "step": "text",
        "step_status": "text",
        "attempt": "integer",
        "error": "text",
        "actor": "text",
        "reason": "text",
    },
)
HELD_KEYS = Table(
    "saga_locks", {"lock_key": "text", "saga_id": "text", "acquire_time": "timestamptz"}
)
QUEUE_PLACES = Table(
    "saga_lock_queue",
    {"lock_key": "text", "saga_id": "text", "ticket": "bigint", "enqueue_time": "timestamptz"},
)
OUTBOX = Table(
    "saga_outbox",
    {
        "sink": "text",
        "partition_no": "integer",
        "saga_id": "text",
        "seq": "bigint",
        "event_type": "text",
        "body": "bytea",
    },
)
"""The outbox rows a write adds; `id` and `created_at` are the database's (0008)."""
SAGA_COLUMNS = SAGAS.columns
OUTBOX_COLUMNS = f"id, {OUTBOX.columns}, created_at"
STEP_COLUMNS = STEPS.columns
TRANSITION_COLUMNS = TRANSITIONS.columns
NEW_SAGA_COLUMNS = ("lease_owner", "lease_expires_at")
"""Set only when a saga is inserted: the lease of the process that opened it."""
SAGA_KEY_TAKEN = "ON CONFLICT (idempotency_key) DO NOTHING"
"""A saga whose idempotency key is taken is not inserted (the key's saga answers). The
stored key is qualified by the saga's namespace (`orchestrator.core.namespaces`), so
the one-column unique index makes keys unique per namespace."""
STEP_UPSERT = "ON CONFLICT (saga_id, name) DO UPDATE\nSET " + ", ".join(
    f"{column} = excluded.{column}" for column in STEPS.types if column not in ("saga_id", "name")
)
"""A step row written again replaces every column but its key."""

UNFINISHED_STATUSES = "('RUNNING', 'COMPENSATING')"
"""SQL list of the statuses recovery resumes; matches the partial index's predicate."""


@dataclass(frozen=True, slots=True)
class Dialect:
    """What one back end spells differently; everything else in the SQL is shared.

    `lease_params(lease)` gives the parameters `now` and `lease_expiry` name
    (`owner` too); with no lease, the owner and expiry are NULL.
    """

    param: Callable[[str], str]
    """The spelling of the bound parameter with this name."""
    now: str
    """An expression for the current time, as leases compare it."""
    lease_expiry: str
    """An expression for the expiry of a lease taken now."""
    lease_params: Callable[[Lease | None], dict[str, object]]
    in_ids: str
    """A condition `saga_id <in_ids>` true for the ids bound as the `saga_ids` parameter."""
    id_list: Callable[[Sequence[Any]], object]
    """The `saga_ids` parameter for these ids (also the `ids` of `in_list`)."""
    in_list: Callable[[str], str]
    """A condition `<column> <in_list(name)>` true for the values bound as parameter
    `name` (made by `id_list`)."""
    skip_locked: str = ""
    """Appended to a claim's row selection, so concurrent claimers pass each other by."""
    lock_in_id_order: str = ""
    """Appended to a row selection, so an update of many sagas locks their rows in saga_id
    order (code point order, as Python sorts), the order group commit updates them in:
    the two never wait for each other in a cycle. Empty where one writer runs at a time."""
    time_to_db: Callable[[datetime], object] = aware
    number_series: Callable[[str], str] = lambda name: (
        f"SELECT generate_series(0, %({name})s - 1) AS value"
    )
    """A query of one column `value`: the integers 0 .. parameter `name` - 1."""
    contains: Callable[[str, str], str] = lambda column, param: f"strpos({column}, {param}) > 0"
    """A condition true when `column` contains the bound text `param` (case-sensitive)."""


@dataclass(frozen=True, slots=True)
class Statements:
    """Every statement of the store's data path, rendered for one dialect."""

    insert_saga: str
    update_saga: str
    upsert_step: str
    insert_transition: str
    claim_sagas: str
    claim_saga: str
    renew_leases: str
    release_leases: str
    select_saga: str
    select_sagas: str
    select_saga_by_key: str
    select_version: str
    select_steps: str
    select_steps_of_sagas: str
    last_seq: str
    last_seqs: str
    select_transitions: str
    count_unfinished_by_definition: str
    delete_expired: str
    count_needing_intervention: str
    insert_outbox_event: str
    select_pending_events: str
    select_pending_events_of: str
    delete_events: str
    event_backlog: str
    add_event_partitions: str
    claim_event_partitions: str
    renew_event_partitions: str
    release_event_partitions: str
    hold_event_partition: str
    bury_event: str
    delete_partition_events: str
    count_dead_events: str
    announce_relay: str
    forget_relays: str
    count_relays: str
    dialect: Dialect

    @classmethod
    def render(cls, dialect: Dialect) -> Statements:
        def values(table: Table, *more: str) -> str:
            return one_row(dialect, table, *more)

        p = dialect.param
        finished = f"{p('status')} IN ('COMPLETED', 'FAILED')"
        take_lease = (
            f"lease_owner = {p('owner')}, lease_expires_at = {dialect.lease_expiry},"
            " version = version + 1"
        )
        lease_free = f"lease_expires_at IS NULL OR lease_expires_at < {dialect.now}"
        # A parked saga (waiting for asynchronous completions) is claimed at its wake time.
        awake = f"wake_time IS NULL OR wake_time <= {dialect.now}"
        owned_in_order = (
            f"SELECT saga_id FROM sagas WHERE lease_owner = {p('owner')}"
            f" AND saga_id {dialect.in_ids} {dialect.lock_in_id_order}"
        )
        return cls(
            insert_saga=SAGAS.insert(
                f"{values(SAGAS, p('owner'), dialect.lease_expiry)}\n{SAGA_KEY_TAKEN}"
                "\nRETURNING saga_id",
                [*SAGAS.types, *NEW_SAGA_COLUMNS],
            ),
            update_saga=f"""
UPDATE sagas
SET status = {p("status")}, failure_reason = {p("failure_reason")},
    failed_step = {p("failed_step")}, needs_intervention = {p("needs_intervention")},
    update_time = {p("update_time")}, version = {p("version")},
    lock_keys = {p("lock_keys")}, locks_held = {p("locks_held")},
    lock_wait_since = {p("lock_wait_since")},
    output = {p("output")},
    wake_time = {p("wake_time")},
    -- A finished saga needs no driver; an operator's retry makes it claimable at once.
    lease_owner = CASE WHEN {finished} THEN NULL ELSE lease_owner END,
    lease_expires_at = CASE WHEN {finished} THEN NULL ELSE lease_expires_at END
WHERE saga_id = {p("saga_id")} AND version = {p("expected_version")}
""",
            upsert_step=STEPS.insert(f"{values(STEPS)}\n{STEP_UPSERT}"),
            insert_transition=TRANSITIONS.insert(values(TRANSITIONS)),
            # Two branches over two partial indexes (0012), so a claim never walks the
            # parked sagas: those not parked oldest first, and the parked ones now due
            # (`(SELECT now)` is evaluated once, so it bounds the index scan).
            claim_sagas=f"""
WITH fresh AS (
    SELECT saga_id, create_time FROM sagas
    WHERE status IN {UNFINISHED_STATUSES} AND wake_time IS NULL AND ({lease_free})
    ORDER BY create_time, saga_id
    LIMIT {p("limit")}
    {dialect.skip_locked}
), due AS (
    SELECT saga_id, create_time FROM sagas
    WHERE status IN {UNFINISHED_STATUSES} AND wake_time <= (SELECT {dialect.now})
      AND ({lease_free})
    ORDER BY wake_time
    LIMIT {p("limit")}
    {dialect.skip_locked}
)
UPDATE sagas SET {take_lease}
WHERE saga_id IN (
    SELECT saga_id FROM (SELECT * FROM fresh UNION ALL SELECT * FROM due) AS claimable
    ORDER BY create_time, saga_id
    LIMIT {p("limit")}
)
RETURNING {SAGA_COLUMNS}
""",
            claim_saga=f"""
UPDATE sagas SET {take_lease}
WHERE saga_id = {p("saga_id")} AND status IN {UNFINISHED_STATUSES}
  AND ({lease_free} OR lease_owner = {p("owner")}) AND ({awake})
RETURNING {SAGA_COLUMNS}
""",
            renew_leases=f"""
UPDATE sagas SET lease_expires_at = {dialect.lease_expiry}
WHERE saga_id IN ({owned_in_order})
RETURNING saga_id
""",
            release_leases=f"""
UPDATE sagas SET lease_owner = NULL, lease_expires_at = NULL
WHERE saga_id IN ({owned_in_order})
""",
            select_saga=f"SELECT {SAGA_COLUMNS} FROM sagas WHERE saga_id = {p('saga_id')}",
            select_sagas=f"SELECT {SAGA_COLUMNS} FROM sagas WHERE saga_id {dialect.in_ids}",
            select_saga_by_key=(
                f"SELECT {SAGA_COLUMNS} FROM sagas WHERE idempotency_key = {p('idempotency_key')}"
            ),
            select_version=f"SELECT version FROM sagas WHERE saga_id = {p('saga_id')}",
            select_steps=(
                f"SELECT {STEP_COLUMNS} FROM saga_steps WHERE saga_id = {p('saga_id')}"
                " ORDER BY step_index"
            ),
            select_steps_of_sagas=(
                f"SELECT {STEP_COLUMNS} FROM saga_steps WHERE saga_id {dialect.in_ids}"
                " ORDER BY saga_id, step_index"
            ),
            last_seqs=(
                "SELECT saga_id, max(seq) AS last_seq FROM saga_transitions"
                f" WHERE saga_id {dialect.in_ids} GROUP BY saga_id"
            ),
            last_seq=(
                "SELECT coalesce(max(seq), 0) AS last_seq FROM saga_transitions"
                f" WHERE saga_id = {p('saga_id')}"
            ),
            select_transitions=f"""
SELECT {TRANSITION_COLUMNS} FROM saga_transitions
WHERE saga_id = {p("saga_id")} AND seq > {p("after_seq")} ORDER BY seq
""",
            count_unfinished_by_definition=f"""
SELECT saga_type, definition_version, count(*) AS sagas FROM sagas
WHERE status IN {UNFINISHED_STATUSES}
GROUP BY saga_type, definition_version
""",
            # The predicate is the partial index's (0006_retention_index.sql), spelled out.
            delete_expired=f"""
DELETE FROM sagas
WHERE saga_id IN (
    SELECT saga_id FROM sagas
    WHERE status IN ('COMPLETED', 'FAILED') AND NOT needs_intervention
      AND update_time < {p("before")}
    ORDER BY update_time, saga_id
    LIMIT {p("limit")}
    {dialect.skip_locked}
)
RETURNING saga_id
""",
            # Spelled as the partial index's predicate, so the planner uses it.
            count_needing_intervention="""
SELECT saga_type, count(*) AS sagas FROM sagas
WHERE needs_intervention = TRUE
GROUP BY saga_type
""",
            insert_outbox_event=OUTBOX.insert(values(OUTBOX)),
            # The (sink, partition_no, id) index gives the rows in order.
            select_pending_events=f"""
SELECT {OUTBOX_COLUMNS} FROM saga_outbox
WHERE sink = {p("sink")} AND partition_no = {p("partition_no")}
ORDER BY id
LIMIT {p("limit")}
""",
            # Each partition's first rows by the (sink, partition_no, id) index; one
            # statement for all the partitions a relay holds, in outbox order.
            select_pending_events_of=f"""
SELECT {OUTBOX_COLUMNS} FROM (
    SELECT {OUTBOX_COLUMNS},
           row_number() OVER (PARTITION BY partition_no ORDER BY id) AS place
    FROM saga_outbox
    WHERE sink = {p("sink")} AND partition_no {dialect.in_list("partitions")}
) AS pending
WHERE place <= {p("limit")}
ORDER BY id
""",
            delete_events=f"DELETE FROM saga_outbox WHERE id {dialect.in_list('ids')} RETURNING id",
            event_backlog="""
SELECT sink, count(*) AS pending, min(created_at) AS oldest FROM saga_outbox GROUP BY sink
""",
            **_relay_statements(dialect),
            dialect=dialect,
        )


def _relay_statements(dialect: Dialect) -> dict[str, str]:
    """The relay's partition leases (claimed like sagas', by the database clock) and its
    fenced deletes (0009_event_relay.sql)."""
    p = dialect.param
    free = f"expires_at IS NULL OR expires_at < {dialect.now}"
    free_not = f"expires_at >= {dialect.now}"
    return {
        "add_event_partitions": f"""
INSERT INTO saga_event_partitions (sink, partition_no)
SELECT {p("sink")}, value FROM ({dialect.number_series("partitions")}) AS numbers
WHERE TRUE
ON CONFLICT (sink, partition_no) DO NOTHING
""",
        "claim_event_partitions": f"""
UPDATE saga_event_partitions
SET owner = {p("owner")}, expires_at = {dialect.lease_expiry}, version = version + 1
WHERE sink = {p("sink")} AND partition_no IN (
    SELECT partition_no FROM saga_event_partitions
    WHERE sink = {p("sink")} AND partition_no < {p("partitions")} AND ({free})
    ORDER BY partition_no
    LIMIT {p("limit")}
    {dialect.skip_locked}
)
RETURNING partition_no, version
""",
        "renew_event_partitions": f"""
UPDATE saga_event_partitions SET expires_at = {dialect.lease_expiry}
WHERE sink = {p("sink")} AND owner = {p("owner")}
RETURNING partition_no, version
""",
        "release_event_partitions": f"""
UPDATE saga_event_partitions SET owner = NULL, expires_at = NULL
WHERE sink = {p("sink")} AND owner = {p("owner")} AND partition_no {dialect.in_list("partitions")}
""",
        # Locks the lease row for the rest of the transaction: a claim cannot take the
        # partition between this check and the deletes that follow it.
        "hold_event_partition": f"""
UPDATE saga_event_partitions SET expires_at = {dialect.lease_expiry}
WHERE sink = {p("sink")} AND partition_no = {p("partition_no")}
  AND owner = {p("owner")} AND version = {p("version")}
RETURNING version
""",
        "bury_event": f"""
INSERT INTO saga_dead_events
    (id, sink, partition_no, saga_id, seq, event_type, body, created_at, attempts, error)
SELECT id, sink, partition_no, saga_id, seq, event_type, body, created_at,
       {p("attempts")}, {p("error")}
FROM saga_outbox
WHERE id = {p("id")} AND sink = {p("sink")} AND partition_no = {p("partition_no")}
ON CONFLICT (id) DO NOTHING
""",
        "delete_partition_events": f"""
DELETE FROM saga_outbox
WHERE id {dialect.in_list("ids")} AND sink = {p("sink")} AND partition_no = {p("partition_no")}
RETURNING id
""",
        "announce_relay": f"""
INSERT INTO saga_event_relays (owner, expires_at) VALUES ({p("owner")}, {dialect.lease_expiry})
ON CONFLICT (owner) DO UPDATE SET expires_at = excluded.expires_at
""",
        "forget_relays": f"DELETE FROM saga_event_relays WHERE expires_at < {dialect.now}",
        "count_relays": f"SELECT count(*) AS relays FROM saga_event_relays WHERE {free_not}",
        "count_dead_events": "SELECT sink, count(*) AS dead FROM saga_dead_events GROUP BY sink",
    }


def one_row(
    dialect: Dialect, table: Table, *more: str, given: Mapping[str, str] | None = None
) -> str:
    """VALUES of one row: each column's bound parameter, named as the column, or its
    expression in `given`; then the `more` expressions."""
    given = given or {}
    columns = [given.get(column) or dialect.param(column) for column in table.types]
    return f"VALUES ({', '.join([*columns, *more])})"
