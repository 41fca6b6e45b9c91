"""The webhook tables (0010_webhooks.sql): endpoints, deliveries and completion URLs,
with the statements both back ends run, written once over their `Dialect`.

Times come from the database's clock where leases are decided, as for sagas: a
delivery's lease and its next attempt are `dialect.lease_expiry` of a lease of the
wanted length (PostgreSQL's `clock_timestamp()`, SQLite's one process's clock).

The claim takes each endpoint's due deliveries in order, no more than the endpoint's
`max_concurrency` less those already in flight (leased and unexpired) anywhere. On
PostgreSQL claimers are serialized by a transaction-level advisory lock, so the cap holds
across replicas for as long as a lease outlasts the attempt it covers; rows are also
taken `FOR UPDATE SKIP LOCKED`.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

from orchestrator.core.records import Lease
from orchestrator.core.webhooks import (
    COMPLETION_CONCURRENCY,
    COMPLETION_ENDPOINT,
    AttemptResult,
    Delivery,
    DeliveryFilter,
    DeliveryStatus,
    NewDelivery,
    WebhookEndpoint,
)
from orchestrator.store._rows import Row, RowEncoding
from orchestrator.store._statements import Dialect, Statements
from orchestrator.store.locks import Transaction

ENDPOINT_COLUMNS = (
    "endpoint_id, url, description, event_types, saga_types, namespaces, enabled, "
    "disabled_reason, max_concurrency, secret, previous_secret, previous_secret_expires, "
    "create_time, update_time"
)
DELIVERY_COLUMNS = (
    "delivery_id, endpoint_id, url, event_id, saga_id, event_type, body, status, attempts, "
    "next_attempt_at, last_http_status, last_error, create_time, update_time"
)
CLAIM_LOCK = "SELECT pg_advisory_xact_lock(hashtext('saga.webhook_deliveries'))"
"""Serializes PostgreSQL's claimers for the rest of their transaction (see the module)."""


