"""Saga ids are UUIDv7: valid UUIDs, version 7, ordered by creation time."""

from __future__ import annotations

import time
import uuid

import pytest

from orchestrator.core.ids import new_saga_id

pytestmark = pytest.mark.unit


def test_saga_ids_are_canonical_version_7_uuids():
    saga_id = new_saga_id()
    parsed = uuid.UUID(saga_id)
    assert str(parsed) == saga_id
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122


def test_saga_ids_sort_by_creation_time_and_do_not_collide():
    first = new_saga_id()
    time.sleep(0.002)
    later = [new_saga_id() for _ in range(1000)]
    assert all(first < other for other in later)
    assert len(set(later)) == len(later)
    millis = uuid.UUID(first).int >> 80
    assert abs(millis - time.time() * 1000) < 60_000
