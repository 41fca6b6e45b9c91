"""The saga filter as SQL: the conditions a `SagaFilter` sets, written once and shared by
the listing (newest first, keyset by create time and id), the bulk operator actions'
match (keyset by saga id) and their dry-run count."""

from __future__ import annotations

from orchestrator.core.records import PagePosition, SagaFilter
from orchestrator.store._rows import aware
from orchestrator.store._statements import SAGA_COLUMNS, Dialect


def lock_key_condition(dialect: Dialect, where: SagaFilter, params: dict[str, object]) -> str:
    """Sagas holding or queueing for `where.lock_key` in their own namespace. The lock
    tables keep keys qualified (`<namespace>/<key>`): within known namespaces the
    condition looks the qualified keys up by primary key; across every namespace it reads
    the lock tables (a row per key of a running saga, never the finished ones) and
    qualifies the key by each row's saga's namespace."""
    p = dialect.param
    if where.namespaces is None:
        params["lock_key"] = where.lock_key
        holders = " UNION ".join(
            f"SELECT t.saga_id FROM {table} t JOIN sagas s ON s.saga_id = t.saga_id"
            f" WHERE t.lock_key = s.namespace || '/' || {p('lock_key')}"
            for table in ("saga_locks", "saga_lock_queue")
        )
        return f"saga_id IN ({holders})"
    keys = {f"lock_key_{n}": f"{ns}/{where.lock_key}" for n, ns in enumerate(where.namespaces)}
    params.update(keys)
    listed = ", ".join(p(name) for name in keys) or "NULL"
    return (
        f"saga_id IN (SELECT saga_id FROM saga_locks WHERE lock_key IN ({listed})"
        f" UNION SELECT saga_id FROM saga_lock_queue WHERE lock_key IN ({listed}))"
    )


def failed_step_condition(dialect: Dialect, where: SagaFilter, params: dict[str, object]) -> str:
    """Sagas with a failed step named as `where` asks: a step whose compensation failed,
    or the failed step the saga stopped at. Each saga's steps are read by primary key."""
    p = dialect.param
    names: list[str] = []
    if where.failed_step is not None:
        names.append(f"st.name = {p('failed_step')}")
        params["failed_step"] = where.failed_step
    if where.failed_steps is not None:
        pairs = []
        for n, (saga_type, step) in enumerate(where.failed_steps):
            pairs.append(
                f"(sagas.saga_type = {p(f'fs_type_{n}')} AND st.name = {p(f'fs_step_{n}')})"
            )
            params[f"fs_type_{n}"], params[f"fs_step_{n}"] = saga_type, step
        names.append(f"({' OR '.join(pairs)})" if pairs else "FALSE")
    return (
        "EXISTS (SELECT 1 FROM saga_steps st WHERE st.saga_id = sagas.saga_id"
        " AND (st.status = 'COMPENSATION_FAILED'"
        " OR (st.status = 'FAILED' AND st.name = sagas.failed_step))"
        f" AND {' AND '.join(names)})"
    )


def saga_conditions(dialect: Dialect, where: SagaFilter) -> tuple[list[str], dict[str, object]]:
    """The conditions `where` sets, and their parameters: shared by the listing and the
    bulk operators' match. Only fixed SQL fragments are joined; every value is bound."""
    p, time_to_db = dialect.param, dialect.time_to_db
    conditions: list[str] = []
    params: dict[str, object] = {}
    if where.status is not None:
        conditions.append(f"status = {p('status')}")
        params["status"] = where.status.value
    if where.saga_type is not None:
        conditions.append(f"saga_type = {p('saga_type')}")
        params["saga_type"] = where.saga_type
    if where.correlation_id is not None:
        conditions.append(f"correlation_id = {p('correlation_id')}")
        params["correlation_id"] = where.correlation_id
    if where.needs_intervention is not None:
        # Spelled out, not bound: a prepared statement's generic plan could not use
        # the partial index `WHERE needs_intervention` for a parameter.
        conditions.append(
            "needs_intervention" if where.needs_intervention else "NOT needs_intervention"
        )
    for column, bound, name in (
        ("create_time", ">=", "created_after"),
        ("create_time", "<", "created_before"),
        ("update_time", ">=", "updated_after"),
        ("update_time", "<", "updated_before"),
    ):
        moment = getattr(where, name)
        if moment is not None:
            conditions.append(f"{column} {bound} {p(name)}")
            params[name] = time_to_db(aware(moment))
    if where.failed_step is not None or where.failed_steps is not None:
        conditions.append(failed_step_condition(dialect, where, params))
    if where.failure_reason_contains is not None:
        conditions.append(dialect.contains("failure_reason", p("failure_reason_contains")))
        params["failure_reason_contains"] = where.failure_reason_contains
    if where.namespaces is not None:
        names = {f"namespace_{n}": namespace for n, namespace in enumerate(where.namespaces)}
        if not names:
            conditions.append("FALSE")
        else:
            conditions.append(f"namespace IN ({', '.join(p(name) for name in names)})")
            params.update(names)
    if where.lock_key is not None:
        conditions.append(lock_key_condition(dialect, where, params))
    if where.saga_id_prefix is not None:
        # The prefix is checked to be hex digits and hyphens: no LIKE wildcard in it.
        conditions.append(f"saga_id LIKE {p('saga_id_prefix')}")
        params["saga_id_prefix"] = f"{where.saga_id_prefix}%"
    return conditions, params


def saga_listing(
    dialect: Dialect, where: SagaFilter, after: PagePosition | None
) -> tuple[str, dict[str, object]]:
    """A saga listing, newest first, and its parameters but for `limit`.

    The parameters are spelled in the order they are bound, `limit` last.
    """
    p, time_to_db = dialect.param, dialect.time_to_db
    conditions, params = saga_conditions(dialect, where)
    if after is not None:
        conditions.append(f"(create_time, saga_id) < ({p('after_time')}, {p('after_id')})")
        params["after_time"] = time_to_db(aware(after.create_time))
        params["after_id"] = after.saga_id
    clause = " AND ".join(conditions) if conditions else "TRUE"
    query = (
        f"SELECT {SAGA_COLUMNS} FROM sagas WHERE {clause}"
        f" ORDER BY create_time DESC, saga_id DESC LIMIT {p('limit')}"
    )
    return query, params


def saga_matching(
    dialect: Dialect, where: SagaFilter, after_id: str | None
) -> tuple[str, dict[str, object]]:
    """The ids of sagas matching `where` in saga id order (the primary key), after
    `after_id`, and the parameters but for `limit`: keyset pages for a bulk action,
    which changes the sagas' times and statuses as it goes, so it cannot page by them."""
    conditions, params = saga_conditions(dialect, where)
    if after_id is not None:
        conditions.append(f"saga_id > {dialect.param('after_id')}")
        params["after_id"] = after_id
    clause = " AND ".join(conditions) if conditions else "TRUE"
    query = (
        f"SELECT saga_id FROM sagas WHERE {clause} ORDER BY saga_id LIMIT {dialect.param('limit')}"
    )
    return query, params


def saga_count(dialect: Dialect, where: SagaFilter) -> tuple[str, dict[str, object]]:
    """How many sagas match `where`, and the parameters."""
    conditions, params = saga_conditions(dialect, where)
    clause = " AND ".join(conditions) if conditions else "TRUE"
    return f"SELECT count(*) AS matched FROM sagas WHERE {clause}", params