def _statements(dialect: Dialect) -> dict[str, str]:
    p, now, expiry = dialect.param, dialect.now, dialect.lease_expiry
    endpoint_values = ", ".join(
        p(name)
        for name in (
            "endpoint_id",
            "url",
            "description",
            "event_types",
            "saga_types",
            "namespaces",
            "enabled",
            "disabled_reason",
            "max_concurrency",
            "secret",
            "previous_secret",
            "previous_secret_expires",
        )
    )
    in_flight = f"status = 'pending' AND lease_expires_at >= {now}"
    due = f"""
SELECT d.delivery_id, d.endpoint_id, d.next_attempt_at,
       row_number() OVER (
           PARTITION BY d.endpoint_id ORDER BY d.next_attempt_at, d.delivery_id
       ) AS place,
       coalesce(e.max_concurrency, {p("completion_cap")}) AS cap
FROM webhook_deliveries d
LEFT JOIN webhook_endpoints e ON e.endpoint_id = d.endpoint_id
WHERE d.status = 'pending' AND d.next_attempt_at <= {now}
  AND (d.lease_expires_at IS NULL OR d.lease_expires_at < {now})
  AND (e.enabled OR d.endpoint_id = '{COMPLETION_ENDPOINT}')"""
    candidates = f"""
SELECT due.delivery_id FROM ({due}) AS due
LEFT JOIN (
    SELECT endpoint_id, count(*) AS busy FROM webhook_deliveries WHERE {in_flight}
    GROUP BY endpoint_id
) AS flying ON flying.endpoint_id = due.endpoint_id
WHERE due.place <= due.cap - coalesce(flying.busy, 0)
ORDER BY due.next_attempt_at
LIMIT {p("limit")}"""
    if dialect.skip_locked:
        candidates = (
            f"SELECT delivery_id FROM webhook_deliveries WHERE delivery_id IN ({candidates})"
            f" {dialect.skip_locked}"
        )
    return {
        "insert_endpoint": f"""
INSERT INTO webhook_endpoints ({ENDPOINT_COLUMNS})
VALUES ({endpoint_values}, {now}, {now})
""",
        "update_endpoint": f"""
UPDATE webhook_endpoints SET url = {p("url")}, description = {p("description")},
    event_types = {p("event_types")}, saga_types = {p("saga_types")},
    namespaces = {p("namespaces")}, enabled = {p("enabled")},
    disabled_reason = {p("disabled_reason")}, max_concurrency = {p("max_concurrency")},
    secret = {p("secret")}, previous_secret = {p("previous_secret")},
    previous_secret_expires = {p("previous_secret_expires")}, update_time = {now}
WHERE endpoint_id = {p("endpoint_id")}
RETURNING endpoint_id
""",
        "disable_endpoint": f"""
UPDATE webhook_endpoints SET enabled = FALSE, disabled_reason = {p("reason")},
    update_time = {now}
WHERE endpoint_id = {p("endpoint_id")}
""",
        "select_endpoint": (
            f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints"
            f" WHERE endpoint_id = {p('endpoint_id')}"
        ),
        "list_endpoints": f"""
SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE endpoint_id > {p("after")}
ORDER BY endpoint_id LIMIT {p("limit")}
""",
        "enabled_endpoints": f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE enabled",
        "delete_deliveries_of": (
            f"DELETE FROM webhook_deliveries WHERE endpoint_id = {p('endpoint_id')}"
        ),
        "delete_endpoint": (
            f"DELETE FROM webhook_endpoints WHERE endpoint_id = {p('endpoint_id')}"
            " RETURNING endpoint_id"
        ),
        "insert_delivery": f"""
INSERT INTO webhook_deliveries
    (endpoint_id, url, event_id, saga_id, event_type, body, next_attempt_at,
     create_time, update_time)
VALUES ({p("endpoint_id")}, {p("url")}, {p("event_id")}, {p("saga_id")},
        {p("event_type")}, {p("body")}, {now}, {now}, {now})
ON CONFLICT (endpoint_id, event_id) DO NOTHING
""",
        "claim_deliveries": f"""
UPDATE webhook_deliveries
SET lease_owner = {p("owner")}, lease_expires_at = {expiry}, attempts = attempts + 1,
    update_time = {now}
WHERE delivery_id IN ({candidates})
RETURNING {DELIVERY_COLUMNS}
""",
        # The next attempt's time is the `expiry` of a lease as long as the delay.
        "settle_delivery": f"""
UPDATE webhook_deliveries
SET status = {p("status")}, next_attempt_at = {expiry}, lease_owner = NULL,
    lease_expires_at = NULL, last_http_status = {p("http_status")},
    last_error = {p("error")}, update_time = {now}
WHERE delivery_id = {p("delivery_id")} AND lease_owner = {p("owner")}
RETURNING delivery_id
""",
        "select_deliveries": (
            f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries"
            f" WHERE delivery_id {dialect.in_list('ids')}"
        ),
        "retry_deliveries": f"""
UPDATE webhook_deliveries
SET status = 'pending', attempts = 0, next_attempt_at = {now}, lease_owner = NULL,
    lease_expires_at = NULL, last_error = '', update_time = {now}
WHERE delivery_id {dialect.in_list("ids")} AND status IN ('dead', 'failed')
RETURNING delivery_id
""",
        "retry_dead_of": f"""
UPDATE webhook_deliveries
SET status = 'pending', attempts = 0, next_attempt_at = {now}, lease_owner = NULL,
    lease_expires_at = NULL, last_error = '', update_time = {now}
WHERE endpoint_id = {p("endpoint_id")} AND status = 'dead'
RETURNING delivery_id
""",
        # Bounded: one call deletes at most `limit` rows, the oldest first.
        "forget_delivered": f"""
DELETE FROM webhook_deliveries WHERE delivery_id IN (
    SELECT delivery_id FROM webhook_deliveries
    WHERE status = 'delivered' AND update_time < {p("before")}
    ORDER BY delivery_id LIMIT {p("limit")}
)
RETURNING delivery_id
""",
        "count_pending": (
            "SELECT endpoint_id, count(*) AS pending FROM webhook_deliveries"
            " WHERE status = 'pending' GROUP BY endpoint_id"
        ),
        "select_completions": (
            "SELECT saga_id, completion_webhook_url AS url FROM sagas"
            f" WHERE saga_id {dialect.in_list('saga_ids')} AND completion_webhook_url IS NOT NULL"
        ),
    }


