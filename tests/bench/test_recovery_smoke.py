"""A tiny run of `python -m bench.recovery`: the harness works end to end.

It proves the plumbing, not the speed: the backlog is filled, resumed and
finished, new sagas are started meanwhile, and every figure is there and sane.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import require_postgres_url
from tests.support.harness import run_harness

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_small_recovery_run_resumes_every_saga_and_times_new_starts(tmp_path: Path) -> None:
    url = require_postgres_url()
    done = run_harness(
        [
            sys.executable,
            "-m",
            "bench.recovery",
            "--postgres-url",
            url,
            "--sagas",
            "60",
            "--max-sagas-in-flight",
            "40",
            "--new-per-second",
            "10",
            "--claim-and-load",
            "--out-dir",
            str(tmp_path),
        ],
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "recovery-latest.json").read_text())

    assert result["statuses"] == {"COMPLETED": 60}
    assert 0 < result["serving_s"] <= result["all_resumed_s"] <= result["all_finished_s"]
    assert result["resumed_per_s"] > 0
    assert result["orchestrator_cpu_ms_per_saga"] > 0
    # Each saga's own writes are a handful of transactions at most (group commit may join them).
    assert 0 < result["transactions_per_saga"] < 20
    for how in ("per_batch", "per_saga"):
        for run in result["claim_and_load"][how]:
            assert run["sagas"] == 60
            assert run["per_s"] > 0 and run["cpu_ms_per_saga"] > 0
    assert all(run["transactions_per_saga"] < 1 for run in result["claim_and_load"]["per_batch"])
    assert all(run["transactions_per_saga"] >= 3 for run in result["claim_and_load"]["per_saga"])
    started = sum(phase["started"] for phase in result["new_sagas"].values())
    assert started > 0
    for phase in result["new_sagas"].values():
        if phase["started"]:
            assert 0 < phase["p50_ms"] <= phase["p99_ms"]
    assert "resumed" in done.stdout and "new sagas" in done.stdout
