"""A tiny run of `python -m bench.events`: every figure is measured and saved.

It proves the plumbing (the three event modes, the relay alone, the consumer's clock,
the private broker's outage and the drain after it), not the speed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.support.harness import run_harness

pytestmark = [pytest.mark.slow]

FIGURES = (
    "c4_off_sagas_per_s",
    "c4_lifecycle_sagas_per_s",
    "c4_all_sagas_per_s",
    "c1_off_p50_ms",
    "c1_lifecycle_p50_ms",
    "relay_events_per_s",
    "commit_to_consumer_p50_ms",
    "commit_to_consumer_p99_ms",
    "outage_drain_seconds",
)


@pytest.mark.timeout(300)
def test_a_tiny_events_bench_measures_every_figure(tmp_path: Path) -> None:
    done = run_harness(
        [
            sys.executable,
            "-m",
            "bench.events",
            "--concurrency",
            "4",
            "--seconds",
            "1",
            "--relay-events",
            "200",
            "--outage-seconds",
            "2",
            "--out-dir",
            str(tmp_path),
        ],
        timeout=280,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    [saved] = tmp_path.glob("events-*.json")
    results = json.loads(saved.read_text())
    for figure in FIGURES:
        assert results[figure] > 0, figure
    assert results["relay_events"] == 200
    assert results["outage_backlog_at_return"] > 0