class WebhookStatements:
    """The webhook statements of one dialect, rendered once."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.sql = _statements(dialect)
        self.claim_lock = CLAIM_LOCK if dialect.skip_locked else ""

    def listing(
        self, where: DeliveryFilter, before: int | None, limit: int
    ) -> tuple[str, dict[str, object]]:
        """A delivery listing, newest first: fixed fragments joined, every value bound."""
        p = self.dialect.param
        conditions: list[str] = []
        params: dict[str, object] = {"limit": limit}
        for column, value in (
            ("endpoint_id", where.endpoint_id),
            ("status", None if where.status is None else where.status.value),
            ("saga_id", where.saga_id),
        ):
            if value is not None:
                conditions.append(f"{column} = {p(column)}")
                params[column] = value
        if before is not None:
            conditions.append(f"delivery_id < {p('before')}")
            params["before"] = before
        clause = " AND ".join(conditions) or "TRUE"
        query = (
            f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE {clause}"
            f" ORDER BY delivery_id DESC LIMIT {p('limit')}"
        )
        return query, params


@functools.cache
def _rendered(dialect: Dialect) -> WebhookStatements:
    return WebhookStatements(dialect)


def endpoint_params(endpoint: WebhookEndpoint, time_to_db: Any) -> dict[str, object]:
    expires = endpoint.previous_secret_expires
    return {
        "endpoint_id": endpoint.endpoint_id,
        "url": endpoint.url,
        "description": endpoint.description,
        "event_types": json.dumps(list(endpoint.event_types)),
        "saga_types": json.dumps(list(endpoint.saga_types)),
        "namespaces": json.dumps(list(endpoint.namespaces)),
        "enabled": endpoint.enabled,
        "disabled_reason": endpoint.disabled_reason,
        "max_concurrency": endpoint.max_concurrency,
        "secret": endpoint.secret,
        "previous_secret": endpoint.previous_secret,
        "previous_secret_expires": None if expires is None else time_to_db(expires),
    }


def endpoint_from_row(row: Row, time_from_db: Any) -> WebhookEndpoint:
    expires = row["previous_secret_expires"]
    return WebhookEndpoint(
        endpoint_id=row["endpoint_id"],
        url=row["url"],
        secret=row["secret"],
        description=row["description"],
        event_types=tuple(json.loads(row["event_types"])),
        saga_types=tuple(json.loads(row["saga_types"])),
        namespaces=tuple(json.loads(row["namespaces"])),
        enabled=bool(row["enabled"]),
        disabled_reason=row["disabled_reason"],
        max_concurrency=int(row["max_concurrency"]),
        previous_secret=row["previous_secret"],
        previous_secret_expires=None if expires is None else time_from_db(expires),
        create_time=time_from_db(row["create_time"]),
        update_time=time_from_db(row["update_time"]),
    )


def delivery_from_row(row: Row, time_from_db: Any) -> Delivery:
    return Delivery(
        delivery_id=int(row["delivery_id"]),
        endpoint_id=row["endpoint_id"],
        url=row["url"],
        event_id=row["event_id"],
        saga_id=row["saga_id"],
        event_type=row["event_type"],
        body=bytes(row["body"]),
        status=DeliveryStatus(row["status"]),
        attempts=int(row["attempts"]),
        last_http_status=int(row["last_http_status"]),
        last_error=row["last_error"],
        next_attempt_time=time_from_db(row["next_attempt_at"]),
        create_time=time_from_db(row["create_time"]),
        update_time=time_from_db(row["update_time"]),
    )


class WebhookRows:
    """The webhook methods of a SQL store (mixed into `SqlStore`); each runs the
    statements above through the store's `_rows` and `_transaction`."""

    _encoding: ClassVar[RowEncoding]
    _statements: ClassVar[Statements]
    _rows: Callable[..., Awaitable[list[Row]]]
    _transaction: Callable[[], contextlib.AbstractAsyncContextManager[Transaction]]

    @property
    def _webhook_sql(self) -> WebhookStatements:
        return _rendered(self._statements.dialect)

    async def create_webhook_endpoint(self, endpoint: WebhookEndpoint) -> WebhookEndpoint:
        await self._wh_rows("insert_endpoint", self._wh_endpoint_params(endpoint), write=True)
        stored = await self.get_webhook_endpoint(endpoint.endpoint_id)
        assert stored is not None
        return stored

    async def get_webhook_endpoint(self, endpoint_id: str) -> WebhookEndpoint | None:
        rows = await self._wh_rows("select_endpoint", {"endpoint_id": endpoint_id})
        return self._wh_endpoint(rows[0]) if rows else None

    async def list_webhook_endpoints(self, after: str, limit: int) -> list[WebhookEndpoint]:
        rows = await self._wh_rows("list_endpoints", {"after": after, "limit": limit})
        return [self._wh_endpoint(row) for row in rows]

    async def enabled_webhook_endpoints(self) -> list[WebhookEndpoint]:
        return [self._wh_endpoint(row) for row in await self._wh_rows("enabled_endpoints", {})]

    async def update_webhook_endpoint(self, endpoint: WebhookEndpoint) -> WebhookEndpoint | None:
        """Writes every field of `endpoint` but its times; None when it does not exist."""
        params = self._wh_endpoint_params(endpoint)
        if not await self._wh_rows("update_endpoint", params, write=True):
            return None
        return await self.get_webhook_endpoint(endpoint.endpoint_id)

    async def disable_webhook_endpoint(self, endpoint_id: str, reason: str) -> None:
        params = {**self._wh_now(), "endpoint_id": endpoint_id, "reason": reason}
        await self._wh_rows("disable_endpoint", params, write=True)

    async def delete_webhook_endpoint(self, endpoint_id: str) -> bool:
        """Deletes the endpoint and its deliveries in one transaction."""
        sql = self._webhook_sql.sql
        async with self._transaction() as tx:
            await tx.rows(sql["delete_deliveries_of"], {"endpoint_id": endpoint_id})
            return bool(await tx.rows(sql["delete_endpoint"], {"endpoint_id": endpoint_id}))

    async def add_webhook_deliveries(self, deliveries: Sequence[NewDelivery]) -> None:
        """Writes the deliveries in one transaction; one already written (the same endpoint
        and event) is left as it is, so a republished event adds nothing."""
        if not deliveries:
            return
        sql = self._webhook_sql.sql["insert_delivery"]
        now = self._wh_now()
        async with self._transaction() as tx:
            for item in deliveries:
                params = {
                    **now,
                    "endpoint_id": item.endpoint_id,
                    "url": item.url,
                    "event_id": item.event_id,
                    "saga_id": item.saga_id,
                    "event_type": item.event_type,
                    "body": item.body,
                }
                await tx.rows(sql, params)

    async def claim_webhook_deliveries(self, lease: Lease, limit: int) -> list[Delivery]:
        """Due deliveries for `lease.owner`, each endpoint's within its concurrency cap;
        each claimed attempt is counted (`attempts`) as it is claimed."""
        statements = self._webhook_sql
        params = {
            **statements.dialect.lease_params(lease),
            "limit": limit,
            "completion_cap": COMPLETION_CONCURRENCY,
        }
        async with self._transaction() as tx:
            if statements.claim_lock:
                await tx.rows(statements.claim_lock, {})
            rows = await tx.rows(statements.sql["claim_deliveries"], params)
        return [self._wh_delivery(row) for row in rows]

    async def settle_webhook_delivery(
        self, delivery_id: int, owner: str, result: AttemptResult
    ) -> bool:
        """Records an attempt's end; False when the delivery is no longer `owner`'s."""
        params = {
            **self._webhook_sql.dialect.lease_params(Lease(owner, max(result.delay, 0.0))),
            "delivery_id": delivery_id,
            "status": result.status.value,
            "http_status": result.http_status,
            "error": result.error[:1000],
        }
        return bool(await self._wh_rows("settle_delivery", params, write=True))

    async def get_webhook_deliveries(self, ids: Sequence[int]) -> list[Delivery]:
        params = {"ids": self._webhook_sql.dialect.id_list(list(ids))}
        return [self._wh_delivery(row) for row in await self._wh_rows("select_deliveries", params)]

    async def list_webhook_deliveries(
        self, where: DeliveryFilter, before: int | None, limit: int
    ) -> list[Delivery]:
        query, params = self._webhook_sql.listing(where, before, limit)
        return [self._wh_delivery(row) for row in await self._rows(query, params)]

    async def retry_webhook_deliveries(
        self, ids: Sequence[int] = (), endpoint_id: str | None = None
    ) -> int:
        """Puts dead or failed deliveries (by id), or every dead one of an endpoint, back
        on the schedule from its first attempt; returns how many."""
        params: dict[str, object] = self._wh_now()
        if endpoint_id is not None:
            params["endpoint_id"] = endpoint_id
            return len(await self._wh_rows("retry_dead_of", params, write=True))
        params["ids"] = self._webhook_sql.dialect.id_list(list(ids))
        return len(await self._wh_rows("retry_deliveries", params, write=True))

    async def forget_delivered_webhooks(self, before: datetime, limit: int) -> int:
        """Deletes up to `limit` deliveries delivered before `before`; returns how many.
        Dead and failed ones stay (to be listed and replayed) until their endpoint goes."""
        params = {"before": self._encoding.time_to_db(before), "limit": limit}
        return len(await self._wh_rows("forget_delivered", params, write=True))

    async def pending_webhook_deliveries(self) -> dict[str, int]:
        rows = await self._wh_rows("count_pending", {})
        return {str(row["endpoint_id"]): int(row["pending"]) for row in rows}

    async def completion_webhooks(self, saga_ids: Sequence[str]) -> dict[str, str]:
        """The completion webhook URL of each of the sagas that has one."""
        if not saga_ids:
            return {}
        params = {"saga_ids": self._webhook_sql.dialect.id_list(list(saga_ids))}
        rows = await self._wh_rows("select_completions", params)
        return {str(row["saga_id"]): str(row["url"]) for row in rows}

    def _wh_now(self) -> dict[str, object]:
        return self._webhook_sql.dialect.lease_params(None)

    def _wh_endpoint_params(self, endpoint: WebhookEndpoint) -> dict[str, object]:
        time_to_db = self._encoding.time_to_db
        return {**self._wh_now(), **endpoint_params(endpoint, time_to_db)}

    def _wh_endpoint(self, row: Row) -> WebhookEndpoint:
        return endpoint_from_row(row, self._encoding.time_from_db)

    def _wh_delivery(self, row: Row) -> Delivery:
        return delivery_from_row(row, self._encoding.time_from_db)

    async def _wh_rows(
        self, name: str, params: Mapping[str, object], *, write: bool = False
    ) -> list[Row]:
        return await self._rows(self._webhook_sql.sql[name], params, write=write)
