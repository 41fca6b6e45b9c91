"""The machine's record copies (`moves.replaced`) equal `dataclasses.replace`, field for field."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestrator.core.moves import replaced
from orchestrator.core.records import SagaRecord, SagaStatus, StepRecord, StepStatus

NOW = datetime(2026, 12, 6, 20, 0, tzinfo=UTC)
SAGA = SagaRecord(
    saga_id="s-1",
    saga_type="trip",
    definition_version=2,
    correlation_id="c-1",
    payload={"city": "Lisbon"},
    status=SagaStatus.RUNNING,
    create_time=NOW,
    update_time=NOW,
    lock_keys=("room:1",),
)
STEP = StepRecord(saga_id="s-1", index=0, name="book_flight", status=StepStatus.STARTED)


@pytest.mark.parametrize(
    ("record", "changes"),
    [
        (SAGA, {}),
        (SAGA, {"update_time": NOW + timedelta(seconds=1), "version": 7}),
        (SAGA, {"status": SagaStatus.FAILED, "failure_reason": "declined", "output": b"x"}),
        (STEP, {"status": StepStatus.COMPLETED, "result": b"\x01", "attempts": 1}),
    ],
)
def test_a_copy_with_changes_equals_what_dataclasses_replace_makes(
    record: Any, changes: dict[str, Any]
) -> None:
    copy = replaced(record, **changes)
    assert copy == dataclasses.replace(record, **changes)
    assert type(copy) is type(record) and copy is not record
    for field in dataclasses.fields(record):  # every slot is set, none shared by mistake
        assert getattr(copy, field.name) == changes.get(field.name, getattr(record, field.name))
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(copy, "saga_id", "s-2")  # noqa: B010


def test_a_name_that_is_not_a_field_is_refused() -> None:
    with pytest.raises(AttributeError):
        replaced(SAGA, no_such_field=1)
