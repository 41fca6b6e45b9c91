"""The sweep of held events whose wait ran out: each becomes an anomaly.

An event held for an instance that never started (or for a step that never came) is
moved to `event_anomalies` once its expire time passes, where operators list it
(`ListEventAnomalies`). Every replica sweeps; on PostgreSQL a row is taken by one
sweep only (FOR UPDATE SKIP LOCKED), so replicas never move an event twice. A sweep is
one indexed query while nothing is due.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from orchestrator.store.base import Store

logger = logging.getLogger(__name__)

EXPIRE_BATCH = 500
"""Held events moved to the anomalies per transaction."""
EXPIRE_EVERY_SECONDS = 2.0
"""How often the sweep looks for held events whose wait ran out."""


async def expire_held(store: Store, now: datetime) -> int:
    """Move every held event expired by `now` to the anomalies, a batch per transaction;
    returns how many. Each is logged once (no payload: it may hold personal data)."""
    total = 0
    while True:
        moved = await store.expire_held_events(now, EXPIRE_BATCH)
        for anomaly in moved:
            logger.warning(
                "held event became an anomaly: %s %s from %s (%s %s): %s",
                anomaly.event_type,
                anomaly.event_id,
                anomaly.source,
                anomaly.saga_type,
                anomaly.correlation,
                anomaly.reason,
            )
        total += len(moved)
        if len(moved) < EXPIRE_BATCH:
            return total


async def keep_expiring(
    store: Store, clock: Callable[[], datetime], every: float = EXPIRE_EVERY_SECONDS
) -> None:
    """Forever: sweep, then wait `every` seconds (a failed sweep is retried then)."""
    while True:
        try:
            await expire_held(store, clock())
        except asyncio.CancelledError:
            raise
        except Exception as error:
            logger.warning("sweep of held events failed, retrying later: %s", error)
        await asyncio.sleep(every)
