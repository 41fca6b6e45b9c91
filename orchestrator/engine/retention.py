"""Retention: finished sagas older than the configured duration are deleted, with their
steps and transitions, in small batches.

Each batch is one short transaction of at most RETENTION_BATCH sagas (PostgreSQL:
rows another replica's sweep holds are skipped), and the sweep pauses between
batches, so deleting a large backlog never holds long locks or starves StartSaga.
A saga that needs intervention is never deleted, however old: an operator still
has to act on it. Off unless `--retention` is given.

The keys of the incoming events a tracked saga applied go with it (ON DELETE CASCADE);
the keys of events that never reached a saga (held, then expired into anomalies) are
deleted by the same sweep once older than the retention.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta

from orchestrator.core.clock import utc_now
from orchestrator.store.base import Store

logger = logging.getLogger(__name__)

RETENTION_BATCH = 500
"""Sagas deleted per transaction."""
BATCH_PAUSE_SECONDS = 0.05
"""Between two full batches: room for other transactions."""
SWEEP_EVERY_SECONDS = 60.0
"""How often a sweep starts while nothing is left to delete."""


async def sweep(
    store: Store,
    retention: timedelta,
    *,
    batch: int = RETENTION_BATCH,
    deleted: Callable[[int], None] = lambda _: None,
) -> int:
    """Delete every finished saga last updated more than `retention` ago, batch by batch;
    returns how many. `deleted(n)` is told after each batch (the metric)."""
    before = utc_now() - retention
    total = 0
    while True:
        count = await store.delete_finished(before, batch)
        if count:
            deleted(count)
        total += count
        if count < batch:
            break
        await asyncio.sleep(BATCH_PAUSE_SECONDS)
    while True:
        if await store.delete_loose_ingested(before, batch) < batch:
            return total
        await asyncio.sleep(BATCH_PAUSE_SECONDS)


async def keep_retention(
    store: Store, retention: timedelta, deleted: Callable[[int], None] = lambda _: None
) -> None:
    """Forever: sweep, then wait SWEEP_EVERY_SECONDS (a failed sweep is retried then)."""
    while True:
        try:
            total = await sweep(store, retention, deleted=deleted)
            if total:
                logger.info("retention deleted %d finished saga(s)", total)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            logger.warning("retention sweep failed, retrying later: %s", error)
        await asyncio.sleep(SWEEP_EVERY_SECONDS)
