"""A tiny run of `bench/timeline.py`: one saga's events come out in order, with CPU figures.

It proves the tool runs against the real engine and PostgreSQL, not any speed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import require_postgres_url
from tests.support.harness import run_harness

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

WRITES_PER_SAGA = 4
"""The insert with the first step started, then one write per step's outcome (the last
with the terminal status): each carries the next step's start."""


def test_timeline_of_a_three_step_saga_shows_four_writes_and_three_commands(
    tmp_path: Path,
) -> None:
    url = require_postgres_url()
    trace = tmp_path / "libpq.txt"
    done = run_harness(
        [
            sys.executable,
            "-m",
            "bench.timeline",
            "--postgres-url",
            url,
            "--sagas",
            "3",
            "--warmup",
            "1",
            "--libpq-trace",
            str(trace),
            "--json",
        ],
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    events = [row["event"] for row in result["events"]]
    assert result["sagas"] == 3
    assert events[0] == "StartSaga received" and events[-1] == "drive finished"
    assert events.count("write committed") == WRITES_PER_SAGA
    assert events.count("command sent") == events.count("reply received") == 3
    offsets = [row["offset_ms"] for row in result["events"]]
    assert offsets == sorted(offsets)
    assert result["cpu_ms_per_saga"]["this_process"] > 0
    assert result["cpu_ms_per_saga"]["server"] is not None
    # The last saga's protocol: each write is one pipeline closed by a Sync, which
    # commits its implicit transaction (no BEGIN or COMMIT of its own).
    text = trace.read_text()
    assert text.count("\tSync") >= WRITES_PER_SAGA and '"COMMIT"' not in text
