"""A tiny run of `python -m bench.async_steps`: the harness works end to end.

It proves the plumbing, not the speed: sagas park, the idle, claim and heartbeat
figures are there, a fresh replica completes every saga through CompleteStep.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import require_postgres_url
from tests.support.harness import run_harness

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_small_async_steps_run_parks_heartbeats_and_completes_every_saga(tmp_path: Path) -> None:
    url = require_postgres_url()
    done = run_harness(
        [
            sys.executable, "-m", "bench.async_steps",
            "--postgres-url", url,
            "--sagas", "40",
            "--idle-seconds", "1",
            "--heartbeat-rate", "50",
            "--heartbeat-sagas", "10",
            "--heartbeat-seconds", "1",
            "--out-dir", str(tmp_path),
        ],
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "async-steps-latest.json").read_text())
    assert result["sagas"] == 40 and result["parked_per_s"] > 0
    assert result["idle"]["rss_mib"] > 0 and result["idle"]["cpu_percent_of_a_core"] >= 0
    assert (
        result["claim_plan"]["execution_ms"] > 0
        and "rows_removed_by_filter" in result["claim_plan"]
    )
    assert result["heartbeats"]["sent_per_s"] > 0
    assert result["complete_step"]["per_s"] > 0
    assert 0 < result["complete_step"]["p50_ms"] <= result["complete_step"]["p99_ms"]
    assert result["recovered_per_s"] > 0
    assert "CompleteStep" in done.stdout
